"""Tests for wgpy.index."""

from __future__ import annotations

import pytest

from wgpy.index import IndexTable


def test_new_retries_on_collision() -> None:
    draws = iter([7, 7, 7, 9, 7, 9, 0xFFFFFFFF])
    calls = 0

    def rand32() -> int:
        nonlocal calls
        calls += 1
        return next(draws)

    table: IndexTable[str] = IndexTable(rand32=rand32)
    assert table.new("a") == 7
    assert table.new("b") == 9  # 7 drawn twice more, rejected
    assert table.new("c") == 0xFFFFFFFF  # 7 and 9 both in use
    assert calls == 7
    assert len(table) == 3
    assert [table.get(i) for i in (7, 9, 0xFFFFFFFF)] == ["a", "b", "c"]


def test_index_reused_only_after_remove() -> None:
    draws = iter([5, 5, 5])
    table: IndexTable[int] = IndexTable(rand32=lambda: next(draws))
    assert table.new(1) == 5
    table.remove(5)
    assert table.get(5) is None
    assert table.new(2) == 5
    with pytest.raises(StopIteration):  # only 5 left to draw, and it is taken
        table.new(3)


def test_rand32_masked_to_32_bits() -> None:
    table: IndexTable[str] = IndexTable(rand32=lambda: (1 << 40) | 0x1234)
    assert table.new("x") == 0x1234


def test_get_replace_remove() -> None:
    table: IndexTable[str] = IndexTable()
    i = table.new("handshake")
    assert 0 <= i < 1 << 32
    assert table.get(i) == "handshake"
    assert table.get(i ^ 1) is None
    table.replace(i, "keypair")
    assert table.get(i) == "keypair"
    assert len(table) == 1
    table.remove(i)
    assert table.get(i) is None
    assert len(table) == 0
    table.remove(i)  # absent: no error
    with pytest.raises(KeyError):
        table.replace(i, "late")
    assert len(table) == 0


def test_many_unique() -> None:
    table: IndexTable[int] = IndexTable()
    indices = {table.new(n) for n in range(5000)}
    assert len(indices) == 5000 == len(table)

"""Tests for wgpy.replay.

The sequences below are ported from the Linux kernel's WireGuard self-test
drivers/net/wireguard/selftest/counter.c (``wg_packet_counter_selftest``): the numbered
T(n, expected) table and the bit-by-bit forwards/backwards loops, each starting from a
fresh counter (T_INIT).
"""

from __future__ import annotations

import pytest

from wgpy.constants import COUNTER_WINDOW_SIZE, REJECT_AFTER_MESSAGES
from wgpy.replay import ReplayFilter

T_LIM = COUNTER_WINDOW_SIZE + 1
RAM = REJECT_AFTER_MESSAGES

# counter.c tests 1..34, in order, on one counter.
KERNEL_TABLE: list[tuple[int, bool]] = [
    (0, True),  # 1
    (1, True),  # 2
    (1, False),  # 3
    (9, True),  # 4
    (8, True),  # 5
    (7, True),  # 6
    (7, False),  # 7
    (T_LIM, True),  # 8
    (T_LIM - 1, True),  # 9
    (T_LIM - 1, False),  # 10
    (T_LIM - 2, True),  # 11
    (2, True),  # 12
    (2, False),  # 13
    (T_LIM + 16, True),  # 14
    (3, False),  # 15
    (T_LIM + 16, False),  # 16
    (T_LIM * 4, True),  # 17
    (T_LIM * 4 - (T_LIM - 1), True),  # 18
    (10, False),  # 19
    (T_LIM * 4 - T_LIM, False),  # 20
    (T_LIM * 4 - (T_LIM + 1), False),  # 21
    (T_LIM * 4 - (T_LIM - 2), True),  # 22
    (T_LIM * 4 + 1 - T_LIM, False),  # 23
    (0, False),  # 24
    (RAM, False),  # 25
    (RAM - 1, True),  # 26
    (RAM, False),  # 27
    (RAM - 1, False),  # 28
    (RAM - 2, True),  # 29
    (RAM + 1, False),  # 30
    (RAM + 2, False),  # 31
    (RAM - 2, False),  # 32
    (RAM - 3, True),  # 33
    (0, False),  # 34
]


def _run(steps: list[tuple[int, bool]]) -> None:
    f = ReplayFilter()
    for number, (counter, expected) in enumerate(steps, 1):
        assert f.validate(counter) is expected, f"step {number}: T({counter}, {expected})"


def test_kernel_table() -> None:
    _run(KERNEL_TABLE)


W = COUNTER_WINDOW_SIZE

# The bit-by-bit sequences of counter.c, one fresh counter each.
BIT_BY_BIT: dict[str, list[tuple[int, bool]]] = {
    "forwards-then-0": [(i, True) for i in range(1, W + 1)] + [(0, True), (0, False)],
    "forwards-from-2-then-1": [(i, True) for i in range(2, W + 2)] + [(1, True), (0, False)],
    "backwards-from-window": [(i, True) for i in range(W, -1, -1)],
    "backwards-past-window": [(i, True) for i in range(W + 1, 0, -1)] + [(0, False)],
    "backwards-then-top-again": [(i, True) for i in range(W, 0, -1)]
    + [(W + 1, True), (0, False)],
    "backwards-then-0-then-top": [(i, True) for i in range(W, 0, -1)]
    + [(0, True), (W + 1, True)],
}


@pytest.mark.parametrize("name", list(BIT_BY_BIT))
def test_kernel_bit_by_bit(name: str) -> None:
    _run(BIT_BY_BIT[name])


def test_reset_forgets_everything() -> None:
    f = ReplayFilter()
    assert f.validate(5)
    assert f.validate(100_000)
    assert not f.validate(5)
    f.reset()
    assert f.validate(5)
    assert f.validate(0)
    assert f.validate(100_000)


def test_limit_parameter() -> None:
    f = ReplayFilter()
    assert not f.validate(10, limit=10)
    assert f.validate(9, limit=10)
    assert not f.validate(-1)


def test_large_jump_clears_whole_ring() -> None:
    f = ReplayFilter()
    for i in range(200):
        assert f.validate(i)
    jump = 10 * W
    assert f.validate(jump)
    # Everything within the window below the jump is fresh, whatever ring word it maps to.
    for i in range(jump - W, jump):
        assert f.validate(i), i
    assert not f.validate(jump - W - 1)


def test_sparse_forward_steps_clear_stale_words() -> None:
    # Advance by a bit more than a word each time: bits from the previous lap must be gone.
    f = ReplayFilter()
    seen: set[int] = set()
    counter = 0
    for _ in range(1000):
        assert f.validate(counter)
        seen.add(counter)
        counter += 67
    greatest = counter - 67
    for c in range(max(0, greatest - W), greatest + 1):
        assert f.validate(c) is (c not in seen), c

"""Tests for wgpy.tai64n."""

from __future__ import annotations

import pytest

from wgpy.constants import TAI64N_WHITENER_NS, TIMESTAMP_SIZE
from wgpy.tai64n import is_after, timestamp

NS = 1_000_000_000


def test_epoch() -> None:
    assert timestamp(0).hex() == "400000000000000a00000000"
    assert len(timestamp(0)) == TIMESTAMP_SIZE


def test_known_value() -> None:
    # 2020-01-01T00:00:00Z = 1577836800 = 0x5e0be100; 59 * 2**24 ns = 0x3b000000 ns < 1 s.
    stamp = timestamp(1_577_836_800 * NS + 59 * TAI64N_WHITENER_NS + 12345)
    assert stamp.hex() == "400000005e0be10a" + "3b000000"
    # Before the epoch: seconds count down from the base, nanoseconds stay non-negative.
    assert timestamp(-1).hex() == "4000000000000009" + "3b000000"


def test_whitening_rounds_nanoseconds_down() -> None:
    base = 1_700_000_000 * NS
    assert timestamp(base + 1) == timestamp(base)
    assert timestamp(base + TAI64N_WHITENER_NS - 1) == timestamp(base)
    assert timestamp(base + TAI64N_WHITENER_NS) != timestamp(base)
    assert timestamp(base + TAI64N_WHITENER_NS)[8:] == TAI64N_WHITENER_NS.to_bytes(4, "big")
    # The largest whitened value within one second.
    top = timestamp(base + NS - 1)
    assert int.from_bytes(top[8:], "big") == (NS - 1) // TAI64N_WHITENER_NS * TAI64N_WHITENER_NS
    assert int.from_bytes(top[:8], "big") == int.from_bytes(timestamp(base)[:8], "big")


def test_monotonic_ordering() -> None:
    base = 1_600_000_000 * NS
    stamps = [timestamp(base + k * 7_000_000) for k in range(2000)]  # 14 s in 7 ms steps
    for earlier, later in zip(stamps, stamps[1:]):
        assert not is_after(earlier, later)
        assert later == earlier or is_after(later, earlier)
    assert is_after(stamps[-1], stamps[0])
    # Crossing a second boundary: seconds dominate nanoseconds.
    assert is_after(timestamp(base + NS), timestamp(base + NS - 1))


def test_is_after_is_strict() -> None:
    t = timestamp(42 * NS)
    assert not is_after(t, t)
    with pytest.raises(ValueError):
        is_after(t[:11], t)

"""Tests for wgpy.ratelimiter, in the spirit of the kernel's
drivers/net/wireguard/selftest/ratelimiter.c (expected_results table and capacity test),
with literal times instead of sleeps.
"""

from __future__ import annotations

from wgpy.constants import (
    RATELIMIT_GC_INTERVAL,
    RATELIMIT_MAX_ENTRIES,
    RATELIMIT_PACKETS_BURST,
    RATELIMIT_PACKETS_PER_SECOND,
)
from wgpy.ratelimiter import RateLimiter

COST = 1 / RATELIMIT_PACKETS_PER_SECOND  # 0.05 s

V4 = bytes([10, 0, 0, 1])
V6 = bytes.fromhex("20010db8000004bc000000000000000a")

# selftest/ratelimiter.c expected_results: (expected, seconds to wait before the packet).
EXPECTED_RESULTS: list[tuple[bool, float]] = (
    [(True, 0.0)] * RATELIMIT_PACKETS_BURST
    + [
        (False, 0.0),
        (True, COST),
        (False, 0.0),
        (True, COST * 2),
        (True, 0.0),
        (False, 0.0),
    ]
)


def test_constants_match_kernel() -> None:
    assert RATELIMIT_PACKETS_PER_SECOND == 20
    assert RATELIMIT_PACKETS_BURST == 5


def test_kernel_timings_table() -> None:
    # Per step, as the kernel: the source under test gives the expected result while a
    # never-seen source next to it is always allowed; likewise for IPv6.
    rl = RateLimiter()
    now = 100.0
    for i, (expected, sleep) in enumerate(EXPECTED_RESULTS):
        now += sleep
        assert rl.allow(V4, now) is expected, i
        other4 = (int.from_bytes(V4, "big") + i + 1).to_bytes(4, "big")
        assert rl.allow(other4, now), i
        # Same /64, varying interface identifier: still the same bucket.
        v6 = V6[:8] + i.to_bytes(4, "big") * 2
        assert rl.allow(v6, now) is expected, i
        other6 = (int.from_bytes(V6[:4], "big") + i + 1).to_bytes(4, "big") + v6[4:]
        assert rl.allow(other6, now), i


def test_burst_then_refused_then_refill() -> None:
    rl = RateLimiter()
    for _ in range(5):
        assert rl.allow(V4, 10.0)
    assert not rl.allow(V4, 10.0)
    assert not rl.allow(V4, 10.049)
    assert rl.allow(V4, 10.05)  # one packet refilled after 1/20 s
    assert not rl.allow(V4, 10.05)
    # A long pause refills only up to the burst.
    for _ in range(5):
        assert rl.allow(V4, 20.0)
    assert not rl.allow(V4, 20.0)


def test_refused_packets_do_not_spend_tokens() -> None:
    rl = RateLimiter()
    for _ in range(5):
        assert rl.allow(V4, 0.0)
    for k in range(1, 5):
        assert not rl.allow(V4, k * 0.01)  # partial refills accumulate
    assert rl.allow(V4, 0.05)


def test_ipv6_keyed_by_slash_64() -> None:
    rl = RateLimiter()
    same_64 = V6[:8] + bytes.fromhex("ffffffffffffffff")
    other_64 = V6[:7] + bytes([V6[7] ^ 1]) + V6[8:]
    for _ in range(5):
        assert rl.allow(V6, 0.0)
    assert not rl.allow(same_64, 0.0)
    assert rl.allow(other_64, 0.0)
    assert len(rl) == 2


def test_ipv4_and_ipv6_do_not_share() -> None:
    rl = RateLimiter()
    v6 = V4 + bytes(12)  # first 4 bytes equal to the IPv4 address
    for _ in range(5):
        assert rl.allow(V4, 0.0)
    assert not rl.allow(V4, 0.0)
    assert rl.allow(v6, 0.0)


def test_bad_address_length_refused() -> None:
    rl = RateLimiter()
    assert not rl.allow(b"\x01\x02\x03", 0.0)
    assert len(rl) == 0


def test_gc_removes_idle_entries() -> None:
    rl = RateLimiter()
    rl.allow(V4, 0.0)
    rl.allow(V6, 0.5)
    assert len(rl) == 2
    rl.gc(1.0)  # idle exactly the interval: kept
    assert len(rl) == 2
    rl.gc(1.2)
    assert len(rl) == 1
    rl.gc(1.6)
    assert len(rl) == 0


def test_allow_runs_gc_at_most_once_per_interval() -> None:
    rl = RateLimiter()
    rl.allow(V4, 0.0)  # first call collects (nothing) and arms the interval
    rl.allow(V6, 0.1)
    other = bytes([192, 0, 2, 1])
    rl.allow(other, 0.9)  # not yet an interval since the last gc
    assert len(rl) == 3
    rl.allow(other, 1.05)  # gc runs: V4 idle 1.05 s > interval; V6 idle 0.95 s stays
    assert len(rl) == 2
    rl.allow(other, 1.95)  # V6 now idle 1.85 s, but gc ran 0.9 s ago
    assert len(rl) == 2
    rl.allow(other, 1.0 + 1.05 + RATELIMIT_GC_INTERVAL - 1.0)
    assert len(rl) == 1


def test_capacity() -> None:
    # selftest/ratelimiter.c capacity_test: max_entries sources fit, the next is refused.
    rl = RateLimiter()
    for i in range(RATELIMIT_MAX_ENTRIES + 1):
        assert rl.allow(i.to_bytes(4, "big"), 0.0) is (i != RATELIMIT_MAX_ENTRIES), i
    assert len(rl) == RATELIMIT_MAX_ENTRIES
    # Known sources keep their buckets while full.
    assert rl.allow((0).to_bytes(4, "big"), 0.0)
    # Once idle entries are collected, new sources are admitted again.
    assert rl.allow(b"\xff\xff\xff\xff", 5.0)
    assert len(rl) == 1


def test_small_capacity() -> None:
    rl = RateLimiter(max_entries=2)
    assert rl.allow(b"\x01\x00\x00\x01", 0.0)
    assert rl.allow(b"\x01\x00\x00\x02", 0.0)
    assert not rl.allow(b"\x01\x00\x00\x03", 0.0)
    assert len(rl) == 2

"""Per-source token-bucket rate limiter for handshake messages.

Theory of operation
-------------------
Under load, the device only processes a handshake message if its source address still
has a token (kernel ``ratelimiter.c``). Each source gets a bucket that refills at
RATELIMIT_PACKETS_PER_SECOND and holds at most RATELIMIT_PACKETS_BURST packets' worth of
tokens. As in the kernel, tokens are measured in nanoseconds: one packet costs
``1 s / RATELIMIT_PACKETS_PER_SECOND`` and the bucket is capped at ``burst * cost``; on
each packet the bucket gains the time elapsed since the previous one. A new source starts
with a full bucket minus the packet that created it.

Sources are keyed the kernel's way: an IPv4 source by its 4-byte address, an IPv6 source
by its /64 (first 8 bytes), so one host cannot dodge the limit by rotating through its
own prefix. The two key lengths differ, so they never collide.

Buckets idle for more than RATELIMIT_GC_INTERVAL are full again and carry no state worth
keeping; ``gc`` forgets them. ``allow`` runs it opportunistically at most once per
RATELIMIT_GC_INTERVAL (the kernel runs it from a one-second timer). The table holds at
most ``max_entries`` sources; when full, new sources are refused, like the kernel.

Time is passed in as ``now`` (monotonic float seconds) and converted to integer
nanoseconds, so refill arithmetic is exact.
"""

from __future__ import annotations

from wgpy.constants import (
    RATELIMIT_GC_INTERVAL,
    RATELIMIT_MAX_ENTRIES,
    RATELIMIT_PACKETS_BURST,
    RATELIMIT_PACKETS_PER_SECOND,
)

__all__ = ["RateLimiter"]

_NS_PER_SECOND = 1_000_000_000
PACKET_COST = _NS_PER_SECOND // RATELIMIT_PACKETS_PER_SECOND  # ns of tokens per packet
TOKEN_MAX = PACKET_COST * RATELIMIT_PACKETS_BURST
_GC_INTERVAL_NS = round(RATELIMIT_GC_INTERVAL * _NS_PER_SECOND)
_IPV4_SIZE = 4
_IPV6_SIZE = 16
_IPV6_PREFIX_SIZE = 8  # rate-limit the whole /64

# Indices into a bucket, a two-item list mutated in place (no allocation per packet).
_LAST_TIME = 0
_TOKENS = 1


def _ns(now: float) -> int:
    return round(now * _NS_PER_SECOND)


class RateLimiter:
    """Token buckets keyed by source address (kernel ``wg_ratelimiter_allow``)."""

    __slots__ = ("_buckets", "_max_entries", "_last_gc")

    def __init__(self, max_entries: int = RATELIMIT_MAX_ENTRIES) -> None:
        self._buckets: dict[bytes, list[int]] = {}
        self._max_entries = max_entries
        self._last_gc: int | None = None

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, ip: bytes, now: float) -> bool:
        """Spend a token of source `ip` (4 or 16 raw bytes); False if it has none.

        Addresses of any other length are refused.
        """
        now_ns = _ns(now)
        last_gc = self._last_gc
        if last_gc is None or now_ns - last_gc >= _GC_INTERVAL_NS:
            self._gc(now_ns)

        size = len(ip)
        if size == _IPV4_SIZE:
            key = bytes(ip)
        elif size == _IPV6_SIZE:
            key = bytes(ip[:_IPV6_PREFIX_SIZE])
        else:
            return False

        bucket = self._buckets.get(key)
        if bucket is not None:
            elapsed = now_ns - bucket[_LAST_TIME]
            tokens = bucket[_TOKENS] + (elapsed if elapsed > 0 else 0)
            if tokens > TOKEN_MAX:
                tokens = TOKEN_MAX
            bucket[_LAST_TIME] = now_ns
            if tokens >= PACKET_COST:
                bucket[_TOKENS] = tokens - PACKET_COST
                return True
            bucket[_TOKENS] = tokens
            return False

        if len(self._buckets) >= self._max_entries:
            return False
        self._buckets[key] = [now_ns, TOKEN_MAX - PACKET_COST]
        return True

    def gc(self, now: float) -> None:
        """Forget sources idle for longer than RATELIMIT_GC_INTERVAL."""
        self._gc(_ns(now))

    def _gc(self, now_ns: int) -> None:
        self._last_gc = now_ns
        buckets = self._buckets
        stale = [key for key, b in buckets.items() if now_ns - b[_LAST_TIME] > _GC_INTERVAL_NS]
        for key in stale:
            del buckets[key]

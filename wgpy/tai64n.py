"""TAI64N timestamps for handshake initiations.

Theory of operation
-------------------
An initiation carries a 12-byte TAI64N timestamp: 8 bytes big-endian seconds, offset by
TAI64N_BASE (2**62 + 10, the TAI64 label for the Unix epoch as used by WireGuard), and
4 bytes big-endian nanoseconds. A responder keeps the greatest timestamp seen per peer and
drops initiations that are not strictly later (replay protection for initiations).

Like the kernel and wireguard-go, the nanoseconds are *whitened*: rounded down to a
multiple of TAI64N_WHITENER_NS (2**24 ns, about 16.8 ms), so the timestamp does not leak
the sender's precise clock. Because both fields are big-endian and fixed-width, "later"
is plain byte-wise comparison.

The wall clock is passed in (``wall_ns``, e.g. ``time.time_ns()`` from the caller), so
this module stays pure.
"""

from __future__ import annotations

from wgpy.constants import TAI64N_BASE, TAI64N_WHITENER_NS, TIMESTAMP_SIZE

__all__ = ["timestamp", "is_after"]

_NS_PER_SECOND = 1_000_000_000


def timestamp(wall_ns: int) -> bytes:
    """TAI64N label of the Unix wall-clock time `wall_ns` (nanoseconds), whitened."""
    seconds, nanoseconds = divmod(wall_ns, _NS_PER_SECOND)
    nanoseconds -= nanoseconds % TAI64N_WHITENER_NS
    return (TAI64N_BASE + seconds).to_bytes(8, "big") + nanoseconds.to_bytes(4, "big")


def is_after(a: bytes, b: bytes) -> bool:
    """True if TAI64N timestamp `a` is strictly later than `b` (wireguard-go ``After``)."""
    if len(a) != TIMESTAMP_SIZE or len(b) != TIMESTAMP_SIZE:
        raise ValueError("TAI64N timestamps are %d bytes" % TIMESTAMP_SIZE)
    return bytes(a) > bytes(b)

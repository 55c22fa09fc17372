"""The one clock of the daemon.

`now()` is CLOCK_BOOTTIME in seconds: monotonic, and it keeps counting through suspend,
as the kernel's timers do (boringtun's sleepyinstant makes the same choice). `wall_offset()`
turns it into epoch time for TAI64N timestamps and `wg show`'s latest handshake.
"""

from __future__ import annotations

import time

__all__ = ["now", "wall_offset"]


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wall_offset() -> float:
    return time.time() - now()

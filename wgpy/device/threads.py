"""Threads named by role where an operator looks: `ps -L`, `top -H`, /proc/PID/task/TID/comm.

Python's thread names live only inside the interpreter. Linux gives each thread a name of
its own (comm, at most 15 bytes), which a new thread inherits from the one that made it:
every thread of the daemon was `wgpy`, the process's name. A thread started here first
names itself (prctl PR_SET_NAME, the same call the process name is set with), so
`top -H -p $(pgrep -x wgpy)` shows whether `tun_reader`, `udp_reader`, `handshake` or
`uapi_conn` is using the CPU. Where prctl cannot be had, the thread runs unnamed.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["set_os_name", "start"]

PR_SET_NAME = 15  # linux/prctl.h
COMM_MAX = 15  # TASK_COMM_LEN less its NUL

_prctl: Any = None  # libc's prctl, once looked up; False where there is none


def set_os_name(name: str) -> None:
    """Name the calling thread (the main thread's name is the process's)."""
    global _prctl
    if _prctl is None:
        try:
            import ctypes  # noqa: PLC0415 - loaded by the first thread, as inotify loads it

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            _prctl = False
    if _prctl:
        _prctl(PR_SET_NAME, name.encode("ascii", "replace")[:COMM_MAX], 0, 0, 0)


def start(name: str, target: Callable[..., object], *args: object) -> threading.Thread:
    """Start a daemon thread called `name`, in Python and for the kernel, running
    `target(*args)`."""
    def run() -> None:
        set_os_name(name)
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread

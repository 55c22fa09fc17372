"""Threads named by role where an operator looks: `ps -L`, `top -H`, /proc/PID/task/TID/comm.

Python's thread names live only inside the interpreter. Linux gives each thread a name of
its own (comm, at most 15 bytes), which a new thread inherits from the one that made it:
every thread of the daemon was `wgpy`, the process's name. A thread started here first
names itself (setproctitle's `setthreadtitle`: prctl PR_SET_NAME, cut to the kernel's 15
bytes), so `top -H -p $(pgrep -x wgpy)` shows whether `datapath`, `handshake` or
`uapi_conn` is using the CPU. Without setproctitle (installed without its
dependencies) the thread runs unnamed.
"""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ["set_os_name", "start"]

_setthreadtitle: Callable[[str], None] | None
try:
    from setproctitle import setthreadtitle as _setthreadtitle
except ImportError:
    _setthreadtitle = None


def set_os_name(name: str) -> None:
    """Name the calling thread (the main thread's name is the process's)."""
    if _setthreadtitle is not None:
        _setthreadtitle(name)


def start(name: str, target: Callable[..., object], *args: object) -> threading.Thread:
    """Start a daemon thread called `name`, in Python and for the kernel, running
    `target(*args)`."""
    def run() -> None:
        set_os_name(name)
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread

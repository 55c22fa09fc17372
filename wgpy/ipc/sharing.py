"""How UAPI work shares what it shares with others: the configuration lock, taken in
arrival order (`FifoLock`), and the interpreter, handed to the data path's threads often
while a UAPI thread works (`ShortSwitchInterval`). Used by wgpy.ipc.server.
"""

from __future__ import annotations

import sys
import threading
from collections import deque

from wgpy.constants import UAPI_SWITCH_INTERVAL

__all__ = ["FifoLock", "ShortSwitchInterval"]

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


class ShortSwitchInterval:
    """A context in which `sys.getswitchinterval()` is at most UAPI_SWITCH_INTERVAL."""

    def __enter__(self) -> None:
        global _switch_users, _switch_saved
        with _switch_lock:
            if _switch_users == 0:
                _switch_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_switch_saved, UAPI_SWITCH_INTERVAL))
            _switch_users += 1

    def __exit__(self, *exc: object) -> None:
        global _switch_users
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


class FifoLock:
    """A lock granted in the order it was asked for (threading.Lock is not fair): a `get`
    queued behind stalled sets waits for their deadlines, not for every set that comes
    after it too."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Event] = deque()

    def acquire(self, timeout: float | None = None) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait(timeout)
        with self._mutex:
            if turn.is_set():  # handed over, even if the wait timed out just then
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()  # handed over: stays held
            else:
                self._held = False

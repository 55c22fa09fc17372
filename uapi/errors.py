"""UAPI error numbers and the exception that carries them.

Theory of operation: a UAPI reply ends with ``errno=N`` where wireguard-go sends
*negative* values (``-EINVAL`` and so on; ``ipc/uapi_unix.go``), and `wg` turns the
number into its exit message by negating it again. Everything in this package
therefore keeps errno values negative, exactly as they travel on the wire, and
`UapiError` carries one of them together with a human-readable message (the
message never travels: wireguard-go only logs it).
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "EADDRINUSE",
    "EINVAL",
    "EIO",
    "ENOANO",
    "EPROTO",
    "IPC_ERROR_INVALID",
    "IPC_ERROR_IO",
    "IPC_ERROR_PORT_IN_USE",
    "IPC_ERROR_PROTOCOL",
    "IPC_ERROR_UNKNOWN",
    "UapiError",
]

#: ``IpcErrorIO``: reading the request failed (also: a line longer than 64 KiB).
EIO: int = -_errno.EIO  # -5
#: ``IpcErrorProtocol``: a ``set`` line without ``=``.
EPROTO: int = -_errno.EPROTO  # -71
#: ``IpcErrorInvalid``: an unknown key or a bad value.
EINVAL: int = -_errno.EINVAL  # -22
#: ``IpcErrorPortInUse``: binding the listen port (or setting the fwmark) failed.
EADDRINUSE: int = -_errno.EADDRINUSE  # -98
#: ``IpcErrorUnknown``: any other failure.
ENOANO: int = -_errno.ENOANO  # -55

# The names wireguard-go gives them.
IPC_ERROR_IO = EIO
IPC_ERROR_PROTOCOL = EPROTO
IPC_ERROR_INVALID = EINVAL
IPC_ERROR_PORT_IN_USE = EADDRINUSE
IPC_ERROR_UNKNOWN = ENOANO


class UapiError(Exception):
    """A UAPI failure: `errno` is negative, as sent on the wire (``errno=-22``)."""

    errno: int
    message: str

    def __init__(self, errno: int, message: str = "") -> None:
        if errno > 0:
            errno = -errno
        self.errno = errno
        self.message = message or _describe(errno)
        super().__init__(errno, self.message)

    def __str__(self) -> str:
        return f"UAPI error {self.errno}: {self.message}"


def _describe(errno: int) -> str:
    try:
        return _errno.errorcode.get(-errno, "unknown error")
    except TypeError:  # pragma: no cover - defensive
        return "unknown error"

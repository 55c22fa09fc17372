"""UAPI error numbers and the exception that carries them.

Theory of operation: a UAPI reply ends with ``errno=N`` where wireguard-go sends
*negative* values (``-EINVAL`` and so on; ``ipc/uapi_unix.go``), and `wg` turns the
number into its exit message by negating it again. Everything in this package
therefore keeps errno values negative, exactly as they travel on the wire, and
`UapiError` carries one of them together with a human-readable message (the
message never travels: wireguard-go only logs it).

Messages go to logs, so they never carry a secret. The values of ``private_key`` and
``preshared_key`` are never echoed; any other text taken from a request or reply is
shown through `redact`, which replaces every run of 16 or more characters of the hex and
base64 alphabets (a key in either encoding, or a piece of one) by its length, because a
line that failed to parse may be a key line with a typo in its name or separator.
"""

from __future__ import annotations

import errno as _errno
import re

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
    "redact",
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


_KEYISH = re.compile(r"[A-Za-z0-9+/]{16,}")
#: How much of a redacted text a message shows.
REDACT_LIMIT = 100


def redact(data: bytes | str, limit: int = REDACT_LIMIT) -> str:
    """`data` fit for a log line (bytes as their repr, text as it is) with every hex or
    base64 run of 16 or more characters replaced by ``<N chars>``, then cut to `limit`.

    The runs are replaced before the cut, so a key that straddles the cut is hidden too.
    """
    text = repr(data) if isinstance(data, bytes) else data
    text = _KEYISH.sub(lambda m: f"<{len(m.group())} chars>", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

"""A blocking UAPI client for any implementation (wireguard-go, boringtun, wgpy).

Theory of operation: `Client` names a socket (``/var/run/wireguard/IFNAME.sock`` or
any path), writes one request, and reads bytes into a `ResponseReader` until the
blank line that ends the reply; `uapi.responses` turns the reply into a
`DeviceInfo` or an errno. Outside a ``with`` block every request uses a fresh
connection, as `wg` does; inside one, requests share a connection and are sent one
at a time (wireguard-go loses a request pipelined behind a ``set``). Errors: a
non-zero errno raises `UapiError`; a connection closed before the blank line is
EPROTO, as in `wg`; socket failures and timeouts propagate as OSError/TimeoutError.
This is the only module of the package that touches a socket.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from types import TracebackType

from uapi.errors import EPROTO, UapiError
from uapi.operations import SetOperation, format_operation
from uapi.responses import (
    DeviceInfo,
    ResponseReader,
    parse_errno_response,
    parse_get_response,
)

__all__ = ["DEFAULT_SOCKET_DIR", "Client"]

DEFAULT_SOCKET_DIR = "/var/run/wireguard"
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


class Client:
    """Talks to one UAPI socket. Use as a context manager to keep one connection."""

    def __init__(
        self,
        interface: str,
        socket_dir: str = DEFAULT_SOCKET_DIR,
        *,
        timeout: float | None = 5.0,
    ) -> None:
        if not interface or "/" in interface or interface in (".", ".."):
            raise ValueError(f"bad interface name {interface!r}")
        self._setup(os.path.join(socket_dir, interface + ".sock"), timeout)

    def _setup(self, path: str, timeout: float | None) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._leftover = b""

    @classmethod
    def from_path(cls, path: str, *, timeout: float | None = 5.0) -> Client:
        """A client for a socket at an arbitrary path."""
        client = cls.__new__(cls)
        client._setup(path, timeout)
        return client

    # -- connection ------------------------------------------------------------

    def connect(self) -> None:
        """Open the shared connection (done by ``with``)."""
        if self._sock is None:
            self._sock = self._open()
            self._leftover = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._leftover = b""

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- requests --------------------------------------------------------------

    def request(self, raw: bytes) -> bytes:
        """Send `raw` as is and return one reply, up to its blank line.

        Returns what arrived before the server closed if it closed first (``b""``
        for a silent close). Bytes after the reply are kept for the next call on a
        shared connection.
        """
        return self._request(raw)[0]

    def _request(self, raw: bytes) -> tuple[bytes, bool]:
        shared = self._sock is not None
        sock = self._sock if self._sock is not None else self._open()
        try:
            return self._exchange(sock, raw, shared)
        finally:
            if not shared:
                sock.close()

    def _checked(self, raw: bytes) -> bytes:
        reply, complete = self._request(raw)
        if not complete:
            raise UapiError(EPROTO, "connection closed before the end of the reply")
        return reply

    def _exchange(self, sock: socket.socket, raw: bytes, shared: bool) -> tuple[bytes, bool]:
        reader = ResponseReader()
        if shared and self._leftover:
            reader.receive_data(self._leftover)
            self._leftover = b""
        try:
            if raw:
                sock.sendall(raw, _SEND_FLAGS)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server replied and closed early: read what it said
        while not reader.complete:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                if shared:
                    self.close()
                return reader.partial, False
            reader.receive_data(data)
        if shared:
            self._leftover = reader.remainder
        return reader.response, True

    def get(self) -> DeviceInfo:
        """``get=1``: the device's configuration and counters."""
        return parse_get_response(self._checked(b"get=1\n\n"))

    def set(self, lines: Iterable[str] | str) -> None:
        """``set=1``: send ``key=value`` lines; UapiError if errno is not 0.

        `lines` is a text (its blank lines are dropped) or an iterable of lines
        without newlines.
        """
        if isinstance(lines, str):
            items = [line for line in lines.splitlines() if line]
        else:
            items = list(lines)
            for line in items:
                if not line or "\n" in line:
                    raise ValueError(f"bad set line {line!r}")
        payload = "set=1\n" + "".join(line + "\n" for line in items) + "\n"
        errno = parse_errno_response(self._checked(payload.encode("utf-8")))
        if errno != 0:
            raise UapiError(errno)

    def set_operations(self, operations: Iterable[SetOperation]) -> None:
        """``set=1`` from typed operations (see `uapi.operations`)."""
        self.set([format_operation(op) for op in operations])

"""The server side of the UAPI text protocol, sans-IO, streaming, in the h11 style.

Theory of operation: a device owns one `ServerConnection` per accepted UAPI
connection. It hands every byte string it reads to `receive_data` (``b""`` for end
of input) and then calls `next_event` until it returns `NEED_DATA`. Events come in
request order:

- ``get=1\\n\\n``          → `GetRequest`; the device answers ``format_get(info)``.
- ``set=1\\n`` ... ``\\n``  → `SetRequestStart`, one typed operation per line (see
  `uapi.operations`; a run of ``allowed_ip=`` additions comes as one `PeerAllowedIPs`),
  then `SetRequestEnd`; the device applies each operation as it arrives (a ``set``
  is not atomic in wireguard-go either) and answers ``format_errno(0)`` at the end.
- a bad line            → `SetRequestError` (or `GetRequestError`); the device answers
  ``format_errno(event.errno)``. The parser then skips the rest of that ``set`` up to
  its blank line. If applying an operation fails (a port in use), the device calls
  `abort_set` and answers with its own errno; the rest of the set is skipped too.
- anything else         → `CloseConnection`: the device closes without a reply.

The rules mirror wireguard-go 0.0.20220316's ``IpcHandle``/``IpcSetOperation``,
checked against the running reference:

- the operation line must be exactly ``get=1\\n`` or ``set=1\\n`` (``set=1\\r\\n`` is
  an unknown operation); after ``get=1\\n`` exactly one more byte is read, and if it
  is not ``\\n`` the reply is EINVAL and the next line starts at the byte after it.
- ``set`` lines are read like Go's ``bufio.Scanner``: one trailing ``\\r`` is dropped
  (so ``\\r\\n`` ends a set too), a line may hold at most 65535 bytes before its
  ``\\n`` (a longer one is EIO, after which wireguard-go in effect drops the
  connection: so do we), and at end of input the last unterminated line still
  counts and the set ends as if by a blank line (reply ``errno=0``), then the
  connection closes.
- a line is split at its first ``=``; none is EPROTO. ``public_key`` switches to
  peer keys for the rest of the set, so interface keys after it are EINVAL, and
  so are peer keys before it.

Two deliberate differences, both where wireguard-go depends on read timing:
wireguard-go's scanner swallows whatever it has read past the end of a ``set``, so a
request pipelined in the same write as a ``set`` is silently lost, and after an
error the rest of a ``set`` is lost if it was in the same read but is taken as
(invalid) operation lines, closing the connection, if it came later. We always
continue with the next request, and always skip the rest of a failed ``set``.
`wg` sends one request per connection and is unaffected.

What stays with the device (it needs state or I/O): a ``public_key`` equal to the
device's own public key selects a dummy peer whose lines are ignored; `PeerUpdateOnly`
removes a peer only if this very ``public_key`` line created it; an endpoint's
``%zone`` must name an interface or be a number (`uapi.values.resolve_zone`, else
EINVAL; the reference does not print zones back); binding a port or setting a
fwmark can fail with EADDRINUSE. Always send a reply before acting on a following
`CloseConnection` (the client may only have shut down its writing side).

Memory stays bounded by the longest line (64 KiB) plus what the caller feeds at
once; the buffer is consumed through an offset and compacted, so 100k+ lines in one
``set`` parse in linear time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hmac import compare_digest
from typing import Final

from uapi.errors import EINVAL, EIO, EPROTO, redact
from uapi.operations import (
    PeerAllowedIP,
    PeerAllowedIPs,
    PeerEndpoint,
    PeerPersistentKeepalive,
    PeerPresharedKey,
    PeerProtocolVersion,
    PeerPublicKey,
    PeerRemove,
    PeerReplaceAllowedIPs,
    PeerUpdateOnly,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetOperation,
    SetPrivateKey,
)
from uapi.prefix import is_dotted_quad, parse_allowed_ip_run
from uapi.responses import DeviceInfo, PeerInfo, format_errno, format_get
from uapi.values import (
    clamp_private_key,
    format_addr,
    parse_addr_port,
    parse_hex_key,
    parse_prefix,
    parse_uint,
)

__all__ = [
    "MAX_LINE",
    "NEED_DATA",
    "CloseConnection",
    "DeviceInfo",
    "Event",
    "GetRequest",
    "GetRequestError",
    "NeedData",
    "PeerInfo",
    "RequestError",
    "ServerConnection",
    "SetRequestEnd",
    "SetRequestError",
    "SetRequestStart",
    "format_errno",
    "format_get",
    "parse_set_line",
]

#: Longest ``set`` line, its ``\n`` included (Go's ``bufio.MaxScanTokenSize``).
MAX_LINE: Final = 64 * 1024
#: A run of ``allowed_ip=`` lines is parsed in bulk from at most this many bytes at once,
#: so one `PeerAllowedIPs` holds about a thousand prefixes (the device applies each one
#: under its lock: the bound keeps that hold short).
RUN_WINDOW: Final = 32 * 1024
_ALLOWED_IP: Final = b"allowed_ip="
_ZERO_KEY: Final = bytes(32)


class NeedData:
    """Type of the `NEED_DATA` sentinel."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by `ServerConnection.next_event` when it needs more bytes.
NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class GetRequest:
    """``get=1\\n\\n``: answer with `format_get`."""


@dataclass(frozen=True, slots=True)
class SetRequestStart:
    """``set=1\\n``: operations follow."""


@dataclass(frozen=True, slots=True)
class SetRequestEnd:
    """The blank line (or end of input) that ends a ``set``: answer ``errno=0``."""


@dataclass(frozen=True, slots=True)
class RequestError:
    """A request failed: answer ``format_errno(errno)``; `message` is for logs."""

    errno: int
    message: str


@dataclass(frozen=True, slots=True)
class GetRequestError(RequestError):
    """``get=1\\n`` followed by something other than ``\\n`` (EINVAL)."""


@dataclass(frozen=True, slots=True)
class SetRequestError(RequestError):
    """A bad ``set`` line; the rest of this ``set`` is skipped."""


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the connection without a reply (unknown operation, end of input...)."""

    reason: str


Event = GetRequest | SetRequestStart | SetOperation | SetRequestEnd | RequestError | CloseConnection


# ---------------------------------------------------------------------------------
# One line of a set


class _Invalid(Exception):
    """A value wireguard-go rejects with EINVAL."""


def _true(value: bytes, what: str) -> None:
    if value != b"true":
        raise _Invalid(f"failed to set {what}, invalid value: {redact(value)}")


def _key(value: bytes, what: str) -> bytes:
    key = parse_hex_key(value)
    if key is None:
        # Never the value: it may be a private or preshared key with a stray character.
        raise _Invalid(f"invalid {what}: {len(value)} bytes, not 64 hex digits")
    return key


def _uint(value: bytes, bits: int, what: str) -> int:
    n = parse_uint(value, bits)
    if n is None:
        raise _Invalid(f"failed to parse {what}: {redact(value)}")
    return n


def _is_zero(key: bytes) -> bool:
    """All zeros ("no key"), in constant time: `key` is a secret."""
    return compare_digest(key, _ZERO_KEY)


def _private_key(value: bytes) -> SetOperation:
    key = _key(value, "private_key")
    return SetPrivateKey(None if _is_zero(key) else clamp_private_key(key))


def _replace_peers(value: bytes) -> SetOperation:
    _true(value, "replace_peers")
    return ReplacePeers()


def _update_only(value: bytes) -> SetOperation:
    _true(value, "update only")
    return PeerUpdateOnly()


def _remove(value: bytes) -> SetOperation:
    _true(value, "remove")
    return PeerRemove()


def _preshared_key(value: bytes) -> SetOperation:
    key = _key(value, "preshared key")
    return PeerPresharedKey(None if _is_zero(key) else key)


def _endpoint(value: bytes) -> SetOperation:
    host, _, port_text = value.rpartition(b":")
    if is_dotted_quad(host):  # the common case, without building address objects
        port = parse_uint(port_text, 16)
        if port is not None:
            return PeerEndpoint(host.decode("ascii"), port, None)
    try:
        addr, port, zone = parse_addr_port(value.decode("utf-8", "surrogateescape"))
    except ValueError as e:
        raise _Invalid(f"failed to set endpoint: {e}") from None
    return PeerEndpoint(format_addr(addr), port, zone or None)


def _replace_allowed_ips(value: bytes) -> SetOperation:
    _true(value, "replace allowedips")
    return PeerReplaceAllowedIPs()


def _allowed_ip(value: bytes) -> SetOperation:
    # The leading '-' (remove one prefix) is newer than the reference, which
    # rejects it; wgpy accepts it deliberately (DESIGN.md).
    remove = value[:1] == b"-"
    try:
        network = parse_prefix((value[1:] if remove else value).decode("latin-1"))
    except ValueError as e:
        raise _Invalid(f"failed to set allowed ip: {e}") from None
    return PeerAllowedIP(network, remove)


def _protocol_version(value: bytes) -> SetOperation:
    if value != b"1":
        raise _Invalid(f"invalid protocol version: {value!r}")
    return PeerProtocolVersion(1)


_Handler = Callable[[bytes], SetOperation]

_DEVICE_KEYS: dict[bytes, _Handler] = {
    b"private_key": _private_key,
    b"listen_port": lambda v: SetListenPort(_uint(v, 16, "listen_port")),
    b"fwmark": lambda v: SetFwmark(_uint(v, 32, "fwmark")),
    b"replace_peers": _replace_peers,
}

_PEER_KEYS: dict[bytes, _Handler] = {
    b"update_only": _update_only,
    b"remove": _remove,
    b"preshared_key": _preshared_key,
    b"endpoint": _endpoint,
    b"persistent_keepalive_interval": lambda v: PeerPersistentKeepalive(
        _uint(v, 16, "persistent keepalive interval")
    ),
    b"replace_allowed_ips": _replace_allowed_ips,
    b"allowed_ip": _allowed_ip,
    b"protocol_version": _protocol_version,
}


def _public_key(value: bytes) -> SetOperation:
    return PeerPublicKey(_key(value, "public key"))


def parse_set_line(line: bytes, in_peer: bool) -> SetOperation | SetRequestError:
    """One non-blank ``set`` line (no ``\\n``, no trailing ``\\r``) → its operation.

    `in_peer` tells whether a ``public_key`` line came earlier in this set. A
    ``public_key`` line is itself parsed as a peer line. Returns the error event
    for a bad line, exactly as wireguard-go's errno.
    """
    key, sep, value = line.partition(b"=")
    if not sep:
        return SetRequestError(EPROTO, f"failed to parse line {redact(line)}")
    handler: _Handler | None
    if key == b"public_key":
        handler = _public_key
    elif in_peer:
        handler = _PEER_KEYS.get(key)
        if handler is None:
            return SetRequestError(EINVAL, f"invalid UAPI peer key: {redact(key)}")
    else:
        handler = _DEVICE_KEYS.get(key)
        if handler is None:
            return SetRequestError(EINVAL, f"invalid UAPI device key: {redact(key)}")
    try:
        return handler(value)
    except _Invalid as e:
        return SetRequestError(EINVAL, redact(str(e), 200))


# ---------------------------------------------------------------------------------
# The connection

_IDLE, _GET, _SET, _SKIP, _CLOSED = range(5)
_STATE_NAMES = ("IDLE", "GET", "SET", "SKIP", "CLOSED")
_COMPACT_AT = 64 * 1024


class ServerConnection:
    """The state of one UAPI connection, server side. See the module docstring."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # first unconsumed byte
        self._scan = 0  # where to resume looking for '\n' (>= _pos in IDLE/SET)
        self._eof = False
        self._state = _IDLE
        self._in_peer = False  # a public_key line came in this set
        self._skip_dirty = False  # SKIP: the current partial line is not blank
        self._closed: CloseConnection | None = None

    @property
    def state(self) -> str:
        """IDLE, GET, SET, SKIP (rest of a failed set) or CLOSED."""
        return _STATE_NAMES[self._state]

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the socket; ``b""`` means end of input."""
        if self._state == _CLOSED:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("received data after end of input")
        pos = self._pos
        if pos:
            n = len(self._buf)
            if pos == n:
                self._buf.clear()
                self._pos = self._scan = 0
            elif pos >= _COMPACT_AT and 2 * pos >= n:
                del self._buf[:pos]
                self._pos = 0
                self._scan = max(self._scan - pos, 0)
        self._buf += data

    def abort_set(self) -> None:
        """The device failed to apply an operation: skip the rest of this set."""
        if self._state == _SET:
            self._state = _SKIP
            self._skip_dirty = False

    def end_skip(self) -> None:
        """The reply to a failed set has been sent: what arrives from now on is the next
        request (wireguard-go drops only what it had read of the failed set)."""
        if self._state == _SKIP:
            self._pos = self._scan = len(self._buf)
            self._state = _IDLE

    def next_event(self) -> Event | NeedData:
        """The next event, or `NEED_DATA`. After `CloseConnection`, that again."""
        while True:
            state = self._state
            if state == _SET:
                return self._next_in_set()
            if state == _IDLE:
                event = self._next_in_idle()
            elif state == _GET:
                event = self._next_in_get()
            elif state == _SKIP:
                event = self._next_in_skip()
            else:
                assert self._closed is not None
                return self._closed
            if event is not None:
                return event

    def events(self) -> Iterator[Event]:
        """Every event available now; stops at `NEED_DATA` or after `CloseConnection`."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            assert not isinstance(event, NeedData)
            yield event
            if isinstance(event, CloseConnection):
                return

    # -- states ----------------------------------------------------------------

    def _close(self, reason: str) -> CloseConnection:
        self._state = _CLOSED
        self._closed = CloseConnection(reason)
        self._buf = bytearray()
        self._pos = self._scan = 0
        return self._closed

    def _next_in_idle(self) -> Event | NeedData | None:
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\n", max(self._scan, pos))
        if nl < 0:
            pending = len(buf) - pos
            if self._eof:
                return self._close("end of input" if not pending else "end of input in operation")
            if pending >= MAX_LINE:
                return self._close("operation line too long")
            self._scan = len(buf)
            return NEED_DATA
        op = bytes(buf[pos : nl + 1])
        self._pos = self._scan = nl + 1
        if op == b"get=1\n":
            self._state = _GET
            return None
        if op == b"set=1\n":
            self._state = _SET
            self._in_peer = False
            return SetRequestStart()
        return self._close(f"invalid UAPI operation: {redact(op)}")

    def _next_in_get(self) -> Event | NeedData:
        pos = self._pos
        if pos >= len(self._buf):
            if self._eof:
                return self._close("end of input in get")
            return NEED_DATA
        byte = self._buf[pos]
        self._pos = self._scan = pos + 1
        self._state = _IDLE
        if byte == 0x0A:
            return GetRequest()
        return GetRequestError(EINVAL, f"trailing character in UAPI get: {bytes([byte])!r}")

    def _next_in_set(self) -> Event | NeedData:
        buf = self._buf
        pos = self._pos
        if self._in_peer and buf.startswith(_ALLOWED_IP, pos):
            run = self._allowed_ip_run()
            if run is not None:
                return run
        nl = buf.find(b"\n", max(self._scan, pos))
        if nl < 0:
            pending = len(buf) - pos
            if pending >= MAX_LINE:
                return self._line_too_long()
            if not self._eof:
                self._scan = len(buf)
                return NEED_DATA
            if not pending:
                # End of input ends the set (errno=0), then the connection.
                self._close("end of input")
                return SetRequestEnd()
            line = bytes(buf[pos:])
            self._pos = self._scan = len(buf)
        else:
            if nl + 1 - pos > MAX_LINE:
                return self._line_too_long()
            line = bytes(buf[pos:nl])
            self._pos = self._scan = nl + 1
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line:
            self._state = _IDLE
            return SetRequestEnd()
        event = parse_set_line(line, self._in_peer)
        if isinstance(event, PeerPublicKey):
            self._in_peer = True
        elif isinstance(event, SetRequestError):
            self._state = _SKIP
            self._skip_dirty = False
        return event

    def _allowed_ip_run(self) -> PeerAllowedIPs | None:
        """Two or more complete ``allowed_ip=`` lines that add a prefix, parsed in one go.

        The run stops before the first line that is anything else (another key, a
        removal, a ``\\r``, a value the fast parser does not take, a bad value): that line
        goes through `parse_set_line` as usual, so errors and their errnos are unchanged.
        """
        buf, pos = self._buf, self._pos
        end = buf.rfind(b"\n", pos, pos + RUN_WINDOW)
        if end < 0:
            return None
        prefixes, consumed = parse_allowed_ip_run(bytes(buf[pos:end + 1]))
        if len(prefixes) < 2:
            return None  # a lone line is a PeerAllowedIP, as parse_set_line makes it
        self._pos = self._scan = pos + consumed
        return PeerAllowedIPs(prefixes)

    def _line_too_long(self) -> Event:
        error = SetRequestError(EIO, f"line longer than {MAX_LINE - 1} bytes")
        self._close("line too long")
        return error

    def _next_in_skip(self) -> Event | NeedData | None:
        buf = self._buf
        while True:
            pos = self._pos
            nl = buf.find(b"\n", pos)
            if nl < 0:
                pending = len(buf) - pos
                if pending > 1 or (pending == 1 and buf[pos] != 0x0D):
                    self._skip_dirty = True
                    self._pos = self._scan = len(buf)
                if self._eof:
                    return self._close("end of input")
                return NEED_DATA
            length = nl - pos
            blank = not self._skip_dirty and (length == 0 or (length == 1 and buf[pos] == 0x0D))
            self._pos = self._scan = nl + 1
            self._skip_dirty = False
            if blank:
                self._state = _IDLE
                return None

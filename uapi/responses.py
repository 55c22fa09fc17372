"""UAPI replies: the device snapshot, its ``get`` text, and the client-side reader.

Theory of operation: a reply is a run of ``key=value`` lines ended by a blank line,
and its last key is ``errno``. The server side prints a `DeviceInfo` with
`format_get`, in wireguard-go's key order (``IpcGetOperation``); the client side
collects bytes with `ResponseReader` until the blank line and turns them back into
a `DeviceInfo` with `parse_get_response` (or into an errno with
`parse_errno_response`). The client parser follows `wg`'s own rules
(``ipc-uapi.h``): interface keys count only before the first ``public_key``, unknown
keys are ignored (boringtun's ``own_public_key``, ``protocol_version``), a line
without ``=`` or a missing ``errno`` is a protocol error (EPROTO). It is more
lenient than `wg` in one way: a negative ``errno`` on a ``get`` is reported as that
errno rather than as EPROTO.

Everything here is sans-IO and works on whole byte strings; building the text
with a list and one ``b"".join`` keeps 100k+ ``allowed_ip`` lines fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from hmac import compare_digest
from ipaddress import ip_network

from uapi.errors import EPROTO, UapiError, redact
from uapi.prefix import Prefix, format_prefix_lines, prefix_of
from uapi.values import (
    IPNetwork, format_endpoint, parse_hex_key, parse_prefix,
)

__all__ = [
    "DeviceInfo",
    "PeerInfo",
    "ResponseReader",
    "format_errno",
    "format_get",
    "format_interface",
    "format_peer",
    "iter_peer",
    "parse_errno_response",
    "parse_get_response",
]

_ZERO_KEY = bytes(32)
_ZERO_HEX = b"0" * 64
_INT = re.compile(rb"-?[0-9]+")


@dataclass(slots=True)
class PeerInfo:
    """One peer as ``get`` reports it.

    `endpoint` is ``(host, port)``; an IPv6 host may carry ``%zone``. The last
    handshake is absolute Unix time (seconds and nanoseconds; 0 and 0 = never).
    """

    public_key: bytes
    preshared_key: bytes | None = field(default=None, repr=False)  # a secret
    endpoint: tuple[str, int] | None = None
    last_handshake_time_sec: int = 0
    last_handshake_time_nsec: int = 0
    tx_bytes: int = 0
    rx_bytes: int = 0
    persistent_keepalive_interval: int = 0
    #: `ipaddress` networks or `uapi.prefix.Prefix` ints (a device hands the latter).
    allowed_ips: list[IPNetwork | Prefix] = field(default_factory=list)
    protocol_version: int = 1


@dataclass(slots=True)
class DeviceInfo:
    """The device as ``get`` reports it: keys are raw 32-byte values, None if unset."""

    private_key: bytes | None = field(default=None, repr=False)  # a secret
    listen_port: int = 0
    fwmark: int = 0
    peers: list[PeerInfo] = field(default_factory=list)


# ---------------------------------------------------------------------------------
# Server side


def format_errno(errno: int) -> bytes:
    """The reply that ends every request: ``errno=-22\\n\\n`` (0 for success)."""
    return b"errno=%d\n\n" % errno


def format_get(device: DeviceInfo, *, keep_endpoint_zone: bool = False) -> bytes:
    """The full reply to ``get=1``, in wireguard-go's order, ending ``errno=0\\n\\n``.

    Omitted as wireguard-go omits them: a missing private key, listen port 0,
    fwmark 0, a peer without endpoint. The preshared key is always printed (zeros
    if none). Endpoint zones are dropped as the reference (0.0.20220316's Linux
    bind) drops them, unless `keep_endpoint_zone`.

    A device with many peers may send the same bytes in pieces instead:
    `format_interface`, then `format_peer` for each peer, then ``format_errno(0)``.
    """
    out = [format_interface(device)]
    out += [format_peer(peer, keep_endpoint_zone=keep_endpoint_zone) for peer in device.peers]
    out.append(b"errno=0\n\n")
    return b"".join(out)


def format_interface(device: DeviceInfo) -> bytes:
    """The interface lines that open a ``get`` reply (`device.peers` is not looked at)."""
    out = b""
    if device.private_key is not None and not compare_digest(device.private_key, _ZERO_KEY):
        out += b"private_key=%s\n" % device.private_key.hex().encode()
    if device.listen_port:
        out += b"listen_port=%d\n" % device.listen_port
    if device.fwmark:
        out += b"fwmark=%d\n" % device.fwmark
    return out


def format_peer(peer: PeerInfo, *, keep_endpoint_zone: bool = False) -> bytes:
    """The lines of one peer in a ``get`` reply, from ``public_key=`` on."""
    return b"".join(iter_peer(peer, keep_endpoint_zone=keep_endpoint_zone))


#: `iter_peer` prints this many allowed IPs per piece.
PIECE: int = 4096


def iter_peer(peer: PeerInfo, *, keep_endpoint_zone: bool = False) -> Iterator[bytes]:
    """`format_peer` in pieces of at most `PIECE` allowed IPs, so that a peer with a
    hundred thousand of them never needs its whole text in memory at once."""
    psk = peer.preshared_key.hex().encode() if peer.preshared_key else _ZERO_HEX
    endpoint = b""
    if peer.endpoint is not None:
        host, port = peer.endpoint
        text = format_endpoint(host, port, keep_zone=keep_endpoint_zone)
        endpoint = b"endpoint=%s\n" % text.encode()
    yield (
        b"public_key=%s\npreshared_key=%s\nprotocol_version=1\n%s"
        b"last_handshake_time_sec=%d\nlast_handshake_time_nsec=%d\n"
        b"tx_bytes=%d\nrx_bytes=%d\npersistent_keepalive_interval=%d\n"
        % (
            peer.public_key.hex().encode(),
            psk,
            endpoint,
            peer.last_handshake_time_sec,
            peer.last_handshake_time_nsec,
            peer.tx_bytes,
            peer.rx_bytes,
            peer.persistent_keepalive_interval,
        )
    )
    allowed = peer.allowed_ips
    for i in range(0, len(allowed), PIECE):
        piece = allowed[i : i + PIECE]
        try:
            lines = format_prefix_lines(b"allowed_ip", piece)  # type: ignore[arg-type]
        except TypeError:  # ipaddress networks among them (a PeerInfo a client built)
            lines = format_prefix_lines(b"allowed_ip", [prefix_of(p) for p in piece])
        yield lines


# ---------------------------------------------------------------------------------
# Client side


class ResponseReader:
    """Collects reply bytes until the blank line that ends one reply.

    Feed it with `receive_data`; once `complete`, `response` holds the reply
    (with its blank line) and `remainder` whatever arrived after it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._end = -1  # index just past the blank line, once found

    @property
    def complete(self) -> bool:
        return self._end >= 0

    def receive_data(self, data: bytes) -> bool:
        """Append `data`; True once the reply is complete."""
        if self._end >= 0:
            self._buf += data
            return True
        start = max(len(self._buf) - 1, 0)
        self._buf += data
        if self._buf[:1] == b"\n":
            self._end = 1
        else:
            i = self._buf.find(b"\n\n", start)
            if i >= 0:
                self._end = i + 2
        return self._end >= 0

    @property
    def response(self) -> bytes:
        if self._end < 0:
            raise ValueError("the reply is not complete")
        return bytes(self._buf[: self._end])

    @property
    def remainder(self) -> bytes:
        return bytes(self._buf[self._end :]) if self._end >= 0 else b""

    @property
    def partial(self) -> bytes:
        """All bytes received so far."""
        return bytes(self._buf)


def _lines(data: bytes) -> list[bytes]:
    """The lines of one reply, without the blank line; EPROTO if it is not there."""
    if data[:1] == b"\n":
        return []
    end = data.find(b"\n\n")
    if end < 0:
        raise UapiError(EPROTO, "reply not terminated by a blank line")
    return data[:end].split(b"\n")


def _errno_value(value: bytes) -> int:
    if _INT.fullmatch(value) is None:
        raise UapiError(EPROTO, f"bad errno value {redact(value)}")
    n = int(value)
    return -n if n > 0 else n  # boringtun sends positive values


def parse_errno_response(data: bytes) -> int:
    """The errno of a ``set`` reply (0 on success, negative otherwise)."""
    errno: int | None = None
    for line in _lines(data):
        key, sep, value = line.partition(b"=")
        if not sep:
            raise UapiError(EPROTO, f"reply line without '=': {redact(line)}")
        if key == b"errno":
            errno = _errno_value(value)
    if errno is None:
        raise UapiError(EPROTO, "reply without errno")
    return errno


def _num(key: bytes, value: bytes, limit: int) -> int:
    if not value.isdigit() or len(value) > 20:
        raise UapiError(EPROTO, f"bad value for {redact(key)}: {redact(value)}")
    n = int(value)
    if n > limit:
        raise UapiError(EPROTO, f"value out of range for {redact(key)}: {n}")
    return n


def _key(key: bytes, value: bytes) -> bytes:
    k = parse_hex_key(value)
    if k is None:
        # Never the value: it may be a private or preshared key with a stray character.
        raise UapiError(EPROTO, f"bad key for {redact(key)}: {len(value)} bytes, not 64 hex")
    return k


def _endpoint(value: bytes) -> tuple[str, int]:
    text = value.decode("utf-8", "replace")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 0xFFFF:
        raise UapiError(EPROTO, f"bad endpoint {redact(value)}")
    return host, int(port)


def _network(value: bytes) -> IPNetwork:
    text = value.decode("latin-1")
    try:
        return parse_prefix(text)
    except ValueError:
        pass
    try:  # not as wireguard-go prints it, but still a prefix: be tolerant
        if "/" not in text:
            raise ValueError(text)
        return ip_network(text, strict=False)
    except ValueError:
        raise UapiError(EPROTO, f"bad allowed_ip {redact(value)}") from None


_U16, _U32, _U64, _S64 = 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1, (1 << 63) - 1


def parse_get_response(data: bytes) -> DeviceInfo:
    """A `DeviceInfo` from a complete ``get`` reply; UapiError if errno is not 0."""
    device = DeviceInfo()
    peer: PeerInfo | None = None
    errno: int | None = None
    for line in _lines(data):
        key, sep, value = line.partition(b"=")
        if not sep:
            raise UapiError(EPROTO, f"reply line without '=': {redact(line)}")
        if key == b"allowed_ip" and peer is not None:
            peer.allowed_ips.append(_network(value))
        elif key == b"public_key":
            peer = PeerInfo(public_key=_key(key, value))
            device.peers.append(peer)
        elif key == b"errno":
            errno = _errno_value(value)
        elif peer is None:
            if key == b"private_key":
                k = _key(key, value)
                device.private_key = None if compare_digest(k, _ZERO_KEY) else k
            elif key == b"listen_port":
                device.listen_port = _num(key, value, _U16)
            elif key == b"fwmark":
                device.fwmark = _num(key, value, _U32)
        elif key == b"preshared_key":
            k = _key(key, value)
            peer.preshared_key = None if compare_digest(k, _ZERO_KEY) else k
        elif key == b"endpoint":
            peer.endpoint = _endpoint(value)
        elif key == b"last_handshake_time_sec":
            peer.last_handshake_time_sec = _num(key, value, _S64)
        elif key == b"last_handshake_time_nsec":
            peer.last_handshake_time_nsec = _num(key, value, _S64)
        elif key == b"tx_bytes":
            peer.tx_bytes = _num(key, value, _U64)
        elif key == b"rx_bytes":
            peer.rx_bytes = _num(key, value, _U64)
        elif key == b"persistent_keepalive_interval":
            peer.persistent_keepalive_interval = _num(key, value, _U16)
        elif key == b"protocol_version":
            peer.protocol_version = _num(key, value, _U32)
    if errno is None:
        raise UapiError(EPROTO, "reply without errno")
    if errno != 0:
        raise UapiError(errno)
    return device

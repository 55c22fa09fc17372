"""The four WireGuard messages, each declared once, with construct (paper section 5.4;
kernel messages.h).

Every message starts with a little-endian 32-bit word whose low byte is the type and whose
other three bytes are zero; reading it as one word and comparing it with the type checks
both at once (the kernel's trick in messages.h). A datagram is classified by the pair
(type, exact length) before anything is parsed: handshake messages have one size each,
transport data at least a header and a tag. No crypto happens here: the order size -> mac1
-> cookie/mac2 -> AEAD is a DoS defence and lives in the protocol code, which slices the
MACs out of the raw bytes with the offsets below.

Each declaration is a construct `Struct` (`INITIATION`, `RESPONSE`, `COOKIE_REPLY`,
`TRANSPORT_HEADER_STRUCT`): the type word as a `Const`, then little-endian integers and
fixed byte strings. Construct parses and builds with them as they are (slowly: about 9 µs
for an initiation), so the hot path never calls it: at import a `Layout` walks each
declaration's fields once and derives the one `struct.Struct` format that parses and
builds the same bytes (0.3 µs), the field offsets the MAC code slices at, and a named tuple
for parsed messages; tests/test_messages.py checks construct and the derived formats
against each other and against the kernel's offsets. The transport header
(`TRANSPORT_HEADER`) is the data plane's. What construct costs the daemon: about 1.7 MiB
and 9 ms of start-up, once.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Mapping
from typing import Any

from construct import Bytes, Const, FormatField, Int32ul, Int64ul, Renamed, Struct

from wgpy.constants import (
    COOKIE_REPLY_SIZE, COOKIE_SIZE, INITIATION_SIZE, KEY_SIZE, MAC_SIZE, MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RESPONSE_SIZE, TIMESTAMP_SIZE,
    TRANSPORT_HEADER_SIZE, TRANSPORT_MIN_SIZE, XNONCE_SIZE, encrypted_size,
)

__all__ = [
    "Layout", "Initiation", "Response", "CookieReply", "TransportHeader", "TRANSPORT_HEADER",
    "INITIATION", "RESPONSE", "COOKIE_REPLY", "TRANSPORT_HEADER_STRUCT",
    "classify", "parse", "build_initiation", "build_response", "build_cookie_reply",
    "mac1_offset", "mac2_offset",
]

# --- the declarations ----------------------------------------------------------------------------

INITIATION = Struct(
    "type" / Const(MESSAGE_INITIATION, Int32ul),
    "sender" / Int32ul,
    "ephemeral" / Bytes(KEY_SIZE),
    "static" / Bytes(encrypted_size(KEY_SIZE)),
    "timestamp" / Bytes(encrypted_size(TIMESTAMP_SIZE)),
    "mac1" / Bytes(MAC_SIZE),
    "mac2" / Bytes(MAC_SIZE),
)

RESPONSE = Struct(
    "type" / Const(MESSAGE_RESPONSE, Int32ul),
    "sender" / Int32ul,
    "receiver" / Int32ul,
    "ephemeral" / Bytes(KEY_SIZE),
    "empty" / Bytes(encrypted_size(0)),
    "mac1" / Bytes(MAC_SIZE),
    "mac2" / Bytes(MAC_SIZE),
)

COOKIE_REPLY = Struct(
    "type" / Const(MESSAGE_COOKIE_REPLY, Int32ul),
    "receiver" / Int32ul,
    "nonce" / Bytes(XNONCE_SIZE),
    "cookie" / Bytes(encrypted_size(COOKIE_SIZE)),
)

TRANSPORT_HEADER_STRUCT = Struct(  # followed by the encrypted packet and its tag
    "type" / Const(MESSAGE_TRANSPORT, Int32ul),
    "receiver" / Int32ul,
    "counter" / Int64ul,
)


# --- what the code uses: struct formats derived from them --------------------------------------

def _field_format(name: str, field: Any) -> str:
    """The struct code of one field: a little-endian integer, or a fixed byte string."""
    if isinstance(field, Const):
        field = field.subcon
    if isinstance(field, FormatField) and field.fmtstr[0] == "<":
        return field.fmtstr[1:]
    if isinstance(field, Bytes) and isinstance(field.length, int):
        return f"{field.length}s"
    raise TypeError(f"{name}: no struct format for {field!r}")


class Layout:
    """One message as the code uses it, derived from its construct declaration: the type,
    the `struct.Struct` of its fields in wire order, their offsets, and a named tuple."""

    def __init__(self, name: str, declaration: Struct) -> None:
        fields = [(f.name, f.subcon) for f in declaration.subcons if isinstance(f, Renamed)]
        if len(fields) != len(declaration.subcons) or not fields or fields[0][0] != "type" \
                or not isinstance(fields[0][1], Const):
            raise ValueError("a message is named fields, starting with its type word")
        codes = [_field_format(n, f) for n, f in fields]
        self.name, self.kind = name, int(fields[0][1].value)
        self.declaration = declaration
        self.names = tuple(n for n, _ in fields)
        self.struct = struct.Struct("<" + "".join(codes))
        self.size = self.struct.size
        self.offsets: dict[str, int] = {}
        offset = 0
        for field, code in zip(self.names, codes):
            self.offsets[field] = offset
            offset += struct.calcsize("<" + code)
        self.message: Any = namedtuple(name, self.names)  # type: ignore[misc]

    def parse(self, data: bytes | bytearray | memoryview) -> Any:
        """The fields of exactly one such message (ValueError for another size or type)."""
        if len(data) != self.size and not (self.kind == MESSAGE_TRANSPORT
                                           and len(data) >= self.size):
            raise ValueError(f"{self.name}: {len(data)} bytes, not {self.size}")
        message = self.unpack(data)
        if message.type != self.kind:
            raise ValueError(f"{self.name}: type word {message.type:#x}, not {self.kind}")
        return message

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        """The fields, unchecked (the caller has checked type and size)."""
        return self.message._make(self.struct.unpack_from(data))

    def build(self, fields: Mapping[str, Any] | tuple[Any, ...]) -> bytes:
        """The message from its fields: a parsed message, or a mapping (the type word may be
        left out); struct.error for a value that does not fit."""
        if isinstance(fields, tuple):
            return self.struct.pack(*fields)
        values = dict(fields)
        values.setdefault("type", self.kind)
        return self.struct.pack(*(values[n] for n in self.names))


Initiation = Layout("Initiation", INITIATION)
Response = Layout("Response", RESPONSE)
CookieReply = Layout("CookieReply", COOKIE_REPLY)
TransportHeader = Layout("TransportHeader", TRANSPORT_HEADER_STRUCT)

# Fast path for the data plane: (type word, receiver, counter).
TRANSPORT_HEADER = TransportHeader.struct

assert Initiation.size == INITIATION_SIZE == 148
assert Response.size == RESPONSE_SIZE == 92
assert CookieReply.size == COOKIE_REPLY_SIZE == 64
assert TransportHeader.size == TRANSPORT_HEADER.size == TRANSPORT_HEADER_SIZE == 16

_LAYOUTS = {layout.kind: layout for layout in (Initiation, Response, CookieReply,
                                               TransportHeader)}
_HANDSHAKE_SIZES = {kind: layout.size for kind, layout in _LAYOUTS.items()
                    if kind != MESSAGE_TRANSPORT}
_TYPE_WORD = struct.Struct("<I")
_INITIATION, _RESPONSE, _COOKIE_REPLY = Initiation.struct, Response.struct, CookieReply.struct


def classify(data: bytes | bytearray | memoryview) -> int | None:
    """The message type if (type word, exact length) is valid, else None.

    Transport data must hold at least a header and a tag; ciphertext length is not required
    to be a multiple of 16 here (padding is the sender's business, and keepalives are 32
    bytes).
    """
    if len(data) < 4:
        return None
    (word,) = _TYPE_WORD.unpack_from(data)
    if word == MESSAGE_TRANSPORT:
        return MESSAGE_TRANSPORT if len(data) >= TRANSPORT_MIN_SIZE else None
    size = _HANDSHAKE_SIZES.get(word)
    return word if size == len(data) else None


def parse(data: bytes | bytearray | memoryview) -> Any:
    """Parse a datagram that `classify` accepted: its fields as a named tuple (transport
    data: the header's); ValueError for anything else."""
    kind = classify(data)
    if kind is None:
        raise ValueError("not a WireGuard message")
    return _LAYOUTS[kind].unpack(data)


def mac1_offset(kind: int) -> int:
    """Offset of mac1 in a handshake message: everything before it is what mac1 covers."""
    return _HANDSHAKE_SIZES[kind] - 2 * MAC_SIZE


def mac2_offset(kind: int) -> int:
    return _HANDSHAKE_SIZES[kind] - MAC_SIZE


_NO_MAC = bytes(MAC_SIZE)


def _check(*fields: tuple[str, bytes, int]) -> None:
    for name, value, size in fields:  # struct would pad or cut a wrong length silently
        if len(value) != size:
            raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def build_initiation(sender: int, ephemeral: bytes, static: bytes, timestamp: bytes) -> bytearray:
    """An initiation with zero MACs; the cookie code writes them in place."""
    _check(("ephemeral", ephemeral, KEY_SIZE), ("static", static, encrypted_size(KEY_SIZE)),
           ("timestamp", timestamp, encrypted_size(TIMESTAMP_SIZE)))
    return bytearray(_INITIATION.pack(MESSAGE_INITIATION, sender, ephemeral, static, timestamp,
                                      _NO_MAC, _NO_MAC))


def build_response(sender: int, receiver: int, ephemeral: bytes, empty: bytes) -> bytearray:
    _check(("ephemeral", ephemeral, KEY_SIZE), ("empty", empty, encrypted_size(0)))
    return bytearray(_RESPONSE.pack(MESSAGE_RESPONSE, sender, receiver, ephemeral, empty,
                                    _NO_MAC, _NO_MAC))


def build_cookie_reply(receiver: int, nonce: bytes, cookie: bytes) -> bytes:
    _check(("nonce", nonce, XNONCE_SIZE), ("cookie", cookie, encrypted_size(COOKIE_SIZE)))
    return _COOKIE_REPLY.pack(MESSAGE_COOKIE_REPLY, receiver, nonce, cookie)

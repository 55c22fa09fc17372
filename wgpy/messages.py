"""The four WireGuard messages, each declared once as a table of its fields (paper
section 5.4; kernel messages.h).

Every message starts with a little-endian 32-bit word whose low byte is the type and whose
other three bytes are zero; reading it as one word and comparing it with the type checks
both at once (the kernel's trick in messages.h). A datagram is classified by the pair
(type, exact length) before anything is parsed: handshake messages have one size each,
transport data at least a header and a tag. No crypto happens here: the order size -> mac1
-> cookie/mac2 -> AEAD is a DoS defence and lives in the protocol code, which slices the
MACs out of the raw bytes with the offsets below.

A `Layout` turns a declaration (field names with a 32- or 64-bit little-endian integer, or
a byte count) into the one `struct.Struct` that parses and builds the message, its field
offsets and a named tuple for parsed messages. The transport header (`TRANSPORT_HEADER`) is
the data plane's hot path. (The declarations were construct `Struct`s until the daemon's
resident memory was measured: importing construct cost 6 MiB and 44 ms of start-up, for
declarations that only ever produced these struct formats.)
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Mapping
from typing import Any

from wgpy.constants import (
    COOKIE_REPLY_SIZE, COOKIE_SIZE, INITIATION_SIZE, KEY_SIZE, MAC_SIZE, MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RESPONSE_SIZE, TIMESTAMP_SIZE,
    TRANSPORT_HEADER_SIZE, TRANSPORT_MIN_SIZE, XNONCE_SIZE, encrypted_size,
)

__all__ = [
    "Layout", "Initiation", "Response", "CookieReply", "TransportHeader", "TRANSPORT_HEADER",
    "classify", "parse", "build_initiation", "build_response", "build_cookie_reply",
    "mac1_offset", "mac2_offset",
]

_INT_FORMATS = {"u32": "I", "u64": "Q"}  # little-endian: the whole layout is "<"


class Layout:
    """One message: its type, and its fields in wire order, each ``(name, "u32" | "u64" |
    byte count)``; the first is the type word."""

    def __init__(self, name: str, kind: int, fields: tuple[tuple[str, str | int], ...]) -> None:
        if fields[0] != ("type", "u32"):
            raise ValueError("a message starts with its type word")
        codes = [_INT_FORMATS[f] if isinstance(f, str) else f"{f}s" for _, f in fields]
        self.name, self.kind = name, kind
        self.names = tuple(n for n, _ in fields)
        self.struct = struct.Struct("<" + "".join(codes))
        self.size = self.struct.size
        self.offsets: dict[str, int] = {}
        offset = 0
        for (field, _), code in zip(fields, codes):
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


Initiation = Layout("Initiation", MESSAGE_INITIATION, (
    ("type", "u32"),
    ("sender", "u32"),
    ("ephemeral", KEY_SIZE),
    ("static", encrypted_size(KEY_SIZE)),
    ("timestamp", encrypted_size(TIMESTAMP_SIZE)),
    ("mac1", MAC_SIZE),
    ("mac2", MAC_SIZE),
))

Response = Layout("Response", MESSAGE_RESPONSE, (
    ("type", "u32"),
    ("sender", "u32"),
    ("receiver", "u32"),
    ("ephemeral", KEY_SIZE),
    ("empty", encrypted_size(0)),
    ("mac1", MAC_SIZE),
    ("mac2", MAC_SIZE),
))

CookieReply = Layout("CookieReply", MESSAGE_COOKIE_REPLY, (
    ("type", "u32"),
    ("receiver", "u32"),
    ("nonce", XNONCE_SIZE),
    ("cookie", encrypted_size(COOKIE_SIZE)),
))

TransportHeader = Layout("TransportHeader", MESSAGE_TRANSPORT, (
    ("type", "u32"),
    ("receiver", "u32"),
    ("counter", "u64"),
))

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

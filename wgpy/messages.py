"""The four WireGuard messages, declared once with construct (paper section 5.4).

Every message starts with a little-endian 32-bit word whose low byte is the type and whose
other three bytes are zero; reading it as one `Const(type, Int32ul)` checks both at once
(the kernel's trick in messages.h). A datagram is classified by the pair (type, exact
length) before anything is parsed: handshake messages have one size each, transport data
at least a header and a tag. No crypto happens here: the order size -> mac1 -> cookie/mac2
-> AEAD is a DoS defence and lives in the protocol code, which slices the MACs out of the
raw bytes with the offsets below.

The transport header is the hot path: `TRANSPORT_HEADER` is a `struct.Struct` derived from
the same declaration and tested equal to it.
"""

from __future__ import annotations

import struct
from typing import Any

from construct import Bytes, Const, Int32ul, Int64ul, Struct

from wgpy.constants import (
    COOKIE_REPLY_SIZE, COOKIE_SIZE, INITIATION_SIZE, KEY_SIZE, MAC_SIZE, MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RESPONSE_SIZE, TIMESTAMP_SIZE,
    TRANSPORT_HEADER_SIZE, TRANSPORT_MIN_SIZE, XNONCE_SIZE, encrypted_size,
)

__all__ = [
    "Initiation", "Response", "CookieReply", "TransportHeader", "TRANSPORT_HEADER",
    "classify", "parse", "build_initiation", "build_response", "build_cookie_reply",
    "mac1_offset", "mac2_offset",
]

Initiation = Struct(
    "type" / Const(MESSAGE_INITIATION, Int32ul),
    "sender" / Int32ul,
    "ephemeral" / Bytes(KEY_SIZE),
    "static" / Bytes(encrypted_size(KEY_SIZE)),
    "timestamp" / Bytes(encrypted_size(TIMESTAMP_SIZE)),
    "mac1" / Bytes(MAC_SIZE),
    "mac2" / Bytes(MAC_SIZE),
)

Response = Struct(
    "type" / Const(MESSAGE_RESPONSE, Int32ul),
    "sender" / Int32ul,
    "receiver" / Int32ul,
    "ephemeral" / Bytes(KEY_SIZE),
    "empty" / Bytes(encrypted_size(0)),
    "mac1" / Bytes(MAC_SIZE),
    "mac2" / Bytes(MAC_SIZE),
)

CookieReply = Struct(
    "type" / Const(MESSAGE_COOKIE_REPLY, Int32ul),
    "receiver" / Int32ul,
    "nonce" / Bytes(XNONCE_SIZE),
    "cookie" / Bytes(encrypted_size(COOKIE_SIZE)),
)

TransportHeader = Struct(
    "type" / Const(MESSAGE_TRANSPORT, Int32ul),
    "receiver" / Int32ul,
    "counter" / Int64ul,
)

# Fast path for the data plane: (type word, receiver, counter).
TRANSPORT_HEADER = struct.Struct("<IIQ")

assert Initiation.sizeof() == INITIATION_SIZE == 148
assert Response.sizeof() == RESPONSE_SIZE == 92
assert CookieReply.sizeof() == COOKIE_REPLY_SIZE == 64
assert TransportHeader.sizeof() == TRANSPORT_HEADER.size == TRANSPORT_HEADER_SIZE == 16

_HANDSHAKE_SIZES = {
    MESSAGE_INITIATION: INITIATION_SIZE,
    MESSAGE_RESPONSE: RESPONSE_SIZE,
    MESSAGE_COOKIE_REPLY: COOKIE_REPLY_SIZE,
}
_STRUCTS = {
    MESSAGE_INITIATION: Initiation,
    MESSAGE_RESPONSE: Response,
    MESSAGE_COOKIE_REPLY: CookieReply,
    MESSAGE_TRANSPORT: TransportHeader,
}
_TYPE_WORD = struct.Struct("<I")


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
    """Parse a datagram that `classify` accepted; returns the construct Container."""
    kind = classify(data)
    if kind is None:
        raise ValueError("not a WireGuard message")
    if kind == MESSAGE_TRANSPORT:
        return TransportHeader.parse(bytes(data[:TRANSPORT_HEADER_SIZE]))
    return _STRUCTS[kind].parse(bytes(data))


def mac1_offset(kind: int) -> int:
    """Offset of mac1 in a handshake message: everything before it is what mac1 covers."""
    return _HANDSHAKE_SIZES[kind] - 2 * MAC_SIZE


def mac2_offset(kind: int) -> int:
    return _HANDSHAKE_SIZES[kind] - MAC_SIZE


_NO_MAC = bytes(MAC_SIZE)


def build_initiation(sender: int, ephemeral: bytes, static: bytes, timestamp: bytes) -> bytearray:
    """An initiation with zero MACs; the cookie code writes them in place."""
    return bytearray(Initiation.build(dict(
        sender=sender, ephemeral=ephemeral, static=static, timestamp=timestamp,
        mac1=_NO_MAC, mac2=_NO_MAC)))


def build_response(sender: int, receiver: int, ephemeral: bytes, empty: bytes) -> bytearray:
    return bytearray(Response.build(dict(
        sender=sender, receiver=receiver, ephemeral=ephemeral, empty=empty,
        mac1=_NO_MAC, mac2=_NO_MAC)))


def build_cookie_reply(receiver: int, nonce: bytes, cookie: bytes) -> bytes:
    return CookieReply.build(dict(receiver=receiver, nonce=nonce, cookie=cookie))

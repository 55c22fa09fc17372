"""wgpy.messages: sizes, classification by (type, length), build/parse, MAC offsets and the
struct fast path of the transport header.

Sizes are checked against the WireGuard paper / kernel messages.h (148, 92, 64, 16) and
against their derivation from the primitive sizes in wgpy.constants; field offsets against
the kernel's packed structs in messages.h (`struct message_handshake_initiation` etc.),
written out here as literals, and parsing against plain slicing at those offsets.
"""

from __future__ import annotations

import random
import struct

import pytest

from wgpy import messages
from wgpy.constants import (
    COOKIE_REPLY_SIZE, COOKIE_SIZE, INITIATION_SIZE, KEY_SIZE, MAC_SIZE, MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RESPONSE_SIZE, TAG_SIZE,
    TIMESTAMP_SIZE, TRANSPORT_HEADER_SIZE, TRANSPORT_MIN_SIZE, XNONCE_SIZE, encrypted_size,
)
from wgpy.messages import (
    TRANSPORT_HEADER, CookieReply, Initiation, Response, TransportHeader, build_cookie_reply,
    build_initiation, build_response, classify, mac1_offset, mac2_offset, parse,
)

HANDSHAKE_SIZES = {
    MESSAGE_INITIATION: 148,
    MESSAGE_RESPONSE: 92,
    MESSAGE_COOKIE_REPLY: 64,
}
ALL_TYPES = (MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_COOKIE_REPLY, MESSAGE_TRANSPORT)


def _msg(kind: int, size: int, fill: int = 0xAB) -> bytes:
    """A datagram of `size` bytes whose type word is `kind` (reserved bytes zero)."""
    head = struct.pack("<I", kind)
    return (head + bytes([fill]) * max(0, size - 4))[:size]


# --- sizes ---------------------------------------------------------------------------------------

def test_sizes_are_the_protocol_sizes() -> None:
    assert (Initiation.size, INITIATION_SIZE) == (148, 148)
    assert (Response.size, RESPONSE_SIZE) == (92, 92)
    assert (CookieReply.size, COOKIE_REPLY_SIZE) == (64, 64)
    assert (TransportHeader.size, TRANSPORT_HEADER.size, TRANSPORT_HEADER_SIZE) \
        == (16, 16, 16)
    assert TRANSPORT_MIN_SIZE == 32  # header + an empty payload's tag (a keepalive)


def test_sizes_are_derived_from_constants() -> None:
    word = 4  # type byte + three reserved bytes; also every index
    assert INITIATION_SIZE == word + word + KEY_SIZE + encrypted_size(KEY_SIZE) \
        + encrypted_size(TIMESTAMP_SIZE) + 2 * MAC_SIZE
    assert RESPONSE_SIZE == word + 2 * word + KEY_SIZE + encrypted_size(0) + 2 * MAC_SIZE
    assert COOKIE_REPLY_SIZE == word + word + XNONCE_SIZE + encrypted_size(COOKIE_SIZE)
    assert TRANSPORT_HEADER_SIZE == word + word + 8
    assert TRANSPORT_MIN_SIZE == TRANSPORT_HEADER_SIZE + TAG_SIZE
    assert encrypted_size(0) == TAG_SIZE
    # The declarations agree field by field with these derivations.
    assert Initiation.size == INITIATION_SIZE
    assert Response.size == RESPONSE_SIZE
    assert CookieReply.size == COOKIE_REPLY_SIZE
    assert TransportHeader.size == TRANSPORT_HEADER_SIZE


# The kernel's messages.h (packed structs; `struct message_header` is the type word):
# field -> (offset, length in bytes).
KERNEL_FIELDS = {
    MESSAGE_INITIATION: {"type": (0, 4), "sender": (4, 4), "ephemeral": (8, 32),
                         "static": (40, 48), "timestamp": (88, 28), "mac1": (116, 16),
                         "mac2": (132, 16)},
    MESSAGE_RESPONSE: {"type": (0, 4), "sender": (4, 4), "receiver": (8, 4),
                       "ephemeral": (12, 32), "empty": (44, 16), "mac1": (60, 16),
                       "mac2": (76, 16)},
    MESSAGE_COOKIE_REPLY: {"type": (0, 4), "receiver": (4, 4), "nonce": (8, 24),
                           "cookie": (32, 32)},
    MESSAGE_TRANSPORT: {"type": (0, 4), "receiver": (4, 4), "counter": (8, 8)},
}
LAYOUTS = {MESSAGE_INITIATION: Initiation, MESSAGE_RESPONSE: Response,
           MESSAGE_COOKIE_REPLY: CookieReply, MESSAGE_TRANSPORT: TransportHeader}


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_field_offsets_are_the_kernels(kind: int) -> None:
    layout, fields = LAYOUTS[kind], KERNEL_FIELDS[kind]
    assert layout.kind == kind and layout.names == tuple(fields)
    assert layout.offsets == {name: offset for name, (offset, _) in fields.items()}
    assert layout.size == sum(length for _, length in fields.values())


def sliced(kind: int, wire: bytes) -> dict[str, object]:
    """A message's fields cut at the kernel's offsets: integers little-endian."""
    out: dict[str, object] = {}
    for name, (offset, length) in KERNEL_FIELDS[kind].items():
        raw = wire[offset:offset + length]
        out[name] = int.from_bytes(raw, "little") if name in (
            "type", "sender", "receiver", "counter") else raw
    return out


# --- classify ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(HANDSHAKE_SIZES))
def test_classify_handshake_exact_size_only(kind: int) -> None:
    size = HANDSHAKE_SIZES[kind]
    assert classify(_msg(kind, size)) == kind
    assert classify(_msg(kind, size - 1)) is None
    assert classify(_msg(kind, size + 1)) is None
    # Not any other handshake message's size, and not the transport minimum either.
    for other in (*HANDSHAKE_SIZES.values(), TRANSPORT_MIN_SIZE, 4, 1500):
        if other != size:
            assert classify(_msg(kind, other)) is None, other


@pytest.mark.parametrize("kind", sorted(HANDSHAKE_SIZES))
def test_classify_accepts_all_buffer_types(kind: int) -> None:
    data = _msg(kind, HANDSHAKE_SIZES[kind])
    for buf in (data, bytearray(data), memoryview(data)):
        assert classify(buf) == kind


def test_classify_transport_at_least_32_bytes() -> None:
    for size in (32, 33, 47, 48, 148, 1500, 65535):
        assert classify(_msg(MESSAGE_TRANSPORT, size)) == MESSAGE_TRANSPORT, size
    for size in (4, 15, 16, 17, 31):
        assert classify(_msg(MESSAGE_TRANSPORT, size)) is None, size
    assert classify(bytearray(_msg(MESSAGE_TRANSPORT, 32))) == MESSAGE_TRANSPORT
    assert classify(memoryview(_msg(MESSAGE_TRANSPORT, 100))) == MESSAGE_TRANSPORT


@pytest.mark.parametrize("kind", ALL_TYPES)
@pytest.mark.parametrize("position", [1, 2, 3])
@pytest.mark.parametrize("value", [0x01, 0x80, 0xFF])
def test_classify_rejects_nonzero_reserved_bytes(kind: int, position: int, value: int) -> None:
    size = HANDSHAKE_SIZES.get(kind, TRANSPORT_MIN_SIZE)
    data = bytearray(_msg(kind, size))
    assert classify(data) == kind
    data[position] = value
    assert classify(data) is None


@pytest.mark.parametrize("kind", [0, 5, 6, 0x7F, 0x80, 0xFF])
def test_classify_rejects_unknown_types(kind: int) -> None:
    for size in (*HANDSHAKE_SIZES.values(), 4, 16, TRANSPORT_MIN_SIZE, 1500):
        assert classify(_msg(kind, size)) is None, size


def test_classify_rejects_a_type_in_another_byte() -> None:
    # The type is the low byte of a little-endian word: big-endian 1 is not an initiation.
    data = b"\x00\x00\x00\x01" + bytes(INITIATION_SIZE - 4)
    assert classify(data) is None


@pytest.mark.parametrize("data", [
    b"", b"\x01", b"\x04", b"\x01\x00", b"\x04\x00\x00", b"\x02\x00\x00",
])
def test_classify_rejects_empty_and_short_input(data: bytes) -> None:
    assert classify(data) is None
    assert classify(bytearray(data)) is None
    assert classify(memoryview(data)) is None


def test_classify_bare_type_word_is_none() -> None:
    for kind in ALL_TYPES:
        assert classify(struct.pack("<I", kind)) is None


# --- build / parse -------------------------------------------------------------------------------

def _rand(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def test_initiation_round_trip() -> None:
    rng = random.Random(1)
    sender = 0xDEADBEEF
    eph, static, ts = _rand(rng, KEY_SIZE), _rand(rng, 48), _rand(rng, 28)
    wire = build_initiation(sender, eph, static, ts)
    assert isinstance(wire, bytearray)
    assert len(wire) == INITIATION_SIZE
    assert wire[:4] == b"\x01\x00\x00\x00"
    assert classify(wire) == MESSAGE_INITIATION
    msg = parse(wire)
    assert msg.type == MESSAGE_INITIATION
    assert (msg.sender, msg.ephemeral, msg.static, msg.timestamp) == (sender, eph, static, ts)
    assert msg.mac1 == msg.mac2 == bytes(MAC_SIZE)
    # Little-endian sender right after the type word.
    assert wire[4:8] == struct.pack("<I", sender)
    assert bytes(wire[8:8 + KEY_SIZE]) == eph
    # parse accepts bytes and memoryview too, and builds back identically.
    assert parse(bytes(wire)) == msg
    assert parse(memoryview(wire)) == msg
    assert Initiation.build(msg) == bytes(wire)
    assert msg._asdict() == sliced(MESSAGE_INITIATION, bytes(wire))


def test_response_round_trip() -> None:
    rng = random.Random(2)
    eph, empty = _rand(rng, KEY_SIZE), _rand(rng, TAG_SIZE)
    wire = build_response(0x01020304, 0xA0B0C0D0, eph, empty)
    assert isinstance(wire, bytearray)
    assert len(wire) == RESPONSE_SIZE
    assert classify(wire) == MESSAGE_RESPONSE
    msg = parse(wire)
    assert msg.type == MESSAGE_RESPONSE
    assert (msg.sender, msg.receiver, msg.ephemeral, msg.empty) \
        == (0x01020304, 0xA0B0C0D0, eph, empty)
    assert msg.mac1 == msg.mac2 == bytes(MAC_SIZE)
    assert wire[4:12] == struct.pack("<II", 0x01020304, 0xA0B0C0D0)
    assert Response.build(msg) == bytes(wire)


def test_cookie_reply_round_trip() -> None:
    rng = random.Random(3)
    nonce, cookie = _rand(rng, XNONCE_SIZE), _rand(rng, encrypted_size(COOKIE_SIZE))
    wire = build_cookie_reply(0xFFFFFFFF, nonce, cookie)
    assert len(wire) == COOKIE_REPLY_SIZE
    assert classify(wire) == MESSAGE_COOKIE_REPLY
    msg = parse(wire)
    assert msg.type == MESSAGE_COOKIE_REPLY
    assert (msg.receiver, msg.nonce, msg.cookie) == (0xFFFFFFFF, nonce, cookie)
    assert wire == struct.pack("<II", 3, 0xFFFFFFFF) + nonce + cookie
    assert CookieReply.build(msg) == bytes(wire)


def test_transport_round_trip() -> None:
    header = TransportHeader.build({"receiver": 0x12345678, "counter": 0x0102030405060708})
    for payload_len in (TAG_SIZE, TAG_SIZE + 16, 1420 + TAG_SIZE):
        wire = header + bytes(range(256)) * (payload_len // 256) + bytes(payload_len % 256)
        assert len(wire) == TRANSPORT_HEADER_SIZE + payload_len
        assert classify(wire) == MESSAGE_TRANSPORT
        msg = parse(wire)
        assert (msg.type, msg.receiver, msg.counter) \
            == (MESSAGE_TRANSPORT, 0x12345678, 0x0102030405060708)
    assert header == struct.pack("<IIQ", 4, 0x12345678, 0x0102030405060708)


@pytest.mark.parametrize("data", [
    b"", _msg(MESSAGE_INITIATION, INITIATION_SIZE - 1), _msg(MESSAGE_RESPONSE, 93),
    _msg(MESSAGE_TRANSPORT, 31), _msg(9, 148), b"\x01\x01\x00\x00" + bytes(144),
])
def test_parse_refuses_what_classify_refuses(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse(data)


def test_build_refuses_wrong_field_lengths() -> None:
    with pytest.raises(ValueError, match="ephemeral must be 32 bytes"):
        build_initiation(1, bytes(KEY_SIZE - 1), bytes(48), bytes(28))
    with pytest.raises(ValueError, match="empty must be 16 bytes"):
        build_response(1, 2, bytes(KEY_SIZE), bytes(TAG_SIZE + 1))
    with pytest.raises(ValueError, match="cookie must be 32 bytes"):
        build_cookie_reply(1, bytes(XNONCE_SIZE), bytes(COOKIE_SIZE))  # missing the tag


def test_layouts_refuse_a_wrong_type_word_or_size() -> None:
    for layout, kind, size in ((Initiation, MESSAGE_INITIATION, INITIATION_SIZE),
                               (Response, MESSAGE_RESPONSE, RESPONSE_SIZE),
                               (CookieReply, MESSAGE_COOKIE_REPLY, COOKIE_REPLY_SIZE)):
        data = bytearray(_msg(kind, size))
        layout.parse(bytes(data))
        data[1] = 1  # the type word covers the reserved bytes too
        with pytest.raises(ValueError, match="type word"):
            layout.parse(bytes(data))
        with pytest.raises(ValueError, match=f"not {size}"):
            layout.parse(_msg(kind, size + 1))
    assert TransportHeader.parse(_msg(MESSAGE_TRANSPORT, 100)).type == MESSAGE_TRANSPORT


def test_a_layout_starts_with_the_type_word() -> None:
    from construct import Const, Int32ul, Struct  # noqa: PLC0415

    with pytest.raises(ValueError, match="type word"):
        messages.Layout("Bad", Struct("sender" / Int32ul, "type" / Const(9, Int32ul)))
    with pytest.raises(ValueError, match="type word"):
        messages.Layout("Bad", Struct("type" / Int32ul, "sender" / Int32ul))


def test_a_layout_refuses_a_field_struct_cannot_say() -> None:
    from construct import Const, Int32ul, Int32ub, PascalString, Struct  # noqa: PLC0415

    with pytest.raises(TypeError, match="sender"):  # big-endian: not the wire's order
        messages.Layout("Bad", Struct("type" / Const(9, Int32ul), "sender" / Int32ub))
    with pytest.raises(TypeError, match="name"):  # variable length
        messages.Layout("Bad", Struct("type" / Const(9, Int32ul),
                                      "name" / PascalString(Int32ul, "ascii")))


# --- construct, the declaration, against the derived struct formats ---------------------------

@pytest.mark.parametrize("kind", ALL_TYPES)
def test_the_derived_struct_parses_and_builds_what_construct_does(kind: int) -> None:
    """The single source is the construct declaration: on random messages, construct's own
    parse and build give the same fields and bytes as the struct format derived from it."""
    rng = random.Random(kind)
    layout = LAYOUTS[kind]
    assert layout.declaration.sizeof() == layout.size
    for _ in range(200):
        wire = struct.pack("<I", kind) + _rand(rng, layout.size - 4)
        fields = layout.parse(wire)._asdict()
        slow = {k: v for k, v in layout.declaration.parse(wire).items() if k != "_io"}
        assert slow == fields
        assert layout.declaration.build(fields) == wire == layout.build(fields)


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_derived_offsets_are_constructs(kind: int) -> None:
    """Each field's offset is the size of the declaration's fields before it."""
    from construct import Struct  # noqa: PLC0415

    layout = LAYOUTS[kind]
    subcons = layout.declaration.subcons
    for i, field in enumerate(subcons):
        assert layout.offsets[field.name] == Struct(*subcons[:i]).sizeof()


def test_construct_refuses_a_wrong_type_word_as_layout_does() -> None:
    from construct import ConstError  # noqa: PLC0415

    wire = bytearray(_msg(MESSAGE_INITIATION, INITIATION_SIZE))
    wire[0] = MESSAGE_RESPONSE
    with pytest.raises(ConstError):
        Initiation.declaration.parse(bytes(wire))
    with pytest.raises(ValueError, match="type word"):
        Initiation.parse(bytes(wire))


# --- MAC offsets ---------------------------------------------------------------------------------

def test_mac_offsets() -> None:
    assert (mac1_offset(MESSAGE_INITIATION), mac2_offset(MESSAGE_INITIATION)) == (116, 132)
    assert (mac1_offset(MESSAGE_RESPONSE), mac2_offset(MESSAGE_RESPONSE)) == (60, 76)
    for kind, size in ((MESSAGE_INITIATION, INITIATION_SIZE), (MESSAGE_RESPONSE, RESPONSE_SIZE)):
        assert mac2_offset(kind) == mac1_offset(kind) + MAC_SIZE
        assert mac2_offset(kind) + MAC_SIZE == size


def test_mac_offsets_address_the_parsed_fields() -> None:
    mac1, mac2 = bytes(range(16)), bytes(range(100, 116))
    wires = {
        MESSAGE_INITIATION: build_initiation(7, bytes(KEY_SIZE), bytes(48), bytes(28)),
        MESSAGE_RESPONSE: build_response(7, 8, bytes(KEY_SIZE), bytes(TAG_SIZE)),
    }
    for kind, wire in wires.items():
        o1, o2 = mac1_offset(kind), mac2_offset(kind)
        wire[o1:o1 + MAC_SIZE] = mac1
        wire[o2:o2 + MAC_SIZE] = mac2
        msg = parse(wire)
        assert (msg.mac1, msg.mac2) == (mac1, mac2)
        assert len(wire) == HANDSHAKE_SIZES[kind]


# --- the struct fast path ------------------------------------------------------------------------

def test_transport_header_fast_path_equals_the_declaration() -> None:
    rng = random.Random(0x5EED)
    edge = [(0, 0), (0xFFFFFFFF, (1 << 64) - 1), (1, 1 << 63), (0x80000000, 1)]
    randoms = [(rng.getrandbits(32), rng.getrandbits(64)) for _ in range(1000)]
    for receiver, counter in edge + randoms:
        fast = TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, receiver, counter)
        slow = TransportHeader.build({"receiver": receiver, "counter": counter})
        assert fast == slow
        assert TRANSPORT_HEADER.unpack(slow) == (MESSAGE_TRANSPORT, receiver, counter)
        parsed = TransportHeader.parse(fast)
        assert (parsed.type, parsed.receiver, parsed.counter) \
            == (MESSAGE_TRANSPORT, receiver, counter)
        # unpack_from on a full datagram reads the header only.
        datagram = fast + bytes(TAG_SIZE)
        assert TRANSPORT_HEADER.unpack_from(datagram) == (MESSAGE_TRANSPORT, receiver, counter)


@pytest.mark.parametrize("kind", [MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_COOKIE_REPLY])
def test_parse_and_build_agree_with_slicing_at_the_kernels_offsets(kind: int) -> None:
    """parse() and build_*() against plain slicing, on random messages."""
    rng = random.Random(7)
    layout = LAYOUTS[kind]
    for _ in range(200):
        wire = struct.pack("<I", kind) + _rand(rng, layout.size - 4)
        msg = parse(wire)
        assert msg._asdict() == sliced(kind, wire)
        assert layout.build(msg) == wire
        assert layout.build(msg._asdict()) == wire
        zero_macs = dict(msg._asdict(), mac1=bytes(MAC_SIZE), mac2=bytes(MAC_SIZE))
        if kind == MESSAGE_INITIATION:
            assert build_initiation(msg.sender, msg.ephemeral, msg.static, msg.timestamp) \
                == layout.build(zero_macs)
        elif kind == MESSAGE_RESPONSE:
            assert build_response(msg.sender, msg.receiver, msg.ephemeral, msg.empty) \
                == layout.build(zero_macs)
        else:
            assert build_cookie_reply(msg.receiver, msg.nonce, msg.cookie) == wire

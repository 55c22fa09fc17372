"""Property tests (hypothesis) of the code that meets hostile input: message classification
and parsing, the receive path fed mutated real messages, TCP coalescing against its inverse,
and the UAPI parser fed the same bytes in random pieces. `bench/fuzz.py` pushes the same four
targets much harder, on demand."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EP_A, EP_B, IP_A, IP_B, Pair, ipv4, sent
from test_tunoffload import roundtrip, tcp_segment
from uapi.operations import PeerAllowedIP, PeerAllowedIPs
from uapi.prefix import prefix_of
from uapi.protocol import NEED_DATA, CloseConnection, ServerConnection
from wgpy import messages
from wgpy.constants import (
    COOKIE_REPLY_SIZE, INITIATION_SIZE, MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION,
    MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RESPONSE_SIZE, TRANSPORT_MIN_SIZE,
)
from wgpy.noise.actions import (
    ClearEndpointSource, Drop, DropReason, Schedule, SendBatch, SendDatagram, WriteToTun,
)

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIZES = {MESSAGE_INITIATION: INITIATION_SIZE, MESSAGE_RESPONSE: RESPONSE_SIZE,
         MESSAGE_COOKIE_REPLY: COOKIE_REPLY_SIZE}
ACTIONS = (SendDatagram, SendBatch, WriteToTun, Drop, Schedule, ClearEndpointSource)


# --- messages -------------------------------------------------------------------------------------

def model_classify(data: bytes) -> int | None:
    """The rule, written out: (type word, exact length), transport at least header + tag."""
    if len(data) < 4:
        return None
    word = int.from_bytes(data[:4], "little")
    if word == MESSAGE_TRANSPORT:
        return word if len(data) >= TRANSPORT_MIN_SIZE else None
    return word if SIZES.get(word) == len(data) else None


def near_messages() -> st.SearchStrategy[bytes]:
    """Bytes that are often almost messages: a type word, a size near a real one."""
    sizes = st.sampled_from([0, 1, 3, 4, 31, 32, 33, 63, 64, 91, 92, 93, 147, 148, 149])
    kinds = st.sampled_from([0, 1, 2, 3, 4, 5, 0x101, 0x01000001, 0xFFFFFFFF])
    framed = st.tuples(kinds, sizes, st.binary(max_size=160)).map(
        lambda t: (t[0].to_bytes(4, "little") + t[2] + bytes(160))[:t[1]])
    return st.one_of(st.binary(max_size=200), framed)


@FAST
@given(near_messages())
def test_classify_and_parse(data: bytes) -> None:
    kind = messages.classify(data)
    assert kind == model_classify(data)
    if kind is None:
        return
    msg = messages.parse(data)
    assert msg.type == kind
    if kind != MESSAGE_TRANSPORT:  # every field where the declaration puts it
        layout = messages._LAYOUTS[kind]
        assert msg._asdict() == layout.parse(data)._asdict()
        assert layout.build(msg) == bytes(data)
    else:
        assert (msg.receiver, msg.counter) == struct.unpack_from("<IQ", data, 4)


# --- the receive path, with mutated real messages --------------------------------------------------

def _real_messages() -> tuple[Pair, dict[str, bytes]]:
    pair = Pair()
    init = sent(pair.pa.initiate(0.0))[0]
    cookie = sent(pair.b.receive(init, EP_A, 0.0, under_load=True))[0]
    resp = sent(pair.b.receive(init, EP_A, 0.0))[0]
    pair.exchange(pair.a.receive(resp, EP_B, 0.0), 0.0)  # A's keepalive confirms the session
    data = sent(pair.pa.send(ipv4(IP_A, IP_B, b"payload" * 20), 1.0))[0]
    return pair, {"initiation": init, "response": resp, "cookie": cookie, "data": data}


PAIR, REAL = _real_messages()
# Which side each message is meant for, and how many leading bytes its MACs/AEAD protect.
TARGET = {"initiation": ("b", INITIATION_SIZE - 16), "response": ("a", RESPONSE_SIZE - 16),
          "cookie": ("a", COOKIE_REPLY_SIZE), "data": ("b", len(REAL["data"]))}

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 4000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 4000), st.just(0)),
    st.tuples(st.just("extend"), st.integers(1, 64), st.integers(0, 255)),
    st.tuples(st.just("type"), st.integers(0, 5), st.just(0)),
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    b = bytearray(data)
    for op, n, v in ops:
        if op == "flip" and b:
            b[n % len(b)] ^= v
        elif op == "truncate":
            del b[n % (len(b) + 1):]
        elif op == "extend":
            b += bytes([v]) * n
        elif op == "type" and b:
            b[0] = n
    return bytes(b)


@FAST
@given(st.sampled_from(sorted(REAL)), st.lists(mutation, min_size=1, max_size=4),
       st.booleans(), st.floats(0.0, 400.0))
def test_mutated_messages_are_accepted_or_dropped_never_raised(
        name: str, ops: list[tuple[str, int, int]], under_load: bool, now: float) -> None:
    original = REAL[name]
    data = mutate(original, ops)
    side, protected = TARGET[name]
    iface, src = (PAIR.b, EP_A) if side == "b" else (PAIR.a, EP_B)
    actions = iface.receive(data, src, 2.0 + now, under_load)
    assert all(isinstance(a, ACTIONS) for a in actions)
    drops = [a.reason for a in actions if isinstance(a, Drop)]
    assert all(isinstance(r, DropReason) for r in drops)
    touched = len(data) != len(original) or data[:protected] != original[:protected]
    if touched:  # a change to authenticated bytes (or the size) never gets through
        assert drops, (name, ops, actions)
        assert not any(isinstance(a, WriteToTun) for a in actions)


# --- TCP coalescing against segmentation -----------------------------------------------------------

segment_spec = st.tuples(
    st.integers(0, 2),  # flow
    st.sampled_from([1, 100, 536, 1000, 1000, 1000, 1379, 1380]),  # payload size
    st.sampled_from([0x10, 0x10, 0x10, 0x18, 0x11, 0x12]),  # ACK, PSH, FIN, SYN
    st.sampled_from(["", "", "", "", "gap", "ttl", "bad", "options"]),
)


@FAST
@given(st.lists(segment_spec, min_size=1, max_size=64), st.booleans())
def test_coalesce_then_segment_gives_back_the_packets(
        specs: list[tuple[int, int, int, str]], v6: bool) -> None:
    seqs = [1000, 50_000, 1 << 31]
    ids = [100, 2000, 60000]
    packets = []
    for flow, size, flags, quirk in specs:
        if quirk == "gap":
            seqs[flow] += 7
        p = tcp_segment(seqs[flow], bytes([flow]) * size, v6=v6, ip_id=ids[flow] & 0xFFFF,
                        flags=flags, sport=5000 + flow,
                        options=b"\x01\x01\x08\x0a" + bytes(8) if quirk == "options" else b"")
        if quirk == "ttl":
            b = bytearray(p)
            b[7 if v6 else 8] = 17
            if not v6:
                b[10:12] = b"\0\0"
                total = sum(struct.unpack("!10H", b[:20]))
                while total >> 16:
                    total = (total & 0xFFFF) + (total >> 16)
                b[10:12] = (0xFFFF - total).to_bytes(2, "big")
            p = bytes(b)
        elif quirk == "bad":
            b = bytearray(p)
            b[-1] ^= 0x01
            p = bytes(b)
        packets.append(p)
        seqs[flow] = (seqs[flow] + size) & 0xFFFFFFFF
        ids[flow] += 1
    assert roundtrip(packets) == packets


# --- the UAPI parser, in random pieces ------------------------------------------------------------

KEY = "ab" * 32
uapi_line = st.sampled_from([
    "set=1", "get=1", "", "\r", "private_key=" + KEY, "private_key=" + KEY + " ", "listen_port=51820",
    "listen_port=99999", "fwmark=0", "replace_peers=true", "public_key=" + KEY,
    "public_key=" + "cd" * 32, "preshared_key=" + "00" * 32, "endpoint=1.2.3.4:51820",
    "endpoint=[fe80::1%lo]:1", "endpoint=[::1]:x", "allowed_ip=10.0.0.0/8",
    "allowed_ip=10.1.2.3/32", "allowed_ip=fd00::/64", "allowed_ip=-10.0.0.0/8",
    "allowed_ip=300.0.0.0/8", "replace_allowed_ips=true", "persistent_keepalive_interval=25",
    "update_only=true", "remove=true", "protocol_version=1", "bogus=1", "no equals sign",
    "get=1\nX", "set=1\r", "\0\xff",
])


def normalized(events: list[Any]) -> list[Any]:
    """Runs of allowed_ip additions come in batches whose size depends on what was buffered:
    compare them one prefix at a time."""
    out: list[Any] = []
    for e in events:
        if isinstance(e, PeerAllowedIPs):
            out += [("allowed_ip", p) for p in e.prefixes]
        elif isinstance(e, PeerAllowedIP) and not e.remove:
            out.append(("allowed_ip", prefix_of(e.network)))
        else:
            out.append(e)
    return out


def feed(data: bytes, cuts: list[int]) -> list[Any]:
    conn = ServerConnection()
    events: list[Any] = []
    last = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        if cut > last:
            conn.receive_data(data[last:cut])
            last = cut
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            if isinstance(event, CloseConnection):
                return normalized(events)
    conn.receive_data(b"")
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, CloseConnection):
            break
    return normalized(events)


@FAST
@given(st.lists(uapi_line, max_size=40), st.lists(st.integers(0, 1 << 16), max_size=12))
def test_uapi_parser_is_the_same_in_any_pieces(lines: list[str], cuts: list[int]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")
    assert feed(data, cuts) == feed(data, [])

"""The streaming UAPI server parser: every key with wireguard-go's exact errno, framing,
streaming across chunk boundaries, and bounded memory.

Expected values were observed on Debian's wireguard-go 0.0.20220316 (Go 1.19) in a
throwaway network namespace, and agree with its device/uapi.go; see the uapi.protocol
docstring for the two deliberate, timing-dependent differences.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from ipaddress import ip_network

import pytest

from uapi.errors import EINVAL, EIO, EPROTO
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
    SetPrivateKey,
)
from uapi.prefix import prefix_network
from uapi.protocol import (
    MAX_LINE,
    NEED_DATA,
    CloseConnection,
    GetRequest,
    GetRequestError,
    RequestError,
    ServerConnection,
    SetRequestEnd,
    SetRequestError,
    SetRequestStart,
)

PUB_HEX = "01" * 32
PUB = bytes([1]) * 32
PEER = f"public_key={PUB_HEX}\n".encode()


def flat(events: Iterable[object]) -> list[object]:
    """The events with every `PeerAllowedIPs` run spelled out line by line: how the lines
    are grouped depends on how the bytes arrived, what they mean does not."""
    out: list[object] = []
    for event in events:
        if isinstance(event, PeerAllowedIPs):
            assert len(event.prefixes) >= 2
            out += [PeerAllowedIP(prefix_network(p)) for p in event.prefixes]
        else:
            out.append(event)
    return out


def run(data: bytes, *, eof: bool = False, chunks: list[int] | None = None) -> list[object]:
    """Feed `data` (in chunks of the given sizes, or whole) and collect every event."""
    conn = ServerConnection()
    events: list[object] = []
    pieces = [data]
    if chunks is not None:
        pieces, i = [], 0
        for size in chunks:
            pieces.append(data[i : i + size])
            i += size
        pieces.append(data[i:])
    for piece in pieces:
        if piece:
            conn.receive_data(piece)
            events.extend(flat(conn.events()))
            if conn.closed:
                return events
    if eof:
        conn.receive_data(b"")
        events.extend(flat(conn.events()))
    return events


def set_result(body: bytes) -> list[object]:
    """Events of one `set` minus SetRequestStart/End framing, for value tables."""
    events = run(b"set=1\n" + body + b"\n")
    assert events[0] == SetRequestStart()
    if isinstance(events[-1], SetRequestError):
        return events[1:]
    assert events[-1] == SetRequestEnd()
    return events[1:-1]


def device_line(line: str) -> object:
    (event,) = set_result(line.encode() + b"\n")
    return event


def peer_line(line: str) -> object:
    events = set_result(PEER + line.encode() + b"\n")
    assert events[0] == PeerPublicKey(PUB)
    (event,) = events[1:]
    return event


def errno_of(event: object) -> int:
    return event.errno if isinstance(event, RequestError) else 0


# ---------------------------------------------------------------------------------
# Interface-level keys


def test_private_key_any_case_and_clamped() -> None:
    assert device_line("private_key=" + "A" * 64) == SetPrivateKey(
        bytes.fromhex("a8" + "aa" * 30 + "6a")
    )
    key = bytes(range(32))
    clamped = bytearray(key)
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    assert device_line("private_key=" + key.hex().upper()) == SetPrivateKey(bytes(clamped))
    assert device_line("private_key=" + "aB" * 32) == SetPrivateKey(
        bytes.fromhex("a8" + "ab" * 30 + "6b")
    )


def test_private_key_zero_removes() -> None:
    assert device_line("private_key=" + "0" * 64) == SetPrivateKey(None)


@pytest.mark.parametrize(
    "value",
    ["", "a" * 62, "a" * 66, "a" * 63, "g" * 64, " " + "a" * 63, "0x" + "a" * 62,
     "a" * 32 + " " + "a" * 31, "a" * 64 + " "],
)
def test_private_key_invalid(value: str) -> None:
    assert errno_of(device_line("private_key=" + value)) == EINVAL


@pytest.mark.parametrize(
    ("value", "port"), [("0", 0), ("51820", 51820), ("65535", 65535), ("0012345", 12345),
                        ("0" * 60 + "7", 7)],
)
def test_listen_port_valid(value: str, port: int) -> None:
    assert device_line("listen_port=" + value) == SetListenPort(port)


@pytest.mark.parametrize(
    "value", ["", "65536", "+1", "-1", "-0", " 1", "1 ", "0x1", "1_0", "1.0", "\u0661", "99" * 30],
)
def test_listen_port_invalid(value: str) -> None:
    assert errno_of(device_line("listen_port=" + value)) == EINVAL


@pytest.mark.parametrize(("value", "mark"), [("0", 0), ("1", 1), ("4294967295", 4294967295)])
def test_fwmark_valid(value: str, mark: int) -> None:
    assert device_line("fwmark=" + value) == SetFwmark(mark)


@pytest.mark.parametrize("value", ["", "4294967296", "+1", "-1", "0x1", " 1", "1_000"])
def test_fwmark_invalid(value: str) -> None:
    assert errno_of(device_line("fwmark=" + value)) == EINVAL


def test_replace_peers() -> None:
    assert device_line("replace_peers=true") == ReplacePeers()
    for value in ["True", "TRUE", "1", "", "true ", "false"]:
        assert errno_of(device_line("replace_peers=" + value)) == EINVAL


@pytest.mark.parametrize(
    "line", ["foo=1", "=x", "=", "endpoint=1.2.3.4:5", "protocol_version=1", "allowed_ip=::/0",
             "Listen_port=1", "listen_port =1", "update_only=true"],
)
def test_unknown_or_peer_key_at_interface_level(line: str) -> None:
    assert errno_of(device_line(line)) == EINVAL


@pytest.mark.parametrize("line", ["listen_port", "endpoint", "", "x"])
def test_line_without_equals_is_eproto(line: str) -> None:
    if not line:
        return  # a blank line ends the set instead
    assert errno_of(device_line(line)) == EPROTO
    assert errno_of(peer_line(line)) == EPROTO


# ---------------------------------------------------------------------------------
# Peer-level keys


def test_public_key_any_case() -> None:
    events = set_result(b"public_key=" + b"AB" * 32 + b"\n")
    assert events == [PeerPublicKey(bytes([0xAB]) * 32)]
    assert set_result(b"public_key=" + b"0" * 64 + b"\n") == [PeerPublicKey(bytes(32))]


@pytest.mark.parametrize("value", ["", "ab" * 31, "ab" * 33, "ag" * 32, " " + "ab" * 32])
def test_public_key_invalid(value: str) -> None:
    (event,) = set_result(f"public_key={value}\n".encode())
    assert errno_of(event) == EINVAL


@pytest.mark.parametrize(
    "line", ["listen_port=1", "fwmark=1", "private_key=" + "0" * 64, "replace_peers=true",
             "foo=bar", "Endpoint=1.2.3.4:5"],
)
def test_interface_or_unknown_key_after_public_key(line: str) -> None:
    assert errno_of(peer_line(line)) == EINVAL


@pytest.mark.parametrize(
    ("key", "op"),
    [("update_only", PeerUpdateOnly()), ("remove", PeerRemove()),
     ("replace_allowed_ips", PeerReplaceAllowedIPs())],
)
def test_true_only_flags(key: str, op: object) -> None:
    assert peer_line(key + "=true") == op
    for value in ["True", "TRUE", "1", "", "true ", "false"]:
        assert errno_of(peer_line(f"{key}={value}")) == EINVAL


def test_preshared_key() -> None:
    assert peer_line("preshared_key=" + "AB" * 32) == PeerPresharedKey(bytes([0xAB]) * 32)
    assert peer_line("preshared_key=" + "0" * 64) == PeerPresharedKey(None)
    for value in ["", "ab" * 31, "ab" * 31 + "ag", "0x" + "ab" * 31]:
        assert errno_of(peer_line("preshared_key=" + value)) == EINVAL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4:51820", PeerEndpoint("1.2.3.4", 51820)),
        ("0.0.0.0:0", PeerEndpoint("0.0.0.0", 0)),
        ("255.255.255.255:65535", PeerEndpoint("255.255.255.255", 65535)),
        ("1.2.3.4:05", PeerEndpoint("1.2.3.4", 5)),
        ("[::1]:0", PeerEndpoint("::1", 0)),
        ("[::]:5", PeerEndpoint("::", 5)),
        ("[::ffff:1.2.3.4]:5", PeerEndpoint("::ffff:1.2.3.4", 5)),
        ("[::FFFF:0102:0304]:5", PeerEndpoint("::ffff:1.2.3.4", 5)),
        ("[0:0:0:0:0:0:0:00001]:5", PeerEndpoint("::1", 5)),
        ("[1:0:0:0:0:0:0:0]:5", PeerEndpoint("1::", 5)),
        ("[1::2:0:0:3]:5", PeerEndpoint("1::2:0:0:3", 5)),
        ("[1:2:3:4:5:6:1.2.3.4]:5", PeerEndpoint("1:2:3:4:5:6:102:304", 5)),
        ("[fe80::1%eth0]:51820", PeerEndpoint("fe80::1", 51820, "eth0")),
        ("[fe80::1%a:b]:5", PeerEndpoint("fe80::1", 5, "a:b")),
        ("[fe80::1%1]:5", PeerEndpoint("fe80::1", 5, "1")),
        ("[::ffff:1.2.3.4%1]:5", PeerEndpoint("::ffff:1.2.3.4", 5, "1")),
    ],
)
def test_endpoint_valid(value: str, expected: PeerEndpoint) -> None:
    assert peer_line("endpoint=" + value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "1.2.3.4", "1.2.3.4:", ":5", "[]:5", "localhost:5", "[1.2.3.4]:5", "::1:5",
     "01.2.3.4:5", "1.2.3.256:5", "1.2.3:5", "1.2.3.4:+5", "1.2.3.4:65536", "1.2.3.4:-1",
     "[::1]:5 ", " 1.2.3.4:5", "[::1]]:5", "[[::1]:5", "[fe80::1%]:5", "[%eth0]:5",
     "[1:2:3:4:5:6:7:1.2.3.4]:5", "[1::2::3]:5", "[1:2:3:4:5:6:7:8::]:5",
     "[::1:2:3:4:5:6:7:8]:5", "[10000::]:5", "1.2.3.4:5=6", "1.2.3.4%eth0:5", "[::1]:0x5"],
)
def test_endpoint_invalid(value: str) -> None:
    assert errno_of(peer_line("endpoint=" + value)) == EINVAL


@pytest.mark.parametrize(("value", "seconds"), [("0", 0), ("25", 25), ("65535", 65535),
                                                ("007", 7)])
def test_persistent_keepalive_valid(value: str, seconds: int) -> None:
    assert peer_line("persistent_keepalive_interval=" + value) == PeerPersistentKeepalive(seconds)


@pytest.mark.parametrize("value", ["", "65536", "+1", "-1", " 1", "1s", "0x19"])
def test_persistent_keepalive_invalid(value: str) -> None:
    assert errno_of(peer_line("persistent_keepalive_interval=" + value)) == EINVAL


@pytest.mark.parametrize(
    ("value", "network"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),  # host bits: accepted, masked (as stored)
        ("10.0.0.0/+8", "10.0.0.0/8"),  # strconv.Atoi takes a sign
        ("10.0.0.0/08", "10.0.0.0/8"),
        ("10.0.0.0/+0008", "10.0.0.0/8"),
        ("10.0.0.0/" + "0" * 25 + "8", "10.0.0.0/8"),
        ("10.0.0.0/-0", "0.0.0.0/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
        ("1::/0128", "1::/128"),
        ("::ffff:1.2.3.4/96", "::ffff:0:0/96"),
        ("::ffff:1.2.3.4/128", "::ffff:102:304/128"),
        ("FD00::1/64", "fd00::/64"),
    ],
)
def test_allowed_ip_valid(value: str, network: str) -> None:
    assert peer_line("allowed_ip=" + value) == PeerAllowedIP(ip_network(network))


@pytest.mark.parametrize(
    "value",
    ["", "10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "1::/129", "10.0.0.0/8/8",
     "10.0.0.0/ 8", "10.0.0.0/0x8", "10.0.0.0/1_0", "fe80::1%lo/64", "fe80::1%eth9/64",
     "010.0.0.0/8", "10.0.0/8", "host/32", "--10.0.0.0/8", "- 10.0.0.0/8", "+10.0.0.0/8"],
)
def test_allowed_ip_invalid(value: str) -> None:
    assert errno_of(peer_line("allowed_ip=" + value)) == EINVAL


def test_allowed_ip_removal_is_accepted() -> None:
    # Newer wireguard-go and wg; the reference rejects it, wgpy accepts it (DESIGN.md).
    assert peer_line("allowed_ip=-10.1.0.0/16") == PeerAllowedIP(ip_network("10.1.0.0/16"), True)
    assert peer_line("allowed_ip=-::/0") == PeerAllowedIP(ip_network("::/0"), True)


def test_protocol_version() -> None:
    assert peer_line("protocol_version=1") == PeerProtocolVersion(1)
    for value in ["01", "2", "0", "", " 1", "+1"]:
        assert errno_of(peer_line("protocol_version=" + value)) == EINVAL


def test_public_key_switches_to_peer_keys_for_the_rest_of_the_set() -> None:
    events = set_result(
        b"listen_port=1\n" + PEER + b"remove=true\npublic_key=" + b"02" * 32 + b"\n"
        b"fwmark=1\n"
    )
    assert events[:4] == [SetListenPort(1), PeerPublicKey(PUB), PeerRemove(),
                          PeerPublicKey(bytes([2]) * 32)]
    assert errno_of(events[4]) == EINVAL


# ---------------------------------------------------------------------------------
# Framing (observed on the reference)


FRAMING = [
    (b"get=1\n\n", False, [GetRequest()]),
    (b"get=1\nx\n", False, ["EINVAL", "close"]),  # the "\n" is then an invalid operation
    (b"get=1\nxget=1\n\n", False, ["EINVAL", GetRequest()]),
    (b"foo=1\n", False, ["close"]),
    (b"set=1\r\n\n", False, ["close"]),
    (b"\n", False, ["close"]),
    (b"GET=1\n\n", False, ["close"]),
    (b"get=1\n", True, ["close"]),
    (b"get", True, ["close"]),
    (b"", True, ["close"]),
    (b"set=1\n", True, [SetRequestStart(), SetRequestEnd(), "close"]),
    (b"set=1\n\n", True, [SetRequestStart(), SetRequestEnd(), "close"]),
    (b"set=1\nlisten_port=7", True,
     [SetRequestStart(), SetListenPort(7), SetRequestEnd(), "close"]),
    (b"set=1\nlisten_port=7\r", True,
     [SetRequestStart(), SetListenPort(7), SetRequestEnd(), "close"]),
    (b"set=1\nlisten_port=7\n\r", True,
     [SetRequestStart(), SetListenPort(7), SetRequestEnd(), "close"]),
    (b"set=1\nfoo", True, [SetRequestStart(), "EPROTO", "close"]),
    (b"set=1\nfoo=1\nlisten_port=1\n", True, [SetRequestStart(), "EINVAL", "close"]),
    (b"set=1\nlisten_port=7\r\nfwmark=1\r\n\r\nget=1\n\n", False,
     [SetRequestStart(), SetListenPort(7), SetFwmark(1), SetRequestEnd(), GetRequest()]),
    # The reference loses a request pipelined behind a set; we serve it (documented).
    (b"set=1\nlisten_port=1\n\nget=1\n\n", False,
     [SetRequestStart(), SetListenPort(1), SetRequestEnd(), GetRequest()]),
    # After an error the rest of the set is skipped up to its blank line.
    (b"set=1\nfoo=1\nlisten_port=2\n\nget=1\n\n", False,
     [SetRequestStart(), "EINVAL", GetRequest()]),
    (b"set=1\nfoo=1\nabc\r\nx\r\r\n\r\nget=1\n\n", False,
     [SetRequestStart(), "EINVAL", GetRequest()]),
    (b"set=1\n\nset=1\nlisten_port=1\n\nget=1\n\n", False,
     [SetRequestStart(), SetRequestEnd(), SetRequestStart(), SetListenPort(1), SetRequestEnd(),
      GetRequest()]),
    (b"get=1\n\nget=1\n\nbye\n", False, [GetRequest(), GetRequest(), "close"]),
]


def simplify(events: Sequence[object]) -> list[object]:
    out: list[object] = []
    for e in events:
        if isinstance(e, RequestError):
            out.append({EINVAL: "EINVAL", EPROTO: "EPROTO", EIO: "EIO"}[e.errno])
        elif isinstance(e, CloseConnection):
            out.append("close")
        else:
            out.append(e)
    return out


@pytest.mark.parametrize(("data", "eof", "expected"), FRAMING)
def test_framing(data: bytes, eof: bool, expected: list[object]) -> None:
    assert simplify(run(data, eof=eof)) == expected


@pytest.mark.parametrize(("data", "eof", "expected"), FRAMING)
def test_framing_byte_by_byte(data: bytes, eof: bool, expected: list[object]) -> None:
    assert simplify(run(data, eof=eof, chunks=[1] * len(data))) == expected


def test_get_trailing_error_is_a_get_request_error() -> None:
    events = run(b"get=1\n\r\n")
    assert isinstance(events[0], GetRequestError) and events[0].errno == EINVAL
    assert isinstance(events[1], CloseConnection)


def test_need_data_and_close_are_sticky() -> None:
    conn = ServerConnection()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"get=1\n")
    assert conn.next_event() is NEED_DATA
    assert conn.state == "GET"
    conn.receive_data(b"\nnope\n")
    assert conn.next_event() == GetRequest()
    close = conn.next_event()
    assert isinstance(close, CloseConnection) and "nope" in close.reason
    assert conn.next_event() == close and conn.closed
    conn.receive_data(b"get=1\n\n")  # ignored once closed
    assert conn.next_event() == close


def test_data_after_eof_is_a_bug() -> None:
    conn = ServerConnection()
    conn.receive_data(b"")
    with pytest.raises(RuntimeError):
        conn.receive_data(b"get=1\n\n")


def test_abort_set_skips_the_rest_of_the_set() -> None:
    conn = ServerConnection()
    conn.receive_data(b"set=1\nlisten_port=1\nfwmark=2\n" + PEER + b"\nget=1\n\n")
    assert conn.next_event() == SetRequestStart()
    assert conn.next_event() == SetListenPort(1)
    conn.abort_set()  # e.g. the port is in use: the device answers EADDRINUSE
    assert conn.state == "SKIP"
    assert conn.next_event() == GetRequest()
    conn.abort_set()  # outside a set: no effect
    assert conn.next_event() is NEED_DATA and conn.state == "IDLE"


# ---------------------------------------------------------------------------------
# Streaming


def sample_stream() -> bytes:
    return b"".join([
        b"get=1\n\n",
        b"set=1\nprivate_key=" + b"ab" * 32 + b"\nlisten_port=51820\nfwmark=0\n",
        b"replace_peers=true\n" + PEER + b"preshared_key=" + b"cd" * 32 + b"\n",
        b"endpoint=[fe80::1%eth0]:51820\npersistent_keepalive_interval=25\n",
        b"replace_allowed_ips=true\nallowed_ip=10.0.0.0/8\nallowed_ip=fd00::/64\n",
        b"allowed_ip=-10.9.0.0/16\nprotocol_version=1\nupdate_only=true\n",
        b"public_key=" + b"02" * 32 + b"\nremove=true\n\r\n",
        b"set=1\nlisten_port=99999\nfwmark=1\n" + PEER + b"\n",
        b"get=1\nXset=1\nbad line\n\n",
        b"set=1\r\nget=1\n\n",
    ])


def test_same_events_for_any_chunking() -> None:
    data = sample_stream()
    whole = run(data, eof=True)
    assert len(whole) > 20
    assert run(data, eof=True, chunks=[1] * len(data)) == whole
    rng = random.Random(20220316)
    for _ in range(200):
        sizes: list[int] = []
        while sum(sizes) < len(data):
            sizes.append(rng.choice([1, 2, 3, 5, 7, 11, 64, 200]))
        assert run(data, eof=True, chunks=sizes) == whole


def test_same_events_when_data_accumulates_before_parsing() -> None:
    data = sample_stream()
    conn = ServerConnection()
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
    conn.receive_data(b"")
    assert flat(conn.events()) == run(data, eof=True)


def test_many_allowed_ips_in_one_set() -> None:
    lines = [b"set=1\n", PEER]
    for i in range(130_560):
        lines.append(b"allowed_ip=10.%d.%d.%d/32\n" % (i >> 16, (i >> 8) & 255, i & 255))
    lines.append(b"\n")
    data = b"".join(lines)
    conn = ServerConnection()
    count = 0
    last = None
    for i in range(0, len(data), 65536):  # as a socket would deliver it
        conn.receive_data(data[i : i + 65536])
        for event in flat(conn.events()):
            count += 1
            last = event if not isinstance(event, SetRequestEnd) else last
    assert count == 130_560 + 3
    assert last == PeerAllowedIP(ip_network("10.1.253.255/32"))  # i = 130559 = 0x1fdff
    assert len(conn._buf) <= 2 * 65536 + 64 * 1024  # compacted as it goes


# ---------------------------------------------------------------------------------
# Bounded lines


def test_longest_set_line_is_65535_bytes() -> None:
    ok = b"set=1\na=" + b"b" * (MAX_LINE - 3) + b"\n\n"  # 65535 bytes + '\n'
    assert simplify(run(ok)) == [SetRequestStart(), "EINVAL"]
    ok_cr = b"set=1\na=" + b"b" * (MAX_LINE - 4) + b"\r\n\n"
    assert simplify(run(ok_cr)) == [SetRequestStart(), "EINVAL"]
    too_long = b"set=1\na=" + b"b" * (MAX_LINE - 2) + b"\n\n"
    assert simplify(run(too_long)) == [SetRequestStart(), "EIO", "close"]
    too_long_cr = b"set=1\na=" + b"b" * (MAX_LINE - 3) + b"\r\n\n"
    assert simplify(run(too_long_cr)) == [SetRequestStart(), "EIO", "close"]
    at_eof = b"set=1\na=" + b"b" * (MAX_LINE - 2)
    assert simplify(run(at_eof, eof=True)) == [SetRequestStart(), "EIO", "close"]
    at_eof_ok = b"set=1\na=" + b"b" * (MAX_LINE - 3)
    assert simplify(run(at_eof_ok, eof=True)) == [SetRequestStart(), "EINVAL", "close"]


def test_over_long_line_does_not_grow_the_buffer() -> None:
    conn = ServerConnection()
    conn.receive_data(b"set=1\nallowed_ip=")
    events = list(conn.events())
    chunk = b"1" * 4096
    for _ in range(1000):  # 4 MB without a newline
        conn.receive_data(chunk)
        events.extend(conn.events())
        assert len(conn._buf) <= MAX_LINE + len(chunk)
        if conn.closed:
            break
    assert simplify(events) == [SetRequestStart(), "EIO", "close"]


def test_over_long_operation_line_closes() -> None:
    conn = ServerConnection()
    for _ in range(100):
        conn.receive_data(b"x" * 4096)
        events = list(conn.events())
        if events:
            break
    assert isinstance(events[0], CloseConnection)
    assert len(conn._buf) == 0


def test_skipping_a_failed_set_needs_no_memory() -> None:
    conn = ServerConnection()
    conn.receive_data(b"set=1\nfoo=1\n")
    assert simplify(list(conn.events())) == [SetRequestStart(), "EINVAL"]
    for _ in range(100):
        conn.receive_data(b"y" * 4096)
        assert list(conn.events()) == []
        assert len(conn._buf) <= 4096 + 1
    conn.receive_data(b"\n\r")
    assert list(conn.events()) == []
    conn.receive_data(b"\nget=1\n\n")
    assert list(conn.events()) == [GetRequest()]

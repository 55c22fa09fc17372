"""`get` replies: exact bytes of format_get, the client-side reader and parsers, and typed
operations printed back into lines."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from uapi.errors import EINVAL, EPROTO, UapiError
from uapi.operations import (
    PeerAllowedIP,
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
    format_operation,
)
from uapi.protocol import ServerConnection, SetRequestEnd, SetRequestStart
from uapi.responses import (
    DeviceInfo,
    PeerInfo,
    ResponseReader,
    format_errno,
    format_get,
    parse_errno_response,
    parse_get_response,
)

PRIV = bytes.fromhex("a8" + "aa" * 30 + "6a")


def sample_device() -> DeviceInfo:
    return DeviceInfo(
        private_key=PRIV,
        listen_port=51820,
        fwmark=7,
        peers=[
            PeerInfo(
                public_key=bytes([1]) * 32,
                preshared_key=bytes([0xCD]) * 32,
                endpoint=("192.0.2.1", 51821),
                last_handshake_time_sec=1700000000,
                last_handshake_time_nsec=123456789,
                tx_bytes=100,
                rx_bytes=200,
                persistent_keepalive_interval=25,
                allowed_ips=[ip_network("10.0.0.0/8"), ip_network("fd00::/64"),
                             ip_network("::ffff:0:0/96")],
            ),
            PeerInfo(public_key=bytes([2]) * 32, endpoint=("fe80::1%eth0", 5)),
            PeerInfo(public_key=bytes([3]) * 32),
        ],
    )


SAMPLE_GET = (
    b"private_key=a8" + b"aa" * 30 + b"6a\n"
    b"listen_port=51820\n"
    b"fwmark=7\n"
    b"public_key=" + b"01" * 32 + b"\n"
    b"preshared_key=" + b"cd" * 32 + b"\n"
    b"protocol_version=1\n"
    b"endpoint=192.0.2.1:51821\n"
    b"last_handshake_time_sec=1700000000\n"
    b"last_handshake_time_nsec=123456789\n"
    b"tx_bytes=100\n"
    b"rx_bytes=200\n"
    b"persistent_keepalive_interval=25\n"
    b"allowed_ip=10.0.0.0/8\n"
    b"allowed_ip=fd00::/64\n"
    b"allowed_ip=::ffff:0.0.0.0/96\n"
    b"public_key=" + b"02" * 32 + b"\n"
    b"preshared_key=" + b"0" * 64 + b"\n"
    b"protocol_version=1\n"
    b"endpoint=[fe80::1]:5\n"
    b"last_handshake_time_sec=0\n"
    b"last_handshake_time_nsec=0\n"
    b"tx_bytes=0\n"
    b"rx_bytes=0\n"
    b"persistent_keepalive_interval=0\n"
    b"public_key=" + b"03" * 32 + b"\n"
    b"preshared_key=" + b"0" * 64 + b"\n"
    b"protocol_version=1\n"
    b"last_handshake_time_sec=0\n"
    b"last_handshake_time_nsec=0\n"
    b"tx_bytes=0\n"
    b"rx_bytes=0\n"
    b"persistent_keepalive_interval=0\n"
    b"errno=0\n"
    b"\n"
)


def test_format_get_exact_bytes() -> None:
    assert format_get(sample_device()) == SAMPLE_GET


def test_format_get_empty_device_and_omissions() -> None:
    # As the reference answers a fresh device that has not bound a port.
    assert format_get(DeviceInfo()) == b"errno=0\n\n"
    assert format_get(DeviceInfo(private_key=bytes(32), listen_port=0, fwmark=0)) == (
        b"errno=0\n\n"
    )
    assert format_get(DeviceInfo(listen_port=50260)) == b"listen_port=50260\nerrno=0\n\n"


def test_format_get_can_keep_the_zone() -> None:
    dev = DeviceInfo(peers=[PeerInfo(public_key=bytes(32), endpoint=("fe80::1%eth0", 5))])
    assert b"endpoint=[fe80::1%eth0]:5\n" in format_get(dev, keep_endpoint_zone=True)


def test_format_errno() -> None:
    assert format_errno(0) == b"errno=0\n\n"
    assert format_errno(EINVAL) == b"errno=-22\n\n"


def test_get_round_trip() -> None:
    device = parse_get_response(SAMPLE_GET)
    expected = sample_device()
    expected.peers[1].endpoint = ("fe80::1", 5)  # the zone is not printed
    assert device == expected
    assert format_get(device) == SAMPLE_GET


def test_get_round_trip_many_allowed_ips() -> None:
    nets = [ip_network(f"10.{i >> 8}.{i & 255}.0/24") for i in range(20000)]
    nets += [ip_network(f"fd00:{i:x}::/32") for i in range(5000)]
    dev = DeviceInfo(peers=[PeerInfo(public_key=bytes(32), allowed_ips=nets)])
    assert parse_get_response(format_get(dev)) == dev


def test_parse_get_tolerates_unknown_and_misplaced_keys() -> None:
    reply = (
        b"own_public_key=" + b"11" * 32 + b"\n"  # boringtun
        b"listen_port=5\n"
        b"public_key=" + b"01" * 32 + b"\n"
        b"listen_port=9\n"  # interface key after a peer: ignored, as wg does
        b"something_new=whatever\n"
        b"endpoint=[2001:db8::1]:7\n"
        b"allowed_ip=10.1.2.3/8\n"
        b"errno=0\n\n"
    )
    dev = parse_get_response(reply)
    assert dev.listen_port == 5
    (peer,) = dev.peers
    assert peer.endpoint == ("2001:db8::1", 7)
    assert peer.allowed_ips == [ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    "reply",
    [b"listen_port=5\n\n", b"listen_port=5\nerrno=0\n", b"bad line\nerrno=0\n\n", b"\n",
     b"listen_port=x\nerrno=0\n\n", b"private_key=zz\nerrno=0\n\n",
     b"public_key=" + b"01" * 32 + b"\nendpoint=nope\nerrno=0\n\n",
     b"public_key=" + b"01" * 32 + b"\nallowed_ip=1.2.3.4\nerrno=0\n\n", b"errno=x\n\n"],
)
def test_parse_get_protocol_errors(reply: bytes) -> None:
    with pytest.raises(UapiError) as info:
        parse_get_response(reply)
    assert info.value.errno == EPROTO


def test_parse_get_error_reply() -> None:
    with pytest.raises(UapiError) as info:
        parse_get_response(b"errno=-22\n\n")
    assert info.value.errno == EINVAL


def test_parse_errno_response() -> None:
    assert parse_errno_response(b"errno=0\n\n") == 0
    assert parse_errno_response(b"errno=-98\n\n") == -98
    assert parse_errno_response(b"errno=98\n\n") == -98  # boringtun's positive values
    with pytest.raises(UapiError):
        parse_errno_response(b"\n")


def test_response_reader() -> None:
    reader = ResponseReader()
    data = b"listen_port=1\nerrno=0\n\nnext"
    for i, byte in enumerate(data[:-5]):
        assert not reader.receive_data(bytes([byte])), i
    assert reader.receive_data(data[-5:-4])
    assert reader.response == b"listen_port=1\nerrno=0\n\n"
    reader.receive_data(data[-4:])
    assert reader.remainder == b"next"
    empty = ResponseReader()
    assert empty.receive_data(b"\n")
    assert empty.response == b"\n"
    with pytest.raises(ValueError):
        ResponseReader().response


ALL_OPS: list[SetOperation] = [
    SetPrivateKey(PRIV), SetPrivateKey(None), SetListenPort(51820), SetFwmark(0), ReplacePeers(),
    PeerPublicKey(bytes([1]) * 32), PeerUpdateOnly(), PeerRemove(),
    PeerPresharedKey(bytes([9]) * 32), PeerPresharedKey(None),
    PeerEndpoint("192.0.2.1", 51820), PeerEndpoint("::ffff:1.2.3.4", 1),
    PeerEndpoint("fe80::1", 2, "eth0"), PeerPersistentKeepalive(25), PeerReplaceAllowedIPs(),
    PeerAllowedIP(ip_network("10.0.0.0/8")), PeerAllowedIP(ip_network("::ffff:0:0/96"), True),
    PeerProtocolVersion(1),
]


def test_operations_print_and_parse_back() -> None:
    device_ops = ALL_OPS[:5]
    peer_ops = ALL_OPS[5:]
    lines = [format_operation(op) for op in device_ops]
    lines.append(format_operation(PeerPublicKey(bytes([1]) * 32)))
    lines += [format_operation(op) for op in peer_ops]
    assert "endpoint=[fe80::1%eth0]:2" in lines
    assert "allowed_ip=-::ffff:0.0.0.0/96" in lines
    conn = ServerConnection()
    conn.receive_data(("set=1\n" + "\n".join(lines) + "\n\n").encode())
    events = list(conn.events())
    assert events[0] == SetRequestStart() and events[-1] == SetRequestEnd()
    assert events[1:-1] == device_ops + [PeerPublicKey(bytes([1]) * 32)] + peer_ops


def test_format_operation_rejects_other_values() -> None:
    with pytest.raises(TypeError):
        format_operation("listen_port=1")  # type: ignore[arg-type]

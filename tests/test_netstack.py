"""The userspace TCP/IP stack (wgpy/netstack/) between two in-memory hosts, literal times.

`Net` joins two `Stack`s by a link that may lose and reorder packets (seeded), moving what
each `output`s to the other and advancing a simulated clock to the next timer when nothing
moves. Against real kernels: compat/test_netstack_kernel.py."""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import random
import struct
from typing import Callable

import pytest

from wgpy.constants import TCP_BUFFER, TCP_SYN_RETRIES
from wgpy.netstack import Connection, Stack, State
from wgpy.netstack import ip
from wgpy.netstack.segment import ACK, RST, SYN, header, parse_segment

MTU = 1420


class Net:
    def __init__(self, loss: float = 0.0, reorder: float = 0.0, seed: int = 1,
                 a: str = "10.0.0.1", b: str = "10.0.0.2",
                 isn: Callable[[], int] | None = None) -> None:
        kw = {"isn": isn} if isn else {}
        self.a, self.b = Stack([a], MTU, **kw), Stack([b], MTU, **kw)
        self.addr_a, self.addr_b = a, b
        self.now = 0.0
        self.rng = random.Random(seed)
        self.loss, self.reorder = loss, reorder
        self.cut = False  # the link is down: everything is lost
        self.sent: list[tuple[str, bytes]] = []  # (from "a" or "b", packet)

    def step(self) -> bool:
        moved = False
        for name, src, dst in (("a", self.a, self.b), ("b", self.b, self.a)):
            packets = src.output(self.now)
            self.sent += [(name, p) for p in packets]
            if self.reorder and len(packets) > 1 and self.rng.random() < self.reorder:
                i = self.rng.randrange(len(packets) - 1)
                packets[i], packets[i + 1] = packets[i + 1], packets[i]
            for packet in packets:
                moved = True
                if self.cut or self.rng.random() < self.loss:
                    continue
                dst.receive(packet, self.now)
        return moved

    def run(self, until: Callable[[], bool], limit: float = 60.0, rtt: float = 0.002) -> None:
        """Pump until `until()` or `limit` simulated seconds."""
        end = self.now + limit
        for _ in range(2_000_000):
            if until():
                return
            if self.now > end:
                break
            if self.step():
                self.now += rtt / 2
                continue
            deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline())
                         if d is not None]
            self.now = max(self.now + rtt / 2, min(deadlines)) if deadlines else end + 1
            self.a.tick(self.now)
            self.b.tick(self.now)
        raise AssertionError(f"not done after {limit} simulated seconds")

    def pair(self, port: int = 80) -> tuple[Connection, Connection]:
        listener = self.b.listen(port)
        client = self.a.connect(self.addr_b, port, self.now)
        self.run(lambda: bool(listener.ready))
        return client, listener.ready.popleft()


def pump_bytes(net: Net, sender: Connection, receiver: Connection, data: bytes,
               limit: float = 120.0) -> bytes:
    got = bytearray()
    pos = 0

    def done() -> bool:
        nonlocal pos
        if pos < len(data):
            pos += sender.write(data[pos:pos + 65536])
        got.extend(receiver.read(1 << 20))
        return len(got) >= len(data)

    net.run(done, limit)
    return bytes(got)


def test_handshake_transfer_both_ways_and_close() -> None:
    net = Net()
    client, server = net.pair()
    assert client.state == server.state == State.ESTABLISHED
    up = random.Random(2).randbytes(3 * TCP_BUFFER + 12345)
    assert hashlib.sha256(pump_bytes(net, client, server, up)).digest() == \
        hashlib.sha256(up).digest()
    down = random.Random(3).randbytes(200_000)
    assert pump_bytes(net, server, client, down) == down
    client.close()
    net.run(lambda: server.peer_closed)
    assert server.read(10) == b"" and server.state == State.CLOSE_WAIT
    server.close()
    net.run(lambda: server.state == State.CLOSED and client.state == State.TIME_WAIT)
    assert client.error is None and server.error is None
    net.run(lambda: client.state == State.CLOSED, limit=70)  # 2 MSL
    net.step()  # output forgets closed connections
    assert net.a.connections == {} and net.b.connections == {}
    assert client.retransmitted == server.retransmitted == 0


def test_syn_options_and_window_scale() -> None:
    net = Net()
    client, server = net.pair()
    syn = parse_segment(ip.parse(net.sent[0][1]).segment)
    assert syn.flags == SYN and syn.mss == MTU - 40 and syn.wscale == 5
    synack = parse_segment(ip.parse(net.sent[1][1]).segment)
    assert synack.flags == SYN | ACK and synack.wscale == 5 and synack.ack == syn.seq + 1
    assert client.snd_wscale == server.rcv_wscale == 5
    assert client.mss == server.mss == MTU - 40
    assert client.snd_wnd == 65535  # a SYN's window is never scaled (RFC 7323 2.2)
    server.write(b"x")
    net.run(lambda: client.read(1) == b"x")
    assert client.snd_wnd == TCP_BUFFER  # now scaled: 32768 << 5


def test_lossy_reordering_link_delivers_everything_in_order() -> None:
    net = Net(loss=0.05, reorder=0.3, seed=7)
    client, server = net.pair()
    data = random.Random(4).randbytes(400_000)
    assert pump_bytes(net, client, server, data, limit=600) == data
    assert client.retransmitted > 0


def test_sequence_numbers_wrap() -> None:
    net = Net(isn=lambda: 0xFFFFF000)
    client, server = net.pair()
    data = random.Random(5).randbytes(50_000)
    assert pump_bytes(net, client, server, data) == data
    assert client.snd_una < 0x10000  # wrapped past 2**32


def test_a_closed_port_refuses() -> None:
    net = Net()
    client = net.a.connect(net.addr_b, 81, 0.0)
    net.run(lambda: client.state == State.CLOSED)
    assert client.error == errno.ECONNREFUSED
    assert net.b.drops["no connection"] == 1


def test_a_silent_host_times_out_after_the_syn_retries() -> None:
    net = Net()
    net.cut = True
    client = net.a.connect(net.addr_b, 80, 0.0)
    net.run(lambda: client.state == State.CLOSED, limit=300)
    assert client.error == errno.ETIMEDOUT
    syns = [p for who, p in net.sent if who == "a"]
    assert len(syns) == 1 + TCP_SYN_RETRIES
    assert 120 < net.now < 140  # 1 + 2 + ... + 64 s, then 64 more (Linux: ~127 s)


def test_a_peer_that_goes_away_times_out() -> None:
    net = Net()
    client, server = net.pair()
    net.cut = True
    client.write(b"x" * 1000)
    net.run(lambda: client.state == State.CLOSED, limit=3600)
    assert client.error == errno.ETIMEDOUT


def test_zero_window_stalls_then_resumes_and_probes_keep_it_alive() -> None:
    net = Net()
    client, server = net.pair()
    data = random.Random(6).randbytes(2 * TCP_BUFFER)
    pos = 0

    def fill() -> bool:
        nonlocal pos
        pos += client.write(data[pos:pos + 65536])
        return len(server.recv_buffer) == TCP_BUFFER and client.snd_wnd == 0

    net.run(fill)
    net.run(lambda: False if net.now < 900 else True, limit=1000)  # 15 min unread
    assert client.state == State.ESTABLISHED and client.error is None
    got = bytearray(server.read(TCP_BUFFER))

    def drain() -> bool:
        nonlocal pos
        pos += client.write(data[pos:pos + 65536])
        got.extend(server.read(1 << 20))
        return len(got) == len(data)

    net.run(drain, limit=120)
    assert bytes(got) == data


def test_rst_must_match_rcv_nxt_exactly() -> None:
    """RFC 5961 3.2: an in-window RST that is not at RCV.NXT earns a challenge ACK."""
    net = Net()
    client, server = net.pair()
    src, dst = ipaddress.ip_address(net.addr_b).packed, ipaddress.ip_address(net.addr_a).packed

    def rst(seq: int) -> bytes:
        return ip.tcp_packet(src, dst, header(server.local_port, client.local_port, seq, 0,
                                              RST, 0))

    before = len(net.sent)
    net.a.receive(rst(client.rcv_nxt + 100), net.now)
    assert client.state == State.ESTABLISHED
    challenge = net.a.output(net.now)
    assert [parse_segment(ip.parse(p).segment).flags for p in challenge] == [ACK]
    net.a.receive(rst(client.rcv_nxt), net.now)
    assert client.state == State.CLOSED and client.error == errno.ECONNRESET
    assert len(net.sent) == before


def test_ipv6_and_udp() -> None:
    net = Net(a="fd00::1", b="fd00::2")
    client, server = net.pair(443)
    assert pump_bytes(net, client, server, b"hello over v6" * 1000) == b"hello over v6" * 1000
    ea, eb = net.a.udp_open(), net.b.udp_open(53)
    net.a.udp_send(ea, "fd00::2", 53, b"query")
    net.run(lambda: bool(eb.queue))
    assert eb.queue.popleft() == ("fd00::1", ea.port, b"query")
    with pytest.raises(OSError) as big:
        net.a.udp_send(ea, "fd00::2", 53, bytes(MTU))
    assert big.value.errno == errno.EMSGSIZE


def test_bad_packets_are_dropped_and_counted() -> None:
    net = Net()
    client, server = net.pair()
    client.write(b"data")
    good = net.a.output(net.now)[0]
    bad_tcp = bytearray(good)
    bad_tcp[-1] ^= 0xFF
    net.b.receive(bytes(bad_tcp), net.now)
    net.b.receive(good[:10], net.now)
    net.b.receive(b"", net.now)
    fragment = bytearray(good)
    struct.pack_into("!H", fragment, 6, 0x2000)  # MF
    struct.pack_into("!H", fragment, 10, 0)
    struct.pack_into("!H", fragment, 10, ip.checksum(bytes(fragment[:20])))
    net.b.receive(bytes(fragment), net.now)
    assert net.b.drops == {"bad TCP checksum": 1, "short IPv4 header": 1, "empty packet": 1,
                           "IPv4 fragment (not reassembled)": 1}
    assert server.read(10) == b""
    net.b.receive(good, net.now)
    assert server.read(10) == b"data"


def test_checksum_matches_rfc1071_reference() -> None:
    data = random.Random(8).randbytes(1001)
    padded = data + b"\0"
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert ip.checksum(data) == ~total & 0xFFFF


def test_listen_queue_is_bounded() -> None:
    net = Net()
    listener = net.b.listen(80)
    clients = [net.a.connect(net.addr_b, 80, 0.0) for _ in range(140)]
    net.step()
    assert listener.embryonic == 128
    assert net.b.drops["listen queue full"] == 12
    net.run(lambda: len(listener.ready) == 128)
    assert all(c.state == State.ESTABLISHED for c in clients[:128])

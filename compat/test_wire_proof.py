"""Wire proof: wgpy's sans-IO protocol core against Debian's wireguard-go.

Each test gets a namespace running wireguard-go (configured by stock `wg`) and drives an
`Interface` by hand from a plain UDP socket on the same namespace's loopback; the test plays
the core's TUN. What crosses the socket is exactly what the core asked to send, so these
tests prove the handshake, the transport data and the cookie mechanism byte-compatible
with a real implementation:

1. the core initiates, and an ICMP echo it sends is answered by the namespace's kernel;
2. wireguard-go initiates (prompted by `ping`), and the core answers the echo requests;
3. the core, under load, answers wireguard-go's initiation with a cookie reply; the retry
   carries a mac2 made with that cookie and is then accepted.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from compat.conftest import CORE_ADDRESS, WG_GO_ADDRESS, WgGoNamespace
from compat.packets import (
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PROTO_ICMP, echo_reply_for, echo_request,
    parse_icmp_echo, parse_ipv4,
)
from wgpy.constants import (
    COOKIE_REPLY_SIZE, INITIATION_SIZE, MAC_SIZE, MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION,
    MESSAGE_RESPONSE, MESSAGE_TRANSPORT, REKEY_TIMEOUT, RESPONSE_SIZE, TRANSPORT_MIN_SIZE,
)
from wgpy.noise.actions import Action, Drop, SendBatch, SendDatagram, WriteToTun
from wgpy.noise.interface import Interface

pytestmark = pytest.mark.root

POLL = 0.1  # socket timeout per receive, so the core's timers get ticked
EXCHANGE_TIMEOUT = 10.0


def msg_type(data: bytes) -> int:
    return int.from_bytes(data[:4], "little")


def sender_index(data: bytes) -> bytes:
    return data[4:8]


def datagrams(actions: list[Action]) -> list[SendDatagram]:
    """Every datagram the actions send, a batch of transport data flattened."""
    out: list[SendDatagram] = []
    for a in actions:
        if isinstance(a, SendDatagram):
            out.append(a)
        elif isinstance(a, SendBatch):
            out.extend(SendDatagram(d, a.endpoint) for d in a.datagrams)
    return out


@dataclass
class Core:
    """The sans-IO core with its socket: carries out SendDatagram, collects the rest."""

    wire: WgGoNamespace
    iface: Interface = field(init=False)
    drops: list[Drop] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = self.wire.sock
        self.iface = Interface(self.wire.core_private)
        self.iface.wall_offset = time.time() - time.monotonic()
        self.peer = self.iface.add_peer(self.wire.public_key)
        self.iface.allowed_ips.insert(ipaddress.ip_network(f"{WG_GO_ADDRESS}/32"), self.peer)

    def carry_out(self, actions: list[Action]) -> list[bytes]:
        """Send the datagrams, remember the drops; return the packets for the TUN."""
        tun: list[bytes] = []
        for sd in datagrams(actions):
            self.sock.sendto(sd.data, sd.endpoint)
        for action in actions:
            if isinstance(action, WriteToTun):
                tun.append(action.packet)
            elif isinstance(action, Drop):
                self.drops.append(action)
        return tun

    def recv(self, deadline: float) -> tuple[bytes, tuple[str, int]] | None:
        """One datagram, or None after at most POLL seconds (never past `deadline`)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(min(remaining, POLL))
        try:
            data, src = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        return data, src

    def next_datagram(self, deadline: float, what: str) -> tuple[bytes, tuple[str, int]]:
        """The next datagram from wireguard-go, ticking the core's timers while waiting."""
        while time.monotonic() < deadline:
            got = self.recv(deadline)
            if got is not None:
                return got
            self.tick()
        pytest.fail(f"no {what} from wireguard-go in time\n{self.wire.log_tail()}")

    def tick(self) -> list[bytes]:
        return self.carry_out(self.iface.tick(time.monotonic()))


@dataclass
class PingService:
    """What the core saw while answering `ping` through wireguard-go."""

    initiations: list[bytes] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)
    requests: int = 0
    replies: int = 0


def serve_ping(core: Core, ping: subprocess.Popen[bytes], deadline: float,
               service: PingService | None = None) -> PingService:
    """Answer handshakes and echo requests for 10.77.0.1 until ping exits (or deadline)."""
    service = service or PingService()
    while ping.poll() is None and time.monotonic() < deadline:
        got = core.recv(deadline)
        if got is not None:
            data, src = got
            now = time.monotonic()
            actions = core.iface.receive(data, src, now)
            if msg_type(data) == MESSAGE_INITIATION:
                service.initiations.append(data)
                service.responses += [d.data for d in datagrams(actions)
                                      if msg_type(d.data) == MESSAGE_RESPONSE]
            for packet in core.carry_out(actions):
                ip = parse_ipv4(packet)
                if ip.proto != PROTO_ICMP or ip.dst != CORE_ADDRESS:
                    continue
                if parse_icmp_echo(ip.payload).kind != ICMP_ECHO_REQUEST:
                    continue
                service.requests += 1
                looped = core.carry_out(core.iface.send(echo_reply_for(packet), now))
                assert not looped, "the reply came back for the TUN"
                service.replies += 1
        core.tick()
    return service


def finish_ping(core: Core, ping: subprocess.Popen[bytes]) -> str:
    """Wait for ping (bounded) and return its output; fail if it did not succeed."""
    try:
        out, _ = ping.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ping did not finish\n{core.wire.log_tail()}")
    text = out.decode(errors="replace")
    assert ping.returncode == 0, (f"ping exited {ping.returncode}:\n{text}\n"
                                  f"wireguard-go log:\n{core.wire.log_tail()}")
    return text


def assert_wg_show_saw_traffic(wire: WgGoNamespace) -> None:
    dump = wire.peer_dump()
    assert dump.latest_handshake > 0, dump
    assert dump.rx_bytes > 0, dump
    assert dump.tx_bytes > 0, dump
    assert dump.endpoint == f"127.0.0.1:{wire.core_port}", dump


def test_core_initiates(wggo: WgGoNamespace) -> None:
    core = Core(wggo)
    core.peer.endpoint = wggo.endpoint

    # Initiation -> wireguard-go.
    actions = core.peer.initiate(time.monotonic())
    sent = datagrams(actions)
    assert len(sent) == 1, actions
    initiation = sent[0]
    assert len(initiation.data) == INITIATION_SIZE
    assert msg_type(initiation.data) == MESSAGE_INITIATION
    assert initiation.endpoint == wggo.endpoint
    core.carry_out(actions)

    # Response <- wireguard-go; the core confirms the session with a keepalive.
    response, src = core.next_datagram(time.monotonic() + 5, "handshake response")
    assert len(response) == RESPONSE_SIZE and msg_type(response) == MESSAGE_RESPONSE
    assert response[8:12] == sender_index(initiation.data)
    assert src == wggo.endpoint
    actions = core.iface.receive(response, src, time.monotonic())
    assert not [a for a in actions if isinstance(a, Drop)], actions
    sent = datagrams(actions)
    assert len(sent) == 1, actions
    keepalive = sent[0].data
    assert msg_type(keepalive) == MESSAGE_TRANSPORT and len(keepalive) == TRANSPORT_MIN_SIZE
    assert keepalive[4:8] == sender_index(response)
    core.carry_out(actions)

    # An ICMP echo request from "our TUN" to wireguard-go's address.
    ident, seq = int.from_bytes(os.urandom(2), "big"), 1 + os.getpid() % 1000
    payload = b"wgpy wire proof " + os.urandom(24)
    request = echo_request(CORE_ADDRESS, WG_GO_ADDRESS, ident, seq, payload)
    actions = core.iface.send(request, time.monotonic())
    sent = datagrams(actions)
    assert len(sent) == 1 and msg_type(sent[0].data) == MESSAGE_TRANSPORT, actions
    core.carry_out(actions)

    # The namespace's kernel answers through wireguard-go.
    reply = None
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    while reply is None and time.monotonic() < deadline:
        got = core.recv(deadline)
        if got is not None:
            data, src = got
            for packet in core.carry_out(core.iface.receive(data, src, time.monotonic())):
                ip = parse_ipv4(packet)
                if ip.proto == PROTO_ICMP:
                    echo = parse_icmp_echo(ip.payload)
                    if echo.kind == ICMP_ECHO_REPLY and echo.ident == ident:
                        reply = (ip, echo)
        core.tick()
    assert reply is not None, f"no echo reply\n{wggo.log_tail()}"
    ip, echo = reply
    assert (ip.src, ip.dst) == (WG_GO_ADDRESS, CORE_ADDRESS)
    assert (echo.code, echo.seq, echo.data) == (0, seq, payload)
    assert not core.drops, core.drops

    assert_wg_show_saw_traffic(wggo)
    assert core.peer.rx_bytes > 0 and core.peer.tx_bytes > 0


def test_wireguard_go_initiates(wggo: WgGoNamespace) -> None:
    wggo.set_core_endpoint()
    core = Core(wggo)  # no endpoint: the core learns it from the initiation
    ping = wggo.spawn("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", CORE_ADDRESS)

    service = serve_ping(core, ping, time.monotonic() + EXCHANGE_TIMEOUT)
    finish_ping(core, ping)

    assert service.initiations, "wireguard-go never initiated"
    assert all(len(i) == INITIATION_SIZE for i in service.initiations)
    assert len(service.responses) == len(service.initiations)
    assert all(len(r) == RESPONSE_SIZE for r in service.responses)
    assert service.replies >= 1
    assert core.peer.endpoint == wggo.endpoint
    assert not core.drops, core.drops
    assert_wg_show_saw_traffic(wggo)


def test_cookie_round(wggo: WgGoNamespace) -> None:
    wggo.set_core_endpoint()
    core = Core(wggo)
    # Keep pinging until 3 replies arrive: the handshake only completes on the retry.
    ping = wggo.spawn("ping", "-n", "-c", "3", "-i", "0.2", "-w", "15", CORE_ADDRESS)

    # The first initiation, under load: no cookie yet, so the core answers with a cookie.
    first, src = core.next_datagram(time.monotonic() + 5, "initiation")
    assert len(first) == INITIATION_SIZE and msg_type(first) == MESSAGE_INITIATION
    assert first[-MAC_SIZE:] == bytes(MAC_SIZE), "a first initiation with a mac2"
    actions = core.iface.receive(first, src, time.monotonic(), under_load=True)
    assert len(actions) == 1 and isinstance(actions[0], SendDatagram), actions
    cookie_reply = actions[0]
    assert len(cookie_reply.data) == COOKIE_REPLY_SIZE
    assert msg_type(cookie_reply.data) == MESSAGE_COOKIE_REPLY
    assert cookie_reply.data[4:8] == sender_index(first)
    assert cookie_reply.endpoint == src
    assert core.peer.endpoint is None, "a cookie reply must not touch the peer"
    core.carry_out(actions)
    cookie_sent = time.monotonic()

    # wireguard-go retries after REKEY_TIMEOUT (+ jitter), now with mac2 from the cookie.
    retry, src = core.next_datagram(cookie_sent + 12, "retried initiation")
    waited = time.monotonic() - cookie_sent
    assert len(retry) == INITIATION_SIZE and msg_type(retry) == MESSAGE_INITIATION
    assert waited > REKEY_TIMEOUT - 1, f"retry after only {waited:.2f} s"
    assert retry[-MAC_SIZE:] != bytes(MAC_SIZE), "the retry carries no mac2"
    actions = core.iface.receive(retry, src, time.monotonic(), under_load=True)
    sent = datagrams(actions)
    assert len(sent) == 1, actions
    response = sent[0].data
    assert len(response) == RESPONSE_SIZE and msg_type(response) == MESSAGE_RESPONSE
    assert response[8:12] == sender_index(retry)
    core.carry_out(actions)

    service = serve_ping(core, ping, time.monotonic() + EXCHANGE_TIMEOUT)
    finish_ping(core, ping)
    assert not service.initiations, "wireguard-go did not accept the response"
    assert service.replies >= 1
    assert not core.drops, core.drops
    assert_wg_show_saw_traffic(wggo)

"""Two in-memory interfaces and IP packet builders for the core's tests (boringtun's
`create_two_tuns_and_handshake`, h11's `ConnectionPair`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from wgpy import crypto
from wgpy.noise.actions import Action, Drop, DropReason, SendBatch, SendDatagram, WriteToTun
from wgpy.noise.interface import Interface
from wgpy.noise.peer import Peer

EP_A = ("192.0.2.1", 51820)
EP_B = ("192.0.2.2", 51821)
IP_A = "10.0.0.1"
IP_B = "10.0.0.2"


def ipv4(src: str, dst: str, payload: bytes = b"hello") -> bytes:
    """A minimal IPv4 packet (protocol 253, experimental); checksums are not the core's job."""
    total = 20 + len(payload)
    return (bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(4) + bytes([64, 253, 0, 0])
            + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + payload)


def ipv6(src: str, dst: str, payload: bytes = b"hello6") -> bytes:
    return (bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([253, 64])
            + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + payload)


def sent(actions: list[Action]) -> list[bytes]:
    out: list[bytes] = []
    for a in actions:
        if isinstance(a, SendDatagram):
            out.append(a.data)
        elif isinstance(a, SendBatch):
            out.extend(a.datagrams)
    return out


def written(actions: list[Action]) -> list[bytes]:
    return [a.packet for a in actions if isinstance(a, WriteToTun)]


def drops(actions: list[Action]) -> list[DropReason]:
    return [a.reason for a in actions if isinstance(a, Drop) for _ in range(a.count)]


@dataclass
class Pair:
    """Interfaces A and B with one peer each, allowed IPs and A knowing B's endpoint."""

    a: Interface = field(default_factory=lambda: Interface(crypto.generate_private_key(),
                                                           jitter=lambda: 0.0))
    b: Interface = field(default_factory=lambda: Interface(crypto.generate_private_key(),
                                                           jitter=lambda: 0.0))

    def __post_init__(self) -> None:
        self.pa: Peer = self.a.add_peer(self.b.identity.public)  # A's view of B
        self.pb: Peer = self.b.add_peer(self.a.identity.public)  # B's view of A
        self.a.allowed_ips.insert(ipaddress.ip_network(IP_B + "/32"), self.pa)
        self.a.allowed_ips.insert(ipaddress.ip_network("fd00::2/128"), self.pa)
        self.b.allowed_ips.insert(ipaddress.ip_network(IP_A + "/32"), self.pb)
        self.b.allowed_ips.insert(ipaddress.ip_network("fd00::1/128"), self.pb)
        self.pa.endpoint = EP_B
        self.pb.endpoint = EP_A

    def to_b(self, datagrams: list[bytes], now: float, under_load: bool = False) -> list[Action]:
        out: list[Action] = []
        for d in datagrams:
            out += self.b.receive(d, EP_A, now, under_load)
        return out

    def to_a(self, datagrams: list[bytes], now: float, under_load: bool = False) -> list[Action]:
        out: list[Action] = []
        for d in datagrams:
            out += self.a.receive(d, EP_B, now, under_load)
        return out

    def exchange(self, actions: list[Action], now: float, from_a: bool = True,
                 rounds: int = 10) -> tuple[list[bytes], list[bytes]]:
        """Deliver datagrams back and forth until none are left; returns the packets each
        side wrote to its TUN (A's, B's)."""
        tun_a: list[bytes] = []
        tun_b: list[bytes] = []
        for _ in range(rounds):
            datagrams = sent(actions)
            if not datagrams:
                return tun_a, tun_b
            actions = self.to_b(datagrams, now) if from_a else self.to_a(datagrams, now)
            (tun_b if from_a else tun_a).extend(written(actions))
            from_a = not from_a
        raise AssertionError("datagrams still flowing after %d rounds" % rounds)

    def handshake(self, now: float = 0.0) -> None:
        """A initiates; run until both sides hold a confirmed keypair."""
        self.exchange(self.pa.initiate(now), now)
        assert self.pa.keypairs.current is not None

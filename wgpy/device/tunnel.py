"""One tunnel to one WireGuard peer, without a TUN and without privileges: `wgpy.Tunnel`.

Theory of operation: a `Tunnel` is a `wgpy.Device` on an in-memory packet interface with a
single peer whose allowed IPs are everything (by default), so every packet the program
sends goes to that peer, and every packet the peer sends that passes the allowed-IPs
check comes back to the program. The UDP socket is an ordinary unprivileged one (port 0
picks a free port). This is what a test of a WireGuard server needs (handshake with it,
send it IP packets, look at what it answers) and what a program needs for one tunnel
where it cannot create interfaces.

The program speaks IP itself: `send` and `receive` carry whole IPv4 or IPv6 packets, with
`address` (the tunnel address the peer gave us) as their source. `ping` is the one
exchange built in: an ICMP echo request from `address`, answered by the peer's host
(IPv4). Packets that arrive while `ping` waits for its reply are kept for `receive`.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import os
import time
from types import TracebackType
from typing import Sequence

from uapi.responses import PeerInfo
from wgpy.constants import DEFAULT_MTU
from wgpy.device.embedded import Device, Key, PeerConfig, key_bytes
from wgpy.packets import (
    ICMP_ECHO_REPLY,
    PROTO_ICMP,
    echo_request,
    parse_icmp_echo,
    parse_ipv4,
)

__all__ = ["Tunnel"]

_EVERYTHING = ("0.0.0.0/0", "::/0")
_IDENTS = itertools.count(os.getpid() & 0xFFFF)


class Tunnel:
    """A WireGuard tunnel to `peer_public_key` at `endpoint`, as the Python object it is."""

    def __init__(self, private_key: Key, peer_public_key: Key, endpoint: str | tuple[str, int],
                 *, address: str, preshared_key: Key | None = None,
                 allowed_ips: Sequence[str] = _EVERYTHING, listen_port: int = 0,
                 persistent_keepalive: int | None = None, mtu: int = DEFAULT_MTU,
                 name: str = "wgpy-tunnel") -> None:
        self.address = ipaddress.ip_address(address)
        self.peer_public_key = key_bytes(peer_public_key)
        self.device = Device.in_memory(name, mtu=mtu)
        self._backlog: collections.deque[bytes] = collections.deque()
        try:
            self.device.configure(private_key=private_key, listen_port=listen_port, peers=[
                PeerConfig(self.peer_public_key, preshared_key=preshared_key,
                           endpoint=endpoint, allowed_ips=allowed_ips,
                           persistent_keepalive=persistent_keepalive)])
        except BaseException:
            self.device.close()
            raise

    @property
    def listen_port(self) -> int:
        return self.device.listen_port

    def handshake(self, timeout: float = 5.0) -> bool:
        """Complete a handshake with the peer now; True if one completed within `timeout`."""
        return self.device.handshake(self.peer_public_key, timeout)

    def peer(self) -> PeerInfo:
        """The peer as `wg show` sees it: endpoint, last handshake, bytes each way."""
        return self.device.state().peers[0]

    def send(self, packet: bytes) -> None:
        """Send one IP packet through the tunnel (a handshake first, if none is current)."""
        self.device.write_packet(packet)

    def receive(self, timeout: float | None = 5.0) -> bytes:
        """The next IP packet from the peer; TimeoutError if none came within `timeout`."""
        if self._backlog:
            return self._backlog.popleft()
        return self.device.read_packet(timeout)

    def ping(self, destination: str, timeout: float = 5.0, data: bytes = b"wgpy") -> float:
        """Send an ICMP echo request to `destination` (IPv4) through the tunnel and wait for
        its reply; the round trip in seconds (a handshake included, if one was needed)."""
        if self.address.version != 4:
            raise ValueError("ping speaks ICMP over IPv4: give the tunnel an IPv4 address")
        ident, seq = next(_IDENTS) & 0xFFFF, 1
        request = echo_request(str(self.address), destination, ident, seq, data)
        start = time.monotonic()
        deadline = start + timeout
        self.send(request)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no echo reply from {destination} within {timeout} s")
            packet = self.device.read_packet(left)
            if _is_reply(packet, destination, ident, seq):
                return time.monotonic() - start
            self._backlog.append(packet)

    def close(self) -> None:
        self.device.close()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _is_reply(packet: bytes, source: str, ident: int, seq: int) -> bool:
    try:
        ip = parse_ipv4(packet)
        if ip.proto != PROTO_ICMP or ip.src != source:
            return False
        echo = parse_icmp_echo(ip.payload)
    except ValueError:
        return False
    return echo.kind == ICMP_ECHO_REPLY and echo.ident == ident and echo.seq == seq

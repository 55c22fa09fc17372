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

Threads may call `receive` and `ping` at once: one of them at a time reads from the
device; a packet goes to the `ping` whose reply it is, else to the reader if it wants it,
else to the backlog, where every waiter looks (`_take`). So an echo reply is never taken
by a `receive` while its `ping` waits, and no packet waits in the backlog unseen.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import os
import threading
import time
from types import TracebackType
from typing import Callable, Sequence

from uapi.responses import PeerInfo
from wgpy.constants import DEFAULT_MTU
from wgpy.api.embedded import Device, Key, PeerConfig, key_bytes
from wgpy.packets import (
    ICMP_ECHO_REPLY, PROTO_ICMP, echo_request, parse_icmp_echo, parse_ipv4,
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
        self.mtu = mtu
        self.peer_public_key = key_bytes(peer_public_key)
        self.device = Device.in_memory(name, mtu=mtu)
        # Packets read that their reader did not want, the echo replies waiting pings
        # claim, and whether a thread is reading from the device: guarded by _ready.
        self._ready = threading.Condition()
        self._backlog: collections.deque[bytes] = collections.deque()
        self._claims: list[Callable[[bytes], bool]] = []
        self._reading = False
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
        """The peer as `wg show` sees it: endpoint, last handshake, bytes each way;
        LookupError if it was removed (through `device`)."""
        for peer in self.device.state().peers:
            if peer.public_key == self.peer_public_key:
                return peer
        raise LookupError("the tunnel's peer was removed from its device")

    def send(self, packet: bytes) -> None:
        """Send one IP packet through the tunnel (a handshake first, if none is current)."""
        self.device.write_packet(packet)

    def receive(self, timeout: float | None = 5.0) -> bytes:
        """The next IP packet from the peer; TimeoutError if none came within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._take(_anything, deadline, timeout)

    def receive_batch(self, timeout: float | None = 5.0, limit: int = 64) -> list[bytes]:
        """`receive`, then up to `limit` packets in all that are already waiting, without
        waiting for more (a program that speaks TCP answers a batch with one ACK). Echo
        replies a `ping` waits for are left to it."""
        batch = [self.receive(timeout)]
        with self._ready:
            if self._reading:
                return batch  # another thread reads the device: the rest is its to see
            self._reading = True
        try:
            while len(batch) < limit:
                try:
                    packet = self.device.read_packet(0)
                except TimeoutError:
                    break
                with self._ready:
                    if any(claim(packet) for claim in self._claims):
                        self._backlog.append(packet)
                        self._ready.notify_all()
                        continue
                batch.append(packet)
        finally:
            with self._ready:
                self._reading = False
                self._ready.notify_all()
        return batch

    def ping(self, destination: str, timeout: float = 5.0, data: bytes = b"wgpy") -> float:
        """Send an ICMP echo request to `destination` (IPv4) through the tunnel and wait for
        its reply; the round trip in seconds (a handshake included, if one was needed)."""
        if self.address.version != 4:
            raise ValueError("ping speaks ICMP over IPv4: give the tunnel an IPv4 address")
        ident, seq = next(_IDENTS) & 0xFFFF, 1
        request = echo_request(str(self.address), destination, ident, seq, data)
        def reply(packet: bytes) -> bool:
            return _is_reply(packet, destination, ident, seq)

        with self._ready:
            self._claims.append(reply)
        try:
            start = time.monotonic()
            self.send(request)
            try:
                self._take(reply, start + timeout, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"no echo reply from {destination} within {timeout} s") from None
            return time.monotonic() - start
        finally:
            with self._ready:
                self._claims.remove(reply)

    def _take(self, want: Callable[[bytes], bool], deadline: float | None,
              timeout: float | None) -> bytes:
        """The first packet `want` accepts and no other waiting ping claims: from the
        backlog, or read from the device by this thread if no other is reading."""
        def mine(packet: bytes) -> bool:
            return want(packet) and not any(
                claim(packet) for claim in self._claims if claim is not want)

        def left() -> float | None:
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no packet within {timeout} s")
            return remaining

        ready = self._ready
        with ready:
            while True:
                for i, packet in enumerate(self._backlog):
                    if mine(packet):
                        del self._backlog[i]
                        return packet
                if not self._reading:
                    self._reading = True
                    break
                ready.wait(left())
        try:
            while True:
                packet = self.device.read_packet(left())
                with ready:
                    if mine(packet):
                        return packet
                    self._backlog.append(packet)
                    ready.notify_all()
        finally:
            with ready:
                self._reading = False
                ready.notify_all()

    def close(self) -> None:
        self.device.close()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _anything(packet: bytes) -> bool:
    return True


def _is_reply(packet: bytes, source: str, ident: int, seq: int) -> bool:
    try:
        ip = parse_ipv4(packet)
        if ip.proto != PROTO_ICMP or ip.src != source:
            return False
        echo = parse_icmp_echo(ip.payload)
    except ValueError:
        return False
    return echo.kind == ICMP_ECHO_REPLY and echo.ident == ident and echo.seq == seq

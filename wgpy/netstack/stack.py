"""A host's TCP and UDP over whole IP packets, sans-IO: what a tunnel without a TUN needs.

Theory of operation: a `Stack` owns the tunnel addresses given to it and the transport
state behind them: TCP connections by four-tuple, TCP listeners and UDP endpoints by local
port. `receive(packet, now)` checks an IP packet (`ip.parse`) and hands it to its owner;
`output(now)` collects the IP packets every connection owes (data, ACKs, FINs, resets)
and the UDP datagrams queued to send; `tick(now)` runs the timers, `next_deadline()` says
when they are next due. The I/O room that drives it (wgpy.api.netstack) feeds it what the
tunnel receives, sends what `output` gives, and wakes the program's waiters.

What a host does beyond a single connection follows RFC 9293 and Linux: a segment for no
connection and no listener is answered with a reset (section 3.10.7.1), a SYN to a
listener whose queue of embryonic plus unaccepted connections is full is dropped (the
sender retries, as Linux's full-backlog behaviour), ephemeral ports come from Linux's
`ip_local_port_range`, initial sequence numbers are random (RFC 6528 asks for
unpredictable ones), an ICMP echo request to our IPv4 address is answered (RFC 1122
3.2.2.6; other ICMP is not for us). Each drop is counted in `drops` by reason.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import secrets
from typing import Callable, Sequence

from wgpy.constants import EPHEMERAL_PORTS, TCP_ACCEPT_BACKLOG
from wgpy.netstack import ip
from wgpy.packets import PROTO_ICMP, echo_reply_for
from wgpy.netstack.segment import ACK, RST, SYN, Segment, header, parse_segment
from wgpy.netstack.tcp import Connection, State

__all__ = ["Stack", "Listener", "UdpEndpoint"]

_Key = tuple[bytes, int, bytes, int]  # local address, local port, remote address, port
_UDP_QUEUE = 1024  # datagrams waiting for the program per endpoint; more are dropped


class Listener:
    """A listening TCP port: established connections wait in `ready` for `accept`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ready: collections.deque[Connection] = collections.deque()
        self.embryonic = 0  # connections in SYN-RECEIVED
        self.closed = False


class UdpEndpoint:
    """A bound UDP port: datagrams wait in `queue` as (address, port, payload)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.queue: collections.deque[tuple[str, int, bytes]] = collections.deque()
        self.closed = False


class Stack:
    def __init__(self, addresses: Sequence[str], mtu: int,
                 isn: Callable[[], int] = lambda: secrets.randbits(32)) -> None:
        self.addresses = [ipaddress.ip_address(a) for a in addresses]
        self._ours = {a.packed for a in self.addresses}  # per packet: no address objects
        self.mtu = mtu
        self._isn = isn
        self.connections: dict[_Key, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self.udp: dict[int, UdpEndpoint] = {}
        self.drops: collections.Counter[str] = collections.Counter()
        self._embryos: dict[_Key, Listener] = {}
        self._pending: list[bytes] = []  # resets and UDP datagrams for the next output

    # --- the program's side ----------------------------------------------------------------

    def connect(self, remote: str, port: int, now: float) -> Connection:
        """Open a TCP connection to (remote, port); its SYN leaves with the next `output`."""
        raddr = ipaddress.ip_address(remote)
        local = self._local_for(raddr.version)
        lport = self._free_port(lambda p: any(k[1] == p for k in self.connections)
                                or p in self.listeners)
        conn = Connection(local, lport, raddr.packed, port, self._isn(), self.mtu)
        conn.connect(now)
        self.connections[(local, lport, raddr.packed, port)] = conn
        return conn

    def listen(self, port: int) -> Listener:
        if port in self.listeners:
            raise OSError(errno.EADDRINUSE, f"TCP port {port} is already listening")
        listener = self.listeners[port] = Listener(port)
        return listener

    def close_listener(self, listener: Listener) -> None:
        """Stop listening; connections not yet accepted are reset."""
        listener.closed = True
        self.listeners.pop(listener.port, None)
        while listener.ready:
            listener.ready.popleft().abort()
        for key, owner in list(self._embryos.items()):
            if owner is listener:
                del self._embryos[key]
                self.connections[key].abort()

    def udp_open(self, port: int = 0) -> UdpEndpoint:
        if port == 0:
            port = self._free_port(lambda p: p in self.udp)
        elif port in self.udp:
            raise OSError(errno.EADDRINUSE, f"UDP port {port} is already bound")
        endpoint = self.udp[port] = UdpEndpoint(port)
        return endpoint

    def udp_close(self, endpoint: UdpEndpoint) -> None:
        endpoint.closed = True
        if self.udp.get(endpoint.port) is endpoint:
            del self.udp[endpoint.port]

    def udp_send(self, endpoint: UdpEndpoint, remote: str, port: int, payload: bytes) -> None:
        raddr = ipaddress.ip_address(remote)
        limit = self.mtu - (20 if raddr.version == 4 else 40) - 8
        if len(payload) > limit:
            raise OSError(errno.EMSGSIZE, f"{len(payload)} bytes is more than a datagram "
                          f"of the tunnel's MTU carries ({limit})")
        self._pending.append(ip.udp_packet(self._local_for(raddr.version), raddr.packed,
                                           endpoint.port, port, payload))

    # --- packets ----------------------------------------------------------------------------

    def receive(self, packet: bytes, now: float) -> Connection | Listener | UdpEndpoint | None:
        """Take one IP packet; what it reached (for the caller to wake its waiters)."""
        if len(packet) > 20 and packet[0] >> 4 == 4 and packet[9] == PROTO_ICMP:
            self._answer_ping(packet)
            return None
        try:
            inbound = ip.parse(packet)
        except ValueError as exc:
            self.drops[str(exc)] += 1
            return None
        if inbound.dst not in self._ours:
            self.drops["not our address"] += 1
            return None
        if inbound.proto == ip.PROTO_UDP:
            return self._receive_udp(inbound)
        try:
            seg = parse_segment(inbound.segment)
        except ValueError as exc:
            self.drops[str(exc)] += 1
            return None
        key = (inbound.dst, seg.dport, inbound.src, seg.sport)
        conn = self.connections.get(key)
        if conn is not None:
            conn.receive(seg, now)
            owner = self._embryos.get(key)
            if owner is not None and conn.state != State.SYN_RECEIVED:
                del self._embryos[key]
                owner.embryonic -= 1
                if conn.state != State.CLOSED:
                    owner.ready.append(conn)
                    return owner
            return conn
        listener = self.listeners.get(seg.dport)
        if listener is not None and seg.flags & (SYN | ACK | RST) == SYN:
            if listener.embryonic + len(listener.ready) >= TCP_ACCEPT_BACKLOG:
                self.drops["listen queue full"] += 1
                return None
            conn = Connection(inbound.dst, seg.dport, inbound.src, seg.sport, self._isn(),
                              self.mtu)
            conn.accept_syn(seg, now)
            self.connections[key] = conn
            self._embryos[key] = listener
            listener.embryonic += 1
            return None
        self._refuse(inbound, seg)
        return None

    def _answer_ping(self, packet: bytes) -> None:
        """A host answers an ICMP echo request to its address (IPv4; RFC 1122 3.2.2.6)."""
        try:
            if packet[16:20] not in self._ours:
                raise ValueError("not our address")
            self._pending.append(echo_reply_for(packet))
        except ValueError as exc:
            self.drops[f"ICMP: {exc}"] += 1

    def _refuse(self, inbound: ip.Inbound, seg: Segment) -> None:
        """RFC 9293 3.10.7.1: a segment for no connection gets a reset, unless it is one."""
        self.drops["no connection"] += 1
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            head = header(seg.dport, seg.sport, seg.ack, 0, RST, 0)
        else:
            head = header(seg.dport, seg.sport, 0, seg.seq + seg.length, RST | ACK, 0)
        self._pending.append(ip.tcp_packet(inbound.dst, inbound.src, head))

    def _receive_udp(self, inbound: ip.Inbound) -> UdpEndpoint | None:
        sport, dport = int.from_bytes(inbound.segment[:2], "big"), \
            int.from_bytes(inbound.segment[2:4], "big")
        endpoint = self.udp.get(dport)
        if endpoint is None:
            self.drops["no UDP endpoint"] += 1
            return None
        if len(endpoint.queue) >= _UDP_QUEUE:
            self.drops["UDP queue full"] += 1
            return None
        endpoint.queue.append((str(ipaddress.ip_address(inbound.src)), sport,
                               inbound.segment[8:]))
        return endpoint

    def output(self, now: float) -> list[bytes]:
        """Every IP packet due now; connections that reached CLOSED are forgotten."""
        out, self._pending = self._pending, []
        for key, conn in list(self.connections.items()):
            out += conn.output(now)
            if conn.state == State.CLOSED:
                del self.connections[key]
                owner = self._embryos.pop(key, None)
                if owner is not None:
                    owner.embryonic -= 1
        return out

    # --- timers -----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Connection]:
        """Run the timers due; the connections whose timers ran."""
        due = []
        for conn in list(self.connections.values()):
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.tick(now)
                due.append(conn)
        return due

    def next_deadline(self) -> float | None:
        times = [d for c in self.connections.values() if (d := c.next_deadline()) is not None]
        return min(times) if times else None

    # --- addresses and ports ----------------------------------------------------------------

    def _local_for(self, version: int) -> bytes:
        for address in self.addresses:
            if address.version == version:
                return address.packed
        raise OSError(errno.EAFNOSUPPORT, f"the tunnel has no IPv{version} address")

    @staticmethod
    def _free_port(taken: Callable[[int], bool]) -> int:
        low, high = EPHEMERAL_PORTS
        span = high - low + 1
        start = secrets.randbelow(span)
        for i in range(span):
            port = low + (start + i) % span
            if not taken(port):
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free local port")

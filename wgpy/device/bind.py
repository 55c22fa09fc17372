"""UDP: an IPv4 and an IPv6 socket on one port, as wireguard-go's StdNetBind.

- `open(port)` binds both families to the same port (0 picks a random one; a random port
  taken on IPv6 is retried, as wireguard-go does up to 100 times). EAFNOSUPPORT on either
  family is tolerated, so a host without IPv6 still works.
- `fwmark` sets SO_MARK on both sockets (needs CAP_NET_ADMIN); 0 is a no-op if unchanged.
- Sticky source addresses: IP_PKTINFO / IPV6_RECVPKTINFO tell which local address a
  datagram arrived on; replies to that endpoint leave from the same address (the kernel's
  `endpoint.src4`/`src6`). The device remembers it only for a datagram that authenticated,
  forgets it when the core says so (`clear_source`, kernel
  `wg_socket_clear_peer_endpoint_src`), and a send from a remembered address that is no
  longer ours forgets it and goes again at once without it (kernel `send4`/`send6`).
- Batching: UDP GRO on receive (one recvmsg, many datagrams, split by the segment size
  into runs of one receiver index by `fastpath.runs`)
  and UDP GSO on send (one sendmsg, up to 64 equal-sized datagrams). Either is switched
  off for good the first time the kernel refuses it.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from wgpy import fastpath

__all__ = ["Bind", "Endpoint", "Local", "SendError"]

Endpoint = tuple[Any, ...]
Local = tuple[bytes, int]  # local address bytes, interface index
MAX_SOURCES = 4096
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_MARK = 36
IP_PKTINFO = 8  # not in Python 3.11's socket module
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SOCKET_BUFFER = 7 << 20  # wireguard-go f26efb6: 7 MB
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65507
RECV_BUFFER = 1 << 16
_ANC = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20) + 64
_IN_PKTINFO = struct.Struct("=I4s4s")
_IN6_PKTINFO = struct.Struct("=16sI")
_SEGMENT = struct.Struct("=H")
_INT = struct.Struct("=i")
# What sendmsg says when the IP_PKTINFO / IPV6_PKTINFO source is no longer a local address
# (measured: ENETUNREACH for IPv4 without a route from it, EINVAL for IPv6, EADDRNOTAVAIL).
_SOURCE_GONE = frozenset((errno.EINVAL, errno.ENETUNREACH, errno.EADDRNOTAVAIL))


class SendError(OSError):
    """A send failed after the first `sent` datagrams went out."""

    def __init__(self, err: int, strerror: str, sent: int) -> None:
        super().__init__(err, strerror)
        self.sent = sent


class Bind:
    """The two UDP sockets of a device, their port, mark and sticky sources."""

    def __init__(self) -> None:
        self.sock4: socket.socket | None = None
        self.sock6: socket.socket | None = None
        self.port = 0
        self.fwmark = 0
        self.gso = True
        self.gro = True
        # authenticated remote endpoint -> the local address it last reached us on
        self.sources: dict[Endpoint, Local] = {}
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        # A receive error met after some datagrams of a batch were read, by socket: the
        # kernel reports a socket's pending error once (sock_error clears sk_err), so it is
        # kept here and raised by the next `recv_runs` of that socket, not lost.
        self._deferred: dict[socket.socket, OSError] = {}

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.sock4, self.sock6) if s is not None]

    # --- lifecycle -----------------------------------------------------------------------------

    def open(self, port: int) -> int:
        """Bind both families; returns the port. Raises OSError (EADDRINUSE) on failure."""
        self.close()
        tries = 100 if port == 0 else 1
        for _ in range(tries):
            try:
                self._open_once(port)
                return self.port
            except OSError as exc:
                self.close()
                if exc.errno != errno.EADDRINUSE or port != 0:
                    raise
        raise OSError(errno.EADDRINUSE, "no free port for both IPv4 and IPv6")

    def _open_once(self, port: int) -> None:
        s4 = self._socket(socket.AF_INET, ("0.0.0.0", port))
        if s4 is not None:
            self.sock4 = s4
            port = s4.getsockname()[1]
        s6 = self._socket(socket.AF_INET6, ("::", port))
        if s6 is not None:
            self.sock6 = s6
            port = s6.getsockname()[1]
        if not self.sockets:
            raise OSError(errno.EAFNOSUPPORT, "neither IPv4 nor IPv6 UDP is available")
        self.port = port
        if self.fwmark:
            self._apply_mark(self.fwmark)

    def _socket(self, family: int, address: tuple[str, int]) -> socket.socket | None:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno == errno.EAFNOSUPPORT:
                return None
            raise
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            for opt, force in ((socket.SO_RCVBUF, SO_RCVBUFFORCE),
                               (socket.SO_SNDBUF, SO_SNDBUFFORCE)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            if self.gro:
                try:
                    sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                except OSError:
                    self.gro = False
            sock.bind(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EAFNOSUPPORT or exc.errno == errno.EADDRNOTAVAIL:
                return None
            raise
        return sock  # blocking: a full send buffer slows the sender instead of dropping

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sock4 = self.sock6 = None
        self.sources.clear()
        self._deferred.clear()

    def set_fwmark(self, mark: int) -> None:
        """Raises OSError if the mark cannot be set (wireguard-go answers EADDRINUSE)."""
        if mark == self.fwmark:
            return
        self._apply_mark(mark)
        self.fwmark = mark

    def _apply_mark(self, mark: int) -> None:
        signed = mark - (1 << 32) if mark >> 31 else mark  # setsockopt takes a C int
        for sock in self.sockets:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, signed)

    # --- receive -------------------------------------------------------------------------------

    def remember_source(self, endpoint: Endpoint, local: Local | None) -> None:
        """Reply to `endpoint` from `local` from now on. Call it only for a datagram that
        authenticated (as the kernel does), so a spoofed source cannot steer replies."""
        if local is None or self.sources.get(endpoint) == local:
            return
        if len(self.sources) >= MAX_SOURCES:
            self.sources.clear()  # bounded: the kernel chooses until the next packet
        self.sources[endpoint] = local

    def clear_source(self, endpoint: Endpoint) -> None:
        """Let routing choose the source address for `endpoint` again (kernel
        `wg_socket_clear_peer_endpoint_src`)."""
        self.sources.pop(endpoint, None)

    def recv_runs(self, sock: socket.socket, limit: int
                  ) -> list[tuple[int, list[bytes], Endpoint, Local | None]]:
        """What waits on `sock`, up to about `limit` datagrams, as runs (`fastpath.runs`):
        (receiver index, transport data messages) or (-1, [another datagram]), each with
        its source and the local address it arrived on. A receive is a GRO batch of one
        source, cut at the segment size the kernel reports. A receive error is raised
        (OSError): at once if nothing was read before it, else by the next call."""
        deferred = self._deferred.pop(sock, None)
        if deferred is not None:
            raise deferred
        out: list[tuple[int, list[bytes], Endpoint, Local | None]] = []
        view, runs = self._view, fastpath.runs
        v6 = sock is self.sock6  # not sock.family: that builds an enum on every call
        count = 0
        while count < limit:
            try:
                n, anc, _, src = sock.recvmsg_into([view], _ANC, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if out:  # deliver what was read; the error is not reported again by the
                    self._deferred[sock] = exc  # kernel, so the next call raises it
                    break
                raise
            segment = n
            local: tuple[bytes, int] | None = None
            for level, kind, data in anc:
                if level == SOL_UDP and kind == UDP_GRO:
                    segment = _INT.unpack(data[:4])[0]
                elif not v6 and kind == IP_PKTINFO and level == socket.IPPROTO_IP:
                    ifindex, _, addr = _IN_PKTINFO.unpack(data[:_IN_PKTINFO.size])
                    local = (addr, ifindex)
                elif v6 and kind == socket.IPV6_PKTINFO and level == socket.IPPROTO_IPV6:
                    addr, ifindex = _IN6_PKTINFO.unpack(data[:_IN6_PKTINFO.size])
                    local = (addr, ifindex)
            if not n:
                out.append((-1, [b""], src, local))  # an empty datagram: junk
                count += 1
                continue
            for index, datagrams in runs(view[:n], min(max(segment, 1), n)):
                out.append((index, datagrams, src, local))
                count += len(datagrams)
        return out

    # --- send ----------------------------------------------------------------------------------

    def _socket_for(self, endpoint: Endpoint) -> socket.socket | None:
        return self.sock6 if len(endpoint) == 4 or ":" in str(endpoint[0]) else self.sock4

    @staticmethod
    def _pktinfo(local: Local, v6: bool) -> list[tuple[int, int, bytes]]:
        addr, ifindex = local
        if v6:
            return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(addr, ifindex))]
        return [(socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, addr, bytes(4)))]

    def send(self, datagrams: list[bytes], endpoint: Endpoint,
             source: Local | None = None) -> None:
        """Send in order; runs of equal-sized datagrams go out in one GSO call. They leave
        from `source` if given (a reply from the address the message it answers arrived on,
        kernel `wg_socket_send_buffer_as_reply_to_skb`), else from the address remembered
        for `endpoint`, else from the one routing picks.

        If the source address is no longer ours, the datagrams not yet sent go again at once
        without it, and a remembered one is forgotten (kernel `send4`/`send6`): the first
        packet after the address vanishes still arrives.

        Raises SendError when not all could be sent (no socket for the family, no route).
        """
        sock = self._socket_for(endpoint)
        if sock is None:
            raise SendError(errno.EAFNOSUPPORT, "no socket for the endpoint's address family", 0)
        remembered = source is None
        if remembered:
            source = self.sources.get(endpoint)
        cmsg = self._pktinfo(source, sock is self.sock6) if source else []
        i, n = 0, len(datagrams)
        while i < n:
            try:
                i = self._send_run(sock, datagrams, i, endpoint, cmsg)
            except OSError as exc:
                if cmsg and exc.errno in _SOURCE_GONE:
                    if remembered:
                        self.sources.pop(endpoint, None)
                    cmsg = []
                    continue
                raise SendError(exc.errno or 0, exc.strerror or str(exc), i) from exc

    def _send_run(self, sock: socket.socket, datagrams: list[bytes], i: int,
                  endpoint: Endpoint, cmsg: list[tuple[int, int, bytes]]) -> int:
        """Send the GSO run that starts at datagrams[i], or datagrams[i] alone; returns the
        index of the first datagram not yet sent."""
        n = len(datagrams)
        size = len(datagrams[i])
        j = i + 1
        if self.gso:
            limit = min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // max(size, 1))
            while j < limit and len(datagrams[j]) == size:
                j += 1
            if j < n and j < limit and len(datagrams[j]) < size:
                j += 1  # a shorter last segment is allowed
        if j - i > 1:
            try:
                # The datagrams as the iovec, not joined: the kernel gathers them and cuts
                # the whole at `size` (UDP_SEGMENT), wherever the buffers end.
                sock.sendmsg(datagrams[i:j],
                             cmsg + [(SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(size))], 0, endpoint)
                return j
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                    raise
                if cmsg and exc.errno in _SOURCE_GONE:
                    raise  # the source first: if GSO is at fault, the retry without says so
                self.gso = False  # wireguard-go turns GSO off after an EIO too
        if cmsg:
            sock.sendmsg([datagrams[i]], cmsg, 0, endpoint)
        else:
            sock.sendto(datagrams[i], endpoint)
        return i + 1

"""A small rtnetlink client: the interface's state and the routes into it, and a monitor of
their changes. Never on the packet path; it replaces pyroute2, whose import alone cost the
daemon 22 MiB of resident memory.

Wire format (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h), host byte order:

- every message starts with a `struct nlmsghdr` (length including the header, type,
  flags, sequence number, port id) and is padded to NLMSG_ALIGN (4 bytes); one datagram
  may carry several messages back to back;
- after the header comes the family's fixed part (`struct ifinfomsg` for links, `struct
  rtmsg` for routes), then attributes: `struct rtattr` (length including its 4-byte
  header, type) and the value, each padded to RTA_ALIGN (4 bytes). RTA_METRICS nests
  attributes of the same shape (RTAX_MTU among them);
- NLMSG_ERROR carries a negative errno (0: an acknowledgement) and the request's header;
  NLMSG_DONE ends a dump (NLM_F_MULTI on each part), also with an int (a negative errno if
  the dump failed).

A request (`Rtnl`) sends one message with NLM_F_REQUEST and a fresh sequence number and
reads datagrams until the answer with that number is complete: one message, or the parts of
a dump up to NLMSG_DONE. An NLMSG_ERROR raises OSError(errno). Every socket belongs to the
network namespace of the thread that opened it, so a caller that moved (setns) opens a new
one. Route dumps ask the kernel to filter by table and output interface (strict checking,
NETLINK_GET_STRICT_CHK, Linux 4.20); older kernels send every route, so the answer is
filtered here as well.

The monitor (`Rtnl(groups=...)`) is bound to multicast groups (RTMGRP_LINK,
RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE) and `recv()` parses whatever one datagram holds.
When the kernel could not queue a notification (the receive buffer was full), the next
receive fails once with ENOBUFS: the caller has missed events and must read the state back.
The buffer is made large (SO_RCVBUFFORCE as root, else SO_RCVBUF up to rmem_max) so that a
route flood (`wg-quick up` with thousands of allowed IPs) rarely overruns it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Iterator, TypeAlias

from wgpy.constants import (
    NETLINK_MAX_ATTRS, NETLINK_MAX_DATAGRAMS, NETLINK_MONITOR_RCVBUF, NETLINK_RECV_SIZE,
    NETLINK_REQUEST_TIMEOUT,
)

__all__ = ["Link", "RouteMessage", "Rtnl", "Message"]

# linux/netlink.h
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLMSG_NOOP = 0x1
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLMSG_OVERRUN = 0x4
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTA_DST = 1
RTA_OIF = 4
RTA_METRICS = 8
RTA_TABLE = 15
RTAX_MTU = 2
# linux/if_link.h
IFLA_IFNAME = 3
IFLA_MTU = 4
# asm-generic/socket.h: not exported by Python's socket module
SO_RCVBUFFORCE = 33

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLMSGERR = struct.Struct("=i")  # error, followed by the request's nlmsghdr
IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
#                                      scope, type, flags
RTATTR = struct.Struct("=HH")  # len, type
U32 = struct.Struct("=I")



def nlmsg_align(n: int) -> int:
    return (n + 3) & ~3


rta_align = nlmsg_align  # both 4 bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message: header fields and the bytes after the header."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Link:
    """RTM_NEWLINK or RTM_DELLINK: an interface's index, IFF_* flags, name and MTU."""

    type: int
    index: int
    flags: int
    name: str | None
    mtu: int | None


@dataclass(frozen=True, slots=True)
class RouteMessage:
    """RTM_NEWROUTE or RTM_DELROUTE. `table` is RTA_TABLE when given (ids above 255),
    else rtm_table; `mtu` is RTAX_MTU of RTA_METRICS."""

    type: int
    family: int
    dst_len: int
    table: int
    protocol: int
    scope: int
    route_type: int
    dst: bytes | None
    oif: int | None
    mtu: int | None


Event: TypeAlias = "Link | RouteMessage"


def rtattr(attr_type: int, value: bytes) -> bytes:
    """One attribute, padded."""
    length = RTATTR.size + len(value)
    return RTATTR.pack(length, attr_type) + value + bytes(rta_align(length) - length)


def nlmsg(msg_type: int, flags: int, seq: int, body: bytes, pid: int = 0) -> bytes:
    """One message, padded (the length field counts the header and body, not the padding)."""
    length = NLMSGHDR.size + len(body)
    return NLMSGHDR.pack(length, msg_type, flags, seq, pid) + body \
        + bytes(nlmsg_align(length) - length)


def parse_datagram(data: bytes) -> list[Message]:
    """The messages of one datagram; a truncated tail is dropped."""
    messages, offset = [], 0
    while offset + NLMSGHDR.size <= len(data):  # each turn advances by at least a header
        length, msg_type, flags, seq, pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            break
        messages.append(Message(msg_type, flags, seq, pid,
                                data[offset + NLMSGHDR.size:offset + length]))
        offset += nlmsg_align(length)
    return messages


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes from `offset` on, by type (the last of a repeated type wins)."""
    attrs: dict[int, bytes] = {}
    for _ in range(NETLINK_MAX_ATTRS):
        if offset + RTATTR.size > len(data):
            break
        length, attr_type = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            break
        attrs[attr_type & NLA_TYPE_MASK] = data[offset + RTATTR.size:offset + length]
        offset += rta_align(length)
    return attrs


def _u32(value: bytes | None) -> int | None:
    return U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else None


def parse_link(msg: Message) -> Link | None:
    if len(msg.payload) < IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(msg.payload)
    attrs = parse_attrs(msg.payload, IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME)
    return Link(msg.type, index, flags,
                name.split(b"\0", 1)[0].decode(errors="replace") if name is not None else None,
                _u32(attrs.get(IFLA_MTU)))


def parse_route(msg: Message) -> RouteMessage | None:
    if len(msg.payload) < RTMSG.size:
        return None
    family, dst_len, _src_len, _tos, table, protocol, scope, route_type, _flags = \
        RTMSG.unpack_from(msg.payload)
    attrs = parse_attrs(msg.payload, RTMSG.size)
    metrics = attrs.get(RTA_METRICS)
    mtu = _u32(parse_attrs(metrics).get(RTAX_MTU)) if metrics is not None else None
    return RouteMessage(msg.type, family, dst_len, _u32(attrs.get(RTA_TABLE)) or table,
                        protocol, scope, route_type, attrs.get(RTA_DST),
                        _u32(attrs.get(RTA_OIF)), mtu)


def parse_event(msg: Message) -> Event | None:
    """A link or route message parsed; None for any other type."""
    if msg.type in (RTM_NEWLINK, RTM_DELLINK):
        return parse_link(msg)
    if msg.type in (RTM_NEWROUTE, RTM_DELROUTE):
        return parse_route(msg)
    return None


def error_of(msg: Message) -> int:
    """The errno of an NLMSG_ERROR or NLMSG_DONE (0: success or acknowledgement)."""
    if len(msg.payload) < NLMSGERR.size:
        return 0
    return -NLMSGERR.unpack_from(msg.payload)[0]


def raise_errno(code: int) -> None:
    raise OSError(code, os.strerror(code))


class Rtnl:
    """A NETLINK_ROUTE socket in the calling thread's namespace: requests, or, with
    `groups`, a monitor of those multicast groups."""

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.seq = 0
        try:
            if groups:
                self._grow_rcvbuf(NETLINK_MONITOR_RCVBUF)
                self.sock.bind((0, groups))
                self.sock.setblocking(False)
            else:
                try:  # the kernel filters dumps by our request's table and interface
                    self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
                except OSError:
                    pass  # before Linux 4.20: whole dumps, filtered here
                self.sock.settimeout(NETLINK_REQUEST_TIMEOUT)
        except BaseException:
            self.sock.close()
            raise

    def _grow_rcvbuf(self, size: int) -> None:
        try:  # past rmem_max; needs CAP_NET_ADMIN
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> Iterator[Message]:
        """Send one request; yield the answer's messages (a dump's parts up to NLMSG_DONE)."""
        self.seq = self.seq % 0xFFFFFFFF + 1
        seq = self.seq
        self.sock.send(nlmsg(msg_type, flags | NLM_F_REQUEST, seq, body))
        for _ in range(NETLINK_MAX_DATAGRAMS):
            for msg in parse_datagram(self.sock.recv(NETLINK_RECV_SIZE)):
                if msg.seq != seq:
                    continue  # the answer to an earlier, abandoned request
                if msg.type in (NLMSG_ERROR, NLMSG_DONE):
                    code = error_of(msg)
                    if code:
                        raise_errno(code)
                    return
                if msg.type in (NLMSG_NOOP, NLMSG_OVERRUN):
                    continue
                yield msg
                if not msg.flags & NLM_F_MULTI:
                    return
        raise_errno(errno.EMSGSIZE)

    def get_link(self, name: str) -> Link | None:
        """RTM_GETLINK of interface `name` (IFLA_IFNAME); None if there is none (ENODEV)."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) \
            + rtattr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            for msg in self.request(RTM_GETLINK, 0, body):
                if msg.type == RTM_NEWLINK:
                    return parse_link(msg)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return None

    def routes(self, family: int, table: int = RT_TABLE_MAIN,
               oif: int | None = None) -> list[RouteMessage]:
        """RTM_GETROUTE dump of `family`'s routes in `table` (leaving through `oif`)."""
        body = RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, 0, 0) \
            + rtattr(RTA_TABLE, U32.pack(table))
        if oif is not None:
            body += rtattr(RTA_OIF, U32.pack(oif))
        found = []
        for msg in self.request(RTM_GETROUTE, NLM_F_DUMP, body):
            route = parse_route(msg) if msg.type == RTM_NEWROUTE else None
            # Without strict checking the kernel sends every route (of every family, for
            # a family it has no routes of): the filter is ours too.
            if route is not None and route.family == family and route.table == table \
                    and (oif is None or route.oif == oif):
                found.append(route)
        return found

    def recv(self) -> list[Event] | None:
        """The link and route messages of one waiting datagram ([] if none of those), or
        None if nothing waits. OSError(ENOBUFS) once after notifications were lost."""
        try:
            data = self.sock.recv(NETLINK_RECV_SIZE)
        except BlockingIOError:
            return None
        return [e for e in map(parse_event, parse_datagram(data)) if e is not None]

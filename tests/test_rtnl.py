"""The rtnetlink client: messages built and parsed on literal bytes (little-endian hosts),
request/answer matching over a socket pair standing in for the kernel, then real requests
to the kernel (a GETLINK of lo and route dumps need no privilege)."""

from __future__ import annotations

import errno
import os
import socket
import sys

import pytest

from wgpy.device import rtnl
from wgpy.device.rtnl import (
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_ERROR,
    RT_TABLE_MAIN,
    RTM_DELLINK,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    Link,
    RouteMessage,
    Rtnl,
)

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="literals are little-endian")

# RTM_NEWLINK, index 5, flags IFF_UP|IFF_RUNNING|IFF_POINTOPOINT|IFF_NOARP (0x10d1),
# IFLA_IFNAME "wg0", an unknown 5-byte attribute (type 0x20, padded), IFLA_MTU 1420.
NEWLINK = bytes.fromhex(
    "38000000" "1000" "0000" "00000000" "00000000"  # nlmsghdr: len 56, type 16
    "00" "00" "fffe" "05000000" "d1100000" "00000000"  # ifinfomsg: ARPHRD_NONE 0xfffe
    "0800" "0300" "77673000"  # IFLA_IFNAME
    "0500" "2000" "01000000"  # unknown, 1 byte + 3 padding
    "0800" "0400" "8c050000")  # IFLA_MTU 1420
# RTM_NEWROUTE 10.0.0.0/24 dev 5 table main mtu 1299 (RTA_METRICS nesting RTAX_MTU).
NEWROUTE = bytes.fromhex(
    "40000000" "1800" "0000" "00000000" "00000000"  # nlmsghdr: len 64, type 24
    "02" "18" "00" "00" "fe" "04" "00" "01" "00000000"  # rtmsg: AF_INET /24 main static
    "0800" "0f00" "fe000000"  # RTA_TABLE 254
    "0800" "0100" "0a000000"  # RTA_DST 10.0.0.0
    "0800" "0400" "05000000"  # RTA_OIF 5
    "0c00" "0800" "0800" "0200" "13050000")  # RTA_METRICS { RTAX_MTU 1299 }
# RTM_DELLINK of index 5 without attributes; RTM_NEWADDR (20), which is not parsed.
DELLINK = bytes.fromhex("20000000" "1100" "0000" "00000000" "00000000"
                        "00" "00" "0000" "05000000" "00000000" "00000000")
NEWADDR = bytes.fromhex("18000000" "1400" "0000" "00000000" "00000000" "0a" "80" "00" "00"
                        "05000000")


def test_nlmsg_pads_and_counts_header_and_body() -> None:
    assert rtnl.nlmsg(rtnl.RTM_GETLINK, rtnl.NLM_F_REQUEST, 5, b"\x01\x02\x03") == \
        bytes.fromhex("13000000" "1200" "0100" "05000000" "00000000" "010203" "00")
    assert rtnl.rtattr(rtnl.IFLA_IFNAME, b"lo\0") == bytes.fromhex("0700" "0300" "6c6f00" "00")
    assert rtnl.NLMSGHDR.size == 16 and rtnl.IFINFOMSG.size == 16 and rtnl.RTMSG.size == 12


def test_ifinfomsg_with_attributes() -> None:
    [msg] = rtnl.parse_datagram(NEWLINK)
    assert (msg.type, msg.flags, msg.seq, msg.pid) == (RTM_NEWLINK, 0, 0, 0)
    assert rtnl.parse_event(msg) == Link(RTM_NEWLINK, 5, 0x10D1, "wg0", 1420)


def test_rtmsg_with_nested_metrics() -> None:
    [msg] = rtnl.parse_datagram(NEWROUTE)
    assert rtnl.parse_event(msg) == RouteMessage(
        RTM_NEWROUTE, socket.AF_INET, 24, RT_TABLE_MAIN, 4, 0, rtnl.RTN_UNICAST,
        bytes([10, 0, 0, 0]), 5, 1299)


def test_several_messages_in_one_datagram_and_a_truncated_tail() -> None:
    data = NEWLINK + NEWADDR + NEWROUTE + DELLINK
    messages = rtnl.parse_datagram(data + NEWLINK[:30])
    assert [m.type for m in messages] == [RTM_NEWLINK, 20, RTM_NEWROUTE, RTM_DELLINK]
    events = [rtnl.parse_event(m) for m in messages]
    assert events[1] is None
    assert events[3] == Link(RTM_DELLINK, 5, 0, None, None)


def test_attributes_stop_at_a_bad_length() -> None:
    assert rtnl.parse_attrs(bytes.fromhex("0800" "0400" "8c050000" "0200" "0300")) == \
        {rtnl.IFLA_MTU: bytes.fromhex("8c050000")}
    assert rtnl.parse_attrs(bytes.fromhex("4000" "0400" "8c050000")) == {}


def with_seq(message: bytes, seq: int, flags: int = 0) -> bytes:
    length, msg_type, _, _, pid = rtnl.NLMSGHDR.unpack_from(message)
    return rtnl.NLMSGHDR.pack(length, msg_type, flags, seq, pid) + message[16:]


def error(code: int, seq: int) -> bytes:
    return rtnl.nlmsg(NLMSG_ERROR, 0, seq, rtnl.NLMSGERR.pack(-code) + bytes(16))


@pytest.fixture
def kernel() -> tuple[Rtnl, socket.socket]:
    """An Rtnl whose 'kernel' is the other end of a datagram socket pair."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    client = Rtnl.__new__(Rtnl)
    client.sock, client.seq = ours, 0
    ours.settimeout(2)
    return client, theirs


def test_nlmsg_error_is_oserror_and_enodev_is_no_link(
        kernel: tuple[Rtnl, socket.socket]) -> None:
    client, theirs = kernel
    theirs.send(error(errno.ENODEV, 1))
    assert client.get_link("wgnone") is None
    request = rtnl.parse_datagram(theirs.recv(4096))[0]
    assert (request.type, request.flags, request.seq) == (rtnl.RTM_GETLINK, 1, 1)
    assert rtnl.parse_attrs(request.payload, 16) == {rtnl.IFLA_IFNAME: b"wgnone\0"}
    theirs.send(error(errno.EPERM, 2))
    with pytest.raises(OSError) as raised:
        client.get_link("wgnone")
    assert raised.value.errno == errno.EPERM


def test_an_answer_is_matched_by_sequence_number(kernel: tuple[Rtnl, socket.socket]) -> None:
    client, theirs = kernel
    theirs.send(with_seq(DELLINK, 7) + with_seq(NEWLINK, 1))  # a stale answer first
    assert client.get_link("wg0") == Link(RTM_NEWLINK, 5, 0x10D1, "wg0", 1420)


def test_a_dump_reads_datagrams_up_to_done(kernel: tuple[Rtnl, socket.socket]) -> None:
    client, theirs = kernel
    other_oif = NEWROUTE[:48] + bytes([6]) + NEWROUTE[49:]
    theirs.send(with_seq(NEWROUTE, 1, NLM_F_MULTI) + with_seq(other_oif, 1, NLM_F_MULTI))
    theirs.send(with_seq(NEWROUTE, 1, NLM_F_MULTI)
                + rtnl.nlmsg(NLMSG_DONE, NLM_F_MULTI, 1, bytes(4)))
    routes = client.routes(socket.AF_INET, oif=5)
    assert [(r.dst, r.dst_len, r.oif, r.mtu) for r in routes] == [(bytes([10, 0, 0, 0]), 24, 5,
                                                                    1299)] * 2
    request = rtnl.parse_datagram(theirs.recv(4096))[0]
    assert request.flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP
    assert rtnl.parse_attrs(request.payload, 12) == {rtnl.RTA_TABLE: bytes([254, 0, 0, 0]),
                                                     rtnl.RTA_OIF: bytes([5, 0, 0, 0])}


def test_the_monitor_parses_each_datagram(kernel: tuple[Rtnl, socket.socket]) -> None:
    client, theirs = kernel
    client.sock.setblocking(False)
    assert client.recv() is None
    theirs.send(NEWLINK + NEWADDR + NEWROUTE)
    events = client.recv()
    assert events is not None and [type(e) for e in events] == [Link, RouteMessage]
    assert client.recv() is None


def test_real_getlink_of_lo_and_route_dumps() -> None:
    with Rtnl() as client:
        lo = client.get_link("lo")
        assert lo is not None and lo.name == "lo" and lo.index == socket.if_nametoindex("lo")
        assert lo.mtu and lo.mtu > 0
        assert client.get_link(f"nx{os.getpid()}") is None
        for family in (socket.AF_INET, socket.AF_INET6):
            for table in (RT_TABLE_MAIN, 255):
                routes = client.routes(family, table)
                assert all(r.family == family and r.table == table for r in routes)
        assert all(r.oif == lo.index for r in client.routes(socket.AF_INET, 255, lo.index))


def test_real_requests_need_no_privilege() -> None:
    if os.geteuid() != 0:
        test_real_getlink_of_lo_and_route_dumps()
        return
    pid = os.fork()
    if pid == 0:  # the child drops root, asks, and answers by its exit status
        status = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            with Rtnl() as client:
                lo = client.get_link("lo")
                client.routes(socket.AF_INET)
                client.routes(socket.AF_INET6)
            status = 0 if lo is not None and lo.name == "lo" else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

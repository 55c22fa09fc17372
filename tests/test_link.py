"""The netlink thread (wgpy.link.netlink) against a scripted pyroute2: `pyroute2.IPRoute` is
replaced by `FakeIPRoute`, which answers link requests and route dumps from a script and
feeds the monitor real rtnetlink datagrams (built and parsed by pyroute2's own message
classes), or errors. No socket, no root.

What each test proves is in its docstring; the ones about errors fail on the old watcher
(wgpy/device/rtnl.py), which took every receive error for an overrun (verbose), and whose
read-back answered [] when it failed, clearing the route MTUs.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from typing import Any, AsyncIterator, Iterator

import pytest

pyroute2 = pytest.importorskip("pyroute2")

from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTM_NEWROUTE  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.marshal import MarshalRtnl  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

from wgpy.link import netlink  # noqa: E402
from wgpy.routemtu import Route  # noqa: E402

INDEX = 7
NAME = "wgfake"


def link_msg(mtu: int, up: bool = True, kind: int = RTM_NEWLINK, index: int = INDEX) -> bytes:
    msg = ifinfmsg()
    msg["header"]["type"] = kind
    msg["index"] = index
    msg["flags"] = IFF_UP if up else 0
    msg["attrs"] = [("IFLA_IFNAME", NAME), ("IFLA_MTU", mtu)]
    msg.encode()
    return bytes(msg.data)


def route_msg(dst: str, dst_len: int, mtu: int | None = None, oif: int = INDEX) -> bytes:
    msg = rtmsg()
    msg["header"]["type"] = RTM_NEWROUTE
    msg["family"], msg["dst_len"], msg["table"], msg["type"] = socket.AF_INET, dst_len, 254, 1
    attrs: list[Any] = [("RTA_TABLE", 254), ("RTA_DST", dst), ("RTA_OIF", oif)]
    if mtu:
        attrs.append(("RTA_METRICS", {"attrs": [("RTAX_MTU", mtu)]}))
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def parsed(data: bytes) -> list[Any]:
    return list(MarshalRtnl().parse(data))


def enobufs() -> OSError:
    return OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))


class Script:
    """Shared by every FakeIPRoute: answers in order. `links`: a link message or an
    exception per link request; `dumps`: route messages or an exception per route dump
    (IPv4 then IPv6 for each read-back); `events`: per monitor, datagrams or exceptions its
    recv() returns, then BlockingIOError. When a monitor's events and the requests run out,
    `idle` is called (the test stops the device there)."""

    def __init__(self) -> None:
        self.links: list[bytes | BaseException] = []
        self.dumps: list[list[bytes] | BaseException] = []
        self.events: list[list[bytes | BaseException]] = []
        self.monitors = 0
        self.closed = 0
        self.rcvbuf: list[tuple[int, int]] = []
        self.idle: Any = None


class FakeIPRoute:
    script = Script()

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.asyncore = self
        self.marshal = MarshalRtnl()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: list[bytes | BaseException] = []
        self._r, self._w = os.pipe()
        os.write(self._w, b"x")  # readable: the thread drains until BlockingIOError

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def close(self) -> None:
        self.script.closed += 1
        if self._loop is not None:
            self._loop.close()
        os.close(self._r)
        os.close(self._w)

    def link(self, command: str, ifname: str) -> list[Any]:
        assert command == "get" and ifname == NAME
        answer = self.script.links.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return parsed(answer)

    async def route(self, command: str, family: int, table: int, oif: int
                    ) -> AsyncIterator[Any]:
        assert (command, table, oif) == ("dump", 254, INDEX)
        answer = self.script.dumps.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        messages = [m for data in answer for m in parsed(data)] \
            if family == socket.AF_INET else []

        async def dump() -> AsyncIterator[Any]:
            for m in messages:
                yield m
        return dump()

    # the monitor
    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.script.rcvbuf.append((option, value))

    def bind(self, groups: int) -> None:
        from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK
        assert groups == RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
        self.script.monitors += 1
        self._events = self.script.events.pop(0) if self.script.events else []

    def fileno(self) -> int:
        return self._r

    def recv(self, size: int, flags: int) -> bytes:
        if self._events:
            item = self._events.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        if not self.script.events and not self.script.links and self.script.idle:
            self.script.idle()
        raise BlockingIOError(errno.EAGAIN, "empty")


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def verbose(self, msg: str, *args: Any) -> None:
        self.lines.append(("verbose", msg % args))

    def error(self, msg: str, *args: Any) -> None:
        self.lines.append(("error", msg % args))


class FakeDevice:
    def __init__(self) -> None:
        self._null = os.open(os.devnull, os.O_RDONLY)  # not a TUN: TUNGETDEVNETNS fails
        self.tun = type("Tun", (), {"name": NAME, "fd": self._null})()
        self.stopped = threading.Event()
        self.stop_fd, self._stop_w = os.pipe()
        self.log = type("Logs", (), {"netlink": Log()})()
        self.mtus: list[int] = []
        self.ups: list[bool] = []
        self.routes: list[list[Route]] = []

    def stop(self) -> None:
        self.stopped.set()
        os.write(self._stop_w, b"x")

    def close(self) -> None:
        os.close(self.stop_fd)
        os.close(self._stop_w)
        os.close(self._null)

    def set_mtu(self, mtu: int) -> None:
        self.mtus.append(mtu)

    def set_up(self, up: bool) -> None:
        self.ups.append(up)

    def set_routes(self, routes: list[Route]) -> None:
        self.routes.append(routes)

    @property
    def lines(self) -> list[tuple[str, str]]:
        return self.log.netlink.lines  # type: ignore[no-any-return]


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    FakeIPRoute.script = Script()
    monkeypatch.setattr(pyroute2, "IPRoute", FakeIPRoute)
    monkeypatch.setattr(netlink, "NETLINK_RETRY_DELAY", 0.01)
    yield FakeIPRoute.script


def run(device: FakeDevice, script: Script) -> None:
    """The thread until the script runs out (then the device stops) or it ends itself."""
    script.idle = device.stop
    thread = threading.Thread(target=netlink.watch_link, args=(device,), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    device.close()


A = route_msg("10.1.0.0", 24, mtu=1300)
B = route_msg("10.2.0.0", 24)
C = route_msg("10.1.0.128", 25)
ROUTE_A = Route(bytes([10, 1, 0, 0]), 24, 1300)
ROUTE_C = Route(bytes([10, 1, 0, 128]), 25, None)


def test_an_overrun_reopens_the_monitor_and_reads_the_state_back(script: Script) -> None:
    """ENOBUFS: logged as verbose with its cause, the monitor closed, a new one bound with
    an enlarged receive buffer, and the link and routes read back (the routes that came
    during the overrun are there: B outside A's prefix counts but does not matter to the
    MTU lookup, C inside it does)."""
    script.links = [link_msg(1420), link_msg(1380, up=False)]
    script.dumps = [[A], [], [A, B, C], []]
    script.events = [[route_msg("10.2.0.0", 24), enobufs()], []]
    device = FakeDevice()
    run(device, script)
    assert script.monitors == 2
    assert device.mtus == [1420, 1380] and device.ups == [True, False]
    assert device.routes == [[ROUTE_A], [ROUTE_A, ROUTE_C]]
    assert ("verbose", "Routes into the interface: 3, 1 with an MTU (lowest 1300)") \
        in device.lines
    overrun = [line for line in device.lines if "notifications lost" in line[1]]
    assert overrun and overrun[0][0] == "verbose" and "ENOBUFS" in overrun[0][1]
    assert not [line for line in device.lines if line[0] == "error"]
    # Both monitors asked for a large buffer (SO_RCVBUFFORCE first).
    assert script.rcvbuf.count((netlink.rtnetlink.SO_RCVBUFFORCE, 4 << 20)) == 2


def test_another_receive_error_is_an_error_and_keeps_the_routes(script: Script) -> None:
    """A receive error other than ENOBUFS is logged as an error with its errno, and when
    the read-back after it cannot read the routes, the routes (and their MTUs) stay: no
    set_routes([]). They are read again after the retry delay."""
    script.links = [link_msg(1420), link_msg(1420), link_msg(1420)]
    script.dumps = [[A], [], NetlinkError(errno.ENOMEM), [A], []]
    script.events = [[OSError(errno.EIO, os.strerror(errno.EIO))], []]
    device = FakeDevice()
    run(device, script)
    errors = [text for level, text in device.lines if level == "error"]
    assert any("monitor failed" in e and "EIO" in e for e in errors), device.lines
    assert any("cannot read" in e and "ENOMEM" in e for e in errors), device.lines
    assert device.routes == [[ROUTE_A], [ROUTE_A]]  # never []
    assert script.monitors == 2


def test_a_failed_read_back_does_not_clear_route_mtus(script: Script) -> None:
    """An event about our interface, then the link cannot be read (EBUSY, not ENODEV):
    nothing is applied, the thread does not take the interface for gone, and the retry
    reads it."""
    script.links = [link_msg(1420), NetlinkError(errno.EBUSY), link_msg(1400)]
    script.dumps = [[A], [], [A], []]
    script.events = [[link_msg(1400)]]
    device = FakeDevice()
    run(device, script)
    assert device.routes == [[ROUTE_A], [ROUTE_A]]
    assert device.mtus == [1420, 1400, 1400]
    assert script.monitors == 1  # the monitor was fine: not reopened
    assert any(level == "error" and "EBUSY" in text for level, text in device.lines)


def test_routes_of_one_family_survive_the_other_familys_absence(script: Script) -> None:
    """No IPv6 (EAFNOSUPPORT) is no IPv6 routes, not a failure of the IPv4 ones."""
    script.dumps = [[A], NetlinkError(errno.EAFNOSUPPORT)]
    assert netlink.routes_into(INDEX) == [ROUTE_A]


def test_a_failed_dump_raises_instead_of_answering_no_routes(script: Script) -> None:
    script.dumps = [NetlinkError(errno.ENOBUFS)]
    with pytest.raises(OSError) as caught:
        netlink.routes_into(INDEX)
    assert caught.value.errno == errno.ENOBUFS


def test_our_dellink_ends_the_watch_here(script: Script) -> None:
    """RTM_DELLINK of our index: the interface left; the fake TUN (/dev/null) cannot name its
    new namespace, so the thread takes the link as up and ends. Another interface's
    events change nothing."""
    script.links = [link_msg(1420, up=False)]
    script.dumps = [[A], []]
    script.events = [[link_msg(1500, index=INDEX + 1), route_msg("10.3.0.0", 24, oif=9),
                      link_msg(1420, kind=RTM_DELLINK)]]
    device = FakeDevice()
    run(device, script)
    assert device.ups == [False, True] and device.mtus == [1420]
    assert device.routes == [[ROUTE_A]]


def test_the_routes_given_to_the_device_answer_mtu_lookups_as_all_routes() -> None:
    """Routes.for_mtu_lookup leaves out routes without an MTU that lie inside none with
    one: RouteMTUs answers the same for every destination."""
    import random

    from wgpy.link.rtnetlink import Routes
    from wgpy.routemtu import RouteMTUs

    rng = random.Random(5)
    for _ in range(200):
        routes = Routes()
        for _ in range(rng.randrange(1, 12)):
            prefix_len = rng.choice([0, 8, 16, 24, 25, 28, 32])
            value = rng.getrandbits(32) & (((1 << prefix_len) - 1) << (32 - prefix_len))
            routes.add(value.to_bytes(4, "big"), prefix_len,
                       rng.choice([None, None, 1280, 1300, 1400]))
        full, chosen = RouteMTUs.build(routes.all()), RouteMTUs.build(routes.for_mtu_lookup())
        assert (full is None) == (chosen is None)
        if full is None or chosen is None:
            continue
        for route in routes.all():
            for host in (0, 1, 255):
                dst = bytes(route.address[:3]) + bytes([route.address[3] | host])
                packet = bytes([0x45]) + bytes(15) + dst + bytes(1480 - 20)
                assert full.mtu_for(packet, 1420) == chosen.mtu_for(packet, 1420)

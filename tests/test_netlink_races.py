"""The netlink thread survives an interface that leaves between two queries (moved to
another namespace or deleted meanwhile: ENODEV). CI once lost a daemon this way: `ip link
set IF netns NS` right after start made `link get` fail, and the thread's exception
stopped the device.

The requests are scripted here (no socket), but they go through the real Rtnl.get_link and
Rtnl.routes, which turn the kernel's ENODEV into "gone"."""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from typing import Any, Iterator

import pytest

from wgpy.device import rtnl
from wgpy.device.rtnl import (
    IFINFOMSG, IFLA_IFNAME, IFLA_MTU, RT_TABLE_MAIN, RTA_DST, RTA_OIF, RTM_NEWLINK, RTM_NEWROUTE,
    RTMSG, RTN_UNICAST, U32, Link, Message, Rtnl, rtattr,
)
from wgpy.link import netlink

INDEX = 7


def newlink(mtu: int, flags: int = netlink.IFF_UP) -> Message:
    payload = IFINFOMSG.pack(0, 0, INDEX, flags, 0) + rtattr(IFLA_IFNAME, b"wgvanish\0") \
        + rtattr(IFLA_MTU, U32.pack(mtu))
    return Message(RTM_NEWLINK, 0, 1, 0, payload)


def enodev() -> OSError:
    return OSError(errno.ENODEV, os.strerror(errno.ENODEV))


class ScriptedRtnl:
    """Answers requests (a list of messages, or an exception to raise) and monitor reads
    from scripts shared by every instance; its monitor fd is a pipe that stays readable."""

    requests: list[list[Message] | OSError] = []
    events: list[list[rtnl.Event] | None] = []
    ready_r, ready_w = -1, -1

    def __init__(self, groups: int = 0) -> None:
        self.groups = groups

    def __enter__(self) -> ScriptedRtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def fileno(self) -> int:
        return self.ready_r

    def request(self, msg_type: int, flags: int, body: bytes) -> Iterator[Message]:
        answer = self.requests.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return iter(answer)

    def recv(self) -> list[rtnl.Event] | None:
        return self.events.pop(0) if self.events else None

    get_link = Rtnl.get_link
    routes = Rtnl.routes


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ScriptedRtnl]]:
    monkeypatch.setattr(netlink, "Rtnl", ScriptedRtnl)
    r, w = os.pipe()
    os.write(w, b"x")
    ScriptedRtnl.ready_r, ScriptedRtnl.ready_w = r, w
    yield ScriptedRtnl
    os.close(r)
    os.close(w)


def test_queries_about_a_vanishing_interface_answer_gone(scripted: Any) -> None:
    scripted.requests = [enodev(), enodev()]
    assert netlink.link_state("wgvanish") is None
    assert netlink.routes_into(INDEX) == []
    assert scripted.requests == []


class FakeDevice:
    def __init__(self, fd: int) -> None:
        self.tun = type("Tun", (), {"name": "wgvanish", "fd": fd})()
        self.stopped = threading.Event()
        self.stop_fd, self._stop_w = os.pipe()  # readable once stopped: never, here
        self.log = type("Log", (), {"netlink": type("L", (), {
            "verbose": staticmethod(lambda *a: logging.debug(*a))})()})()
        self.mtus: list[int] = []
        self.ups: list[bool] = []
        self.routes: list[list[Any]] = []

    def close(self) -> None:
        os.close(self.stop_fd)
        os.close(self._stop_w)

    def set_mtu(self, mtu: int) -> None:
        self.mtus.append(mtu)

    def set_up(self, up: bool) -> None:
        self.ups.append(up)

    def set_routes(self, routes: list[Any]) -> None:
        self.routes.append(routes)


def test_the_thread_survives_an_interface_that_leaves_after_an_event(scripted: Any) -> None:
    # Start: the link is there, its route dump already fails (moved away meanwhile). Then
    # an RTM_NEWLINK (MTU 1380, down) arrives, and reading the state back finds it gone.
    scripted.requests = [[newlink(1420)], enodev(), enodev()]
    scripted.events = [[Link(RTM_NEWLINK, INDEX, 0, "wgvanish", 1380)], None]
    device = FakeDevice(scripted.ready_r)  # not a TUN: TUNGETDEVNETNS fails, so the
    # thread cannot follow the interface and takes it as up
    thread = threading.Thread(target=netlink.watch_link, args=(device,), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    device.close()
    assert device.mtus == [1420, 1380]
    assert device.ups == [True, False, True]
    assert device.routes == [[]]
    assert scripted.requests == [] and scripted.events == []


def test_routes_of_one_family_survive_the_other_familys_failure(
        scripted: type[ScriptedRtnl]) -> None:
    """Review finding: one failure (here no IPv6: EAFNOSUPPORT) dropped the IPv4 routes
    too, and with them the MTU that bounds padding."""
    route = RTMSG.pack(socket.AF_INET, 24, 0, 0, RT_TABLE_MAIN, 0, 0, RTN_UNICAST, 0) \
        + rtattr(RTA_DST, bytes([10, 9, 0, 0])) + rtattr(RTA_OIF, U32.pack(INDEX))
    scripted.requests = [[Message(RTM_NEWROUTE, 0, 1, 0, route)],
                         OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))]
    routes = netlink.routes_into(INDEX)
    assert [(r.address, r.prefix_len) for r in routes] == [(bytes([10, 9, 0, 0]), 24)]

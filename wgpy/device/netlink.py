"""Following the TUN through netlink (pyroute2): up/down, MTU, and moves out of our
network namespace. Never on the packet path.

RTM_NEWLINK for our interface carries its flags and MTU: IFF_UP turns the device's timers
and sockets' duties on or off, a new MTU changes the padding limit. An RTM_DELLINK while
the TUN fd still works means the interface moved to another namespace (netns.sh does
`ip link set wg1 netns ns1`). The kernel's WireGuard device goes on being told its state
there (a move takes the link down, `wg_stop`, until someone sets it up again), so we follow
it: the TUN fd names its namespace (TUNGETDEVNETNS), this thread joins that namespace
(setns only moves the calling thread; the UDP sockets stay where they were, as the
kernel's do) and watches the interface there, through further moves too. On a kernel
without TUNGETDEVNETNS we cannot see the state any more and take the link as up.

Routes into the interface (main table) and their MTUs are followed too (RTM_NEWROUTE,
RTM_DELROUTE): the kernel pads a packet only up to its route's MTU (wgpy.routemtu).
A deleted TUN is noticed by the TUN reader (reads fail with EBADFD).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import select
import socket
from typing import TYPE_CHECKING

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from wgpy.routemtu import Route

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["watch_link", "link_state"]

IFF_UP = 0x1
RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
TUNGETDEVNETNS = 0x54E3  # _IO('T', 227), Linux 5.2
TUNGETIFF = 0x800454D2
CLONE_NEWNET = 0x40000000
MOVE_SETTLE = 0.2  # after RTM_DELLINK: time for a deleted TUN to show as deleted
_libc = ctypes.CDLL(None, use_errno=True)


def follow_tun_namespace(tun_fd: int) -> str | None:
    """Move the calling thread into the network namespace that now holds the TUN; returns
    the interface's name there (a move may rename it), or None if the kernel cannot say."""
    try:
        ns_fd = fcntl.ioctl(tun_fd, TUNGETDEVNETNS)
    except OSError:
        return None
    try:
        if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
            return None
    finally:
        os.close(ns_fd)
    try:
        ifr = fcntl.ioctl(tun_fd, TUNGETIFF, bytes(18))
    except OSError:
        return None
    return ifr[:16].rstrip(b"\0").decode(errors="replace")


def routes_into(index: int) -> list[Route]:
    """The unicast routes of the main table that leave through interface `index` ([] if
    they cannot be read: the interface may be moving or going away meanwhile)."""
    try:
        return _routes_into(index)
    except (NetlinkError, OSError):
        return []


def _routes_into(index: int) -> list[Route]:
    routes = []
    with IPRoute() as ipr:
        for family, size in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
            for msg in ipr.get_routes(family=family):
                table = msg.get_attr("RTA_TABLE") or msg["table"]
                if msg.get_attr("RTA_OIF") != index or table != RT_TABLE_MAIN \
                        or msg["type"] != RTN_UNICAST:
                    continue
                dst = msg.get_attr("RTA_DST")
                address = ipaddress.ip_address(dst).packed if dst else bytes(size)
                metrics = msg.get_attr("RTA_METRICS")
                mtu = metrics.get_attr("RTAX_MTU") if metrics else None
                routes.append(Route(address, int(msg["dst_len"]), int(mtu) if mtu else None))
    return routes


def link_state(name: str) -> tuple[int, bool, int] | None:
    """(ifindex, up, mtu) of interface `name` in our namespace, or None (also when it
    leaves between the lookup and the query: ENODEV while it is moved or deleted)."""
    try:
        return _link_state(name)
    except (NetlinkError, OSError):
        return None


def _link_state(name: str) -> tuple[int, bool, int] | None:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        link = ipr.link("get", index=found[0])[0]
        return int(found[0]), bool(link["flags"] & IFF_UP), int(link.get_attr("IFLA_MTU"))


def watch_link(device: Device, poll: float = 1.0) -> None:
    """Thread body: apply link events to `device` until it stops, following the TUN into
    whatever namespace it is moved to."""
    name = device.tun.name
    while not device.stopped.is_set():
        if not _watch_in_namespace(device, name, poll):
            return
        if device.stopped.wait(MOVE_SETTLE):  # deleted, or moved away?
            return
        moved = follow_tun_namespace(device.tun.fd)
        if moved is None:
            device.set_up(True)  # we cannot see it any more: take it as up
            return
        name = moved
        device.log.netlink.verbose("Interface moved to another network namespace, as %s", name)


def _watch_in_namespace(device: Device, name: str, poll: float) -> bool:
    """Follow `name` in this thread's namespace; True when it left (RTM_DELLINK)."""
    with IPRoute() as mon:
        # Subscribe first, so no event falls between.
        mon.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
        state = link_state(name)
        if state is None:
            return True  # already gone from here
        index, up, mtu = state
        device.set_mtu(mtu)
        device.set_up(up)
        device.set_routes(routes_into(index))
        while not device.stopped.is_set():
            ready, _, _ = select.select([mon.fileno()], [], [], poll)
            if not ready:
                continue
            try:
                messages = mon.get()
            except (OSError, NetlinkError) as exc:  # e.g. ENOBUFS after an overrun
                device.log.netlink.verbose("netlink: %s", exc)
                state = link_state(name)
                if state is not None:
                    device.set_mtu(state[2])
                    device.set_up(state[1])
                continue
            # pyroute2's get() may return only the first of several messages and keep the
            # rest where select never reports them (`ip link set mtu 1380 up` sends two; a
            # link going down comes with route deletions): so after the messages it has
            # given, every wake-up reads the link's state and routes back.
            for msg in messages:
                if msg.get("index") != index:
                    continue
                if msg["event"] == "RTM_DELLINK":
                    return True
                if msg["event"] == "RTM_NEWLINK":  # each state in turn: a quick up-down
                    new_mtu = msg.get_attr("IFLA_MTU")  # is an up and a down (wg_open/stop)
                    if new_mtu:
                        device.set_mtu(int(new_mtu))
                    device.set_up(bool(msg["flags"] & IFF_UP))
            state = link_state(name)
            if state is None or state[0] != index:
                return True  # gone, though its RTM_DELLINK stayed in pyroute2's hands
            device.set_mtu(state[2])
            device.set_up(state[1])
            device.set_routes(routes_into(index))
    return False

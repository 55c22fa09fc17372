"""Following the TUN through netlink (our rtnetlink client, wgpy.device.rtnl): up/down,
MTU, and moves out of our network namespace. Never on the packet path.

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

Each wake-up drains the waiting notifications and applies every RTM_NEWLINK of ours in
turn (a quick up-down is an up and a down: wg_open, wg_stop). Then, if any message was
about our interface or notifications were lost (ENOBUFS), the link's state and its routes
are read back: the kernel sends no RTM_DELROUTE for the IPv4 routes it flushes when a link
goes down, and after an overrun only a read-back tells what was missed. Route dumps are
filtered by the kernel (table, interface), so a read-back costs three small requests.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
from typing import TYPE_CHECKING

from wgpy.constants import NETLINK_MAX_DRAIN, NETLINK_MOVE_SETTLE
from wgpy.device.rtnl import (
    RTM_DELLINK, RTM_NEWLINK, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK, RTN_UNICAST, Link,
    Rtnl,
)
from wgpy.routemtu import Route

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["watch_link", "link_state"]

IFF_UP = 0x1
TUNGETDEVNETNS = 0x54E3  # _IO('T', 227), Linux 5.2
TUNGETIFF = 0x800454D2
CLONE_NEWNET = 0x40000000


def join_netns(fd: int) -> None:
    """setns(2) into the network namespace `fd` names: moves the calling thread only
    (OSError if it cannot)."""
    setns = getattr(os, "setns", None)  # Python 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes  # only for a move: ctypes is not worth its memory otherwise

    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def follow_tun_namespace(tun_fd: int) -> str | None:
    """Move the calling thread into the network namespace that now holds the TUN; returns
    the interface's name there (a move may rename it), or None if the kernel cannot say."""
    try:
        ns_fd = fcntl.ioctl(tun_fd, TUNGETDEVNETNS)
    except OSError:
        return None
    try:
        join_netns(ns_fd)
    except OSError:
        return None
    finally:
        os.close(ns_fd)
    try:
        ifr = fcntl.ioctl(tun_fd, TUNGETIFF, bytes(18))
    except OSError:
        return None
    return ifr[:16].rstrip(b"\0").decode(errors="replace")


def routes_into(index: int) -> list[Route]:
    """The unicast routes of the main table that leave through interface `index`, of each
    family that can be read (none if it moves or goes away meanwhile: ENODEV; no IPv6
    routes where IPv6 is missing)."""
    routes: list[Route] = []
    try:
        with Rtnl() as rtnl:
            for family, size in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
                try:
                    routes += [Route(msg.dst or bytes(size), msg.dst_len, msg.mtu or None)
                               for msg in rtnl.routes(family, oif=index)  # main table
                               if msg.route_type == RTN_UNICAST]
                except OSError as exc:
                    if exc.errno == errno.ENODEV:  # the interface left meanwhile
                        return []
    except OSError:
        return []
    return routes


def link_state(name: str) -> tuple[int, bool, int] | None:
    """(ifindex, up, mtu) of interface `name` in our namespace, or None (also when it
    leaves meanwhile: ENODEV while it is moved or deleted)."""
    try:
        with Rtnl() as rtnl:
            link = rtnl.get_link(name)
    except OSError:
        return None
    if link is None or link.mtu is None:
        return None
    return link.index, bool(link.flags & IFF_UP), link.mtu


def watch_link(device: Device) -> None:
    """Thread body: apply link events to `device` until it stops, following the TUN into
    whatever namespace it is moved to. It sleeps until a notification comes or the device
    stops (`Device.stop_fd`)."""
    name = device.tun.name
    while not device.stopped.is_set():
        if not _watch_in_namespace(device, name):
            return
        if device.stopped.wait(NETLINK_MOVE_SETTLE):  # deleted, or moved away?
            return
        moved = follow_tun_namespace(device.tun.fd)
        if moved is None:
            device.set_up(True)  # we cannot see it any more: take it as up
            return
        name = moved
        device.log.netlink.verbose("Interface moved to another network namespace, as %s", name)


def _watch_in_namespace(device: Device, name: str) -> bool:
    """Follow `name` in this thread's namespace; True when it left (RTM_DELLINK)."""
    with Rtnl(RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE) as mon:
        # Subscribe first, so no event falls between.
        state = link_state(name)
        if state is None:
            return True  # already gone from here
        index, up, mtu = state
        device.set_mtu(mtu)
        device.set_up(up)
        device.set_routes(routes_into(index))
        while not device.stopped.is_set():
            ready, _, _ = select.select([mon.fileno(), device.stop_fd], [], [])
            if mon.fileno() not in ready:
                continue  # the device stopped
            ours, overrun = False, False
            for _ in range(NETLINK_MAX_DRAIN):
                try:
                    events = mon.recv()
                except OSError as exc:  # ENOBUFS: notifications were lost
                    device.log.netlink.verbose("netlink: %s", exc)
                    overrun = True
                    break
                if events is None:
                    break  # drained
                for event in events:
                    if isinstance(event, Link):
                        if event.index != index:
                            continue
                        ours = True
                        if event.type == RTM_DELLINK:
                            return True
                        if event.type == RTM_NEWLINK:  # each state in turn
                            if event.mtu:
                                device.set_mtu(event.mtu)
                            device.set_up(bool(event.flags & IFF_UP))
                    elif event.oif == index:
                        ours = True
            if not (ours or overrun):
                continue  # another interface's business
            state = link_state(name)
            if state is None or state[0] != index:
                return True  # gone (renamed, or its RTM_DELLINK was lost in an overrun)
            device.set_mtu(state[2])
            device.set_up(state[1])
            device.set_routes(routes_into(index))
    return False

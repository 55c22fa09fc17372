"""Following the TUN through netlink (pyroute2): up/down, MTU, and moves out of our
network namespace. Never on the packet path.

RTM_NEWLINK for our interface carries its flags and MTU: IFF_UP turns the device's timers
and sockets' duties on or off, a new MTU changes the padding limit. An RTM_DELLINK while
the TUN fd still works means the interface moved to another namespace (netns.sh does
`ip link set wg1 netns ns1`): we can no longer see its state there, so we take it as up.
A deleted TUN is noticed by the TUN reader (reads fail with EBADFD).
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

from pyroute2 import IPRoute

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["watch_link", "link_state"]

IFF_UP = 0x1
RTMGRP_LINK = 0x1


def link_state(name: str) -> tuple[int, bool, int] | None:
    """(ifindex, up, mtu) of interface `name` in our namespace, or None."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        link = ipr.link("get", index=found[0])[0]
        return int(found[0]), bool(link["flags"] & IFF_UP), int(link.get_attr("IFLA_MTU"))


def watch_link(device: Device, poll: float = 1.0) -> None:
    """Thread body: apply link events to `device` until it stops."""
    with IPRoute() as mon:
        mon.bind(groups=RTMGRP_LINK)  # subscribe first, so no event falls between
        state = link_state(device.tun.name)
        if state is None:
            device.set_up(True)  # already moved elsewhere: assume up
            return
        index, up, mtu = state
        device.set_mtu(mtu)
        device.set_up(up)
        while not device.stopped.is_set():
            ready, _, _ = select.select([mon.fileno()], [], [], poll)
            if not ready:
                continue
            try:
                messages = mon.get()
            except OSError as exc:  # e.g. ENOBUFS after an overrun: look again
                device.log.verbose("netlink: %s", exc)
                state = link_state(device.tun.name)
                if state is not None:
                    device.set_mtu(state[2])
                    device.set_up(state[1])
                continue
            for msg in messages:
                if msg.get("index") != index:
                    continue
                if msg["event"] == "RTM_DELLINK":
                    if not device.stopped.wait(0.2):  # deleted, or moved away?
                        device.set_up(True)
                    return
                if msg["event"] == "RTM_NEWLINK":
                    # `ip link set mtu 1380 up` sends two messages; pyroute2's get() returns
                    # the first and keeps the second, which select then never reports: so
                    # the state is read back, and the message is only the fallback.
                    state = link_state(device.tun.name)
                    if state is not None and state[0] == index:
                        device.set_mtu(state[2])
                        device.set_up(state[1])
                        continue
                    new_mtu = msg.get_attr("IFLA_MTU")
                    if new_mtu:
                        device.set_mtu(int(new_mtu))
                    device.set_up(bool(msg["flags"] & IFF_UP))

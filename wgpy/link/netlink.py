"""Following the TUN through rtnetlink (pyroute2, wgpy.link.rtnetlink): up/down, MTU, routes,
and moves out of our network namespace. The daemon's `netlink` thread; never on the packet
path.

RTM_NEWLINK for our interface carries its flags and MTU: IFF_UP turns the device's timers
and sockets' duties on or off, a new MTU changes the padding limit. An RTM_DELLINK while
the TUN fd still works means the interface moved to another namespace (netns.sh does
`ip link set wg1 netns ns1`). The kernel's WireGuard device goes on being told its state
there (a move takes the link down, `wg_stop`, until someone sets it up again), so we follow
it: the TUN fd names its namespace (wgpy.link.netns), this thread joins that namespace and
watches the interface there, through further moves too. On a kernel without TUNGETDEVNETNS
we cannot see the state any more and take the link as up. A deleted TUN is noticed by the
TUN reader (reads fail with EBADFD).

Routes into the interface (main table) and their MTUs are followed too (RTM_NEWROUTE,
RTM_DELROUTE): the kernel pads a packet only up to its route's MTU (wgpy.routemtu).

Each wake-up drains the waiting notifications (at most NETLINK_MAX_DRAIN datagrams) and
applies every RTM_NEWLINK of ours in turn (a quick up-down is an up and a down: wg_open,
wg_stop). Then, if any message was about our interface, the link's state and its routes are
read back: the kernel sends no RTM_DELROUTE for the IPv4 routes it flushes when a link goes
down. The device is given the routes that matter to the MTU lookup (rtnetlink.Routes): all
those with an MTU and those inside them, none when no route has an MTU.

Errors. The thread never dies of a netlink error; it recovers:
- the monitor fails (ENOBUFS: the receive buffer overflowed and notifications were lost,
  logged as verbose; anything else, logged as an error with its errno): the monitor is
  dropped (a pyroute2 socket that saw an error raises it forever), a new one is opened and
  bound, with a large receive buffer, and the state is read back. Opening it fails: retried
  after NETLINK_RETRY_DELAY, doubling up to NETLINK_RETRY_MAX;
- a read-back fails (anything but ENODEV, which means the interface left): logged as an
  error, nothing is applied (the route MTUs stay as they were: an unreadable route list is
  not an empty one), and it is tried again after the same growing delay, or at the next
  notification.
An idle thread sleeps in select() without a timeout; a timeout exists only while a
read-back is owed.
"""

from __future__ import annotations

import errno
import select
import threading
import time
from typing import TYPE_CHECKING

from wgpy.constants import (
    NETLINK_FOLLOW_WAIT, NETLINK_MAX_DRAIN, NETLINK_MOVE_SETTLE, NETLINK_RETRY_DELAY,
    NETLINK_RETRY_MAX,
)
from wgpy.link import rtnetlink
from wgpy.link.netns import follow_tun_namespace, join_netns
from wgpy.link.rtnetlink import LinkState, Monitor, Routes, link_state, routes_into

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["start_watching", "watch_link", "link_state", "routes_into", "join_netns",
           "follow_tun_namespace"]

# What _follow found: the device stopped, the interface left this namespace, or the monitor
# failed and must be replaced.
STOPPED, LEFT, REOPEN = "stopped", "left", "reopen"


def start_watching(device: Device) -> None:
    """Start the device's `netlink` thread and return once it follows the link (at most
    NETLINK_FOLLOW_WAIT): the link's state is known before a UAPI client may change it."""
    following = threading.Event()
    device.spawn("netlink", lambda: watch_link(device, following))
    following.wait(NETLINK_FOLLOW_WAIT)


def watch_link(device: Device, following: threading.Event | None = None) -> None:
    """Thread body: apply link events to `device` until it stops, following the TUN into
    whatever namespace it is moved to. It sleeps until a notification comes or the device
    stops (`Device.stop_fd`). `following` is set once the monitor is subscribed and the
    link's state read back (or the thread gave up): the daemon serves UAPI only then, so no
    link change made by a client falls before the monitor (importing pyroute2 takes a
    quarter of a second)."""
    try:
        _watch_link(device, following)
    finally:
        if following is not None:
            following.set()


def _watch_link(device: Device, following: threading.Event | None) -> None:
    name = device.tun.name
    while not device.stopped.is_set():
        if not _watch_in_namespace(device, name, following):
            return
        if device.stopped.wait(NETLINK_MOVE_SETTLE):  # deleted, or moved away?
            return
        moved = follow_tun_namespace(device.tun.fd)
        if moved is None:
            device.set_up(True)  # we cannot see it any more: take it as up
            return
        name = moved
        device.log.netlink.verbose("Interface moved to another network namespace, as %s", name)


class Seen:
    """What the watcher knows across monitors in one namespace: the interface's index
    (None before the first read-back) and the last routes summary logged."""

    def __init__(self, following: threading.Event | None = None) -> None:
        self.index: int | None = None
        self.summary: tuple[int, int, int | None] | None = None
        self.following = following  # set after the first read-back (watch_link)


def _describe(exc: OSError) -> str:
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else "?"
    return f"[{name}] {exc.strerror or exc}"


def _watch_in_namespace(device: Device, name: str,
                        following: threading.Event | None = None) -> bool:
    """Follow `name` in this thread's namespace; True when it left (RTM_DELLINK, or the
    read-back finds another interface or none)."""
    delay = NETLINK_RETRY_DELAY
    seen = Seen(following)  # kept across monitors
    while not device.stopped.is_set():
        try:
            mon = rtnetlink.open_monitor()
        except OSError as exc:
            device.log.netlink.error("netlink: cannot open a monitor: %s; retrying in %.1f s",
                                     _describe(exc), delay)
            if _sleep(device, delay):
                return False
            delay = min(delay * 2, NETLINK_RETRY_MAX)
            continue
        delay = NETLINK_RETRY_DELAY
        try:
            outcome = _follow(device, name, mon, seen)
        finally:
            mon.close()
        if outcome == LEFT:
            return True
        if outcome == STOPPED:
            return False
    return False


def _sleep(device: Device, seconds: float) -> bool:
    """Wait `seconds` or until the device stops (True then)."""
    select.select([device.stop_fd], [], [], seconds)
    return device.stopped.is_set()


def _read_back(device: Device, name: str, seen: Seen) -> str | None:
    """Read the link's state and routes and apply them. LEFT if the interface is gone (or
    another one has its name now), None if applied; raises OSError if it could not read
    (then nothing is applied)."""
    state = rtnetlink.read_link(name)
    if state is None or (seen.index is not None and state.index != seen.index):
        return LEFT
    routes = rtnetlink.read_route_set(state.index)
    if routes is None:  # it left between the two reads
        return LEFT
    _apply(device, state)
    seen.index = state.index
    device.set_routes(routes.for_mtu_lookup())
    _log_routes(device, routes, seen)
    if seen.following is not None:
        seen.following.set()
    return None


def _log_routes(device: Device, routes: Routes, seen: Seen) -> None:
    """A verbose line when the count of routes, of those with an MTU, or the lowest MTU
    changed (tests and operators see that route MTUs arrived)."""
    mtus = [r.mtu for r in routes.with_mtu if r.mtu]
    summary = (routes.count, len(mtus), min(mtus) if mtus else None)
    if seen.summary != summary:
        seen.summary = summary
        device.log.netlink.verbose("Routes into the interface: %d, %d with an MTU (lowest %s)",
                                   *summary)


def _apply(device: Device, state: LinkState) -> None:
    device.set_mtu(state.mtu)
    device.set_up(state.up)


def _follow(device: Device, name: str, mon: Monitor, seen: Seen) -> str:
    """Read the state back, then apply notifications from `mon` until the device stops,
    the interface leaves or the monitor fails. A failed read-back is tried again when its
    delay has run out, not at every notification meanwhile (a flood would repeat it)."""
    owed, delay, retry_at = True, NETLINK_RETRY_DELAY, 0.0
    while not device.stopped.is_set():
        timeout: float | None = None
        if owed:
            now = time.monotonic()
            if now >= retry_at:
                try:
                    if _read_back(device, name, seen) == LEFT:
                        return LEFT
                    owed, delay = False, NETLINK_RETRY_DELAY
                except OSError as exc:
                    device.log.netlink.error(
                        "netlink: cannot read the interface's state back: %s; retrying in "
                        "%.1f s", _describe(exc), delay)
                    retry_at, delay = now + delay, min(delay * 2, NETLINK_RETRY_MAX)
            if owed:
                timeout = max(0.0, retry_at - time.monotonic())
        ready, _, _ = select.select([mon.fileno(), device.stop_fd], [], [], timeout)
        if device.stopped.is_set():
            return STOPPED
        if mon.fileno() not in ready:
            continue  # the retry delay ran out: read back again
        outcome = _drain(device, mon, seen)
        if outcome == LEFT or outcome == REOPEN:
            return outcome
        owed = owed or outcome == "ours"
    return STOPPED


def _drain(device: Device, mon: Monitor, seen: Seen) -> str | None:
    """Apply the waiting notifications: LEFT on our RTM_DELLINK, REOPEN if the monitor
    failed, "ours" if any was about our interface, else None."""
    ours = False
    for _ in range(NETLINK_MAX_DRAIN):
        try:
            events = mon.receive()
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                device.log.netlink.verbose(
                    "netlink: notifications lost (receive buffer overrun: %s); reopening "
                    "and reading the state back", _describe(exc))
            else:
                device.log.netlink.error(
                    "netlink: the monitor failed: %s; reopening and reading the state back",
                    _describe(exc))
            return REOPEN
        if events is None:
            break  # drained
        for event in events:
            if seen.index is not None and event.index != seen.index:
                continue  # another interface's business
            ours = True  # (before the first read-back: anything may be ours)
            if not event.link or seen.index is None:
                continue
            if event.deleted:
                return LEFT
            if event.mtu:  # each state in turn
                device.set_mtu(event.mtu)
            device.set_up(event.up)
    return "ours" if ours else None


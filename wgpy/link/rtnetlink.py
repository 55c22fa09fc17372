"""rtnetlink through pyroute2: the interface's state, the routes into it, and the monitor of
their changes. Never on the packet path.

pyroute2 is imported lazily, by the first call (the netlink thread's first read): importing
it costs some 22 MiB of resident memory, which a process that only imports wgpy.cli or this
module (tests, `wg`-style tools) should not pay.

Requests: each read opens its own `IPRoute` (its own netlink socket and asyncio event loop,
run only inside the call; pyroute2 starts no thread and no timer) in the calling thread's
network namespace, and closes it. A link is asked for by name (`link('get', ifname=)`:
index, IFF_UP, MTU); routes are dumped per family from the main table through the
interface (`route('dump', family=, table=DEFAULT_TABLE, oif=)`), the kernel filtering them when
strict checking is available (Linux 4.20). A dump is consumed as it comes, through pyroute2's
asynchronous API, and each route is packed at once (`Routes`): the synchronous API would
first build a tuple of pyroute2 messages, some 3 KiB each (215 MiB for 60,000 routes).
pyroute2 reports a kernel error as NetlinkError(code); it is turned into OSError(code) here,
so that callers see one kind of error. ENODEV means the interface left (moved or deleted
meanwhile): `read_link` and `read_routes` answer None then. Any other
failure raises, so that a caller never takes "could not read" for "no routes".

The monitor (`open_monitor`) is an `IPRoute` bound to RTMGRP_LINK, RTMGRP_IPV4_ROUTE and
RTMGRP_IPV6_ROUTE, with a large receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF up
to rmem_max). Its notifications are read with `receive`: one datagram without waiting
(MSG_DONTWAIT on the monitor's `recv`), parsed by pyroute2's marshal. Not `IPRoute.get()`:
it waits when nothing is queued, and its asyncio transport moves datagrams from the socket
into a private queue that a select() on `fileno()` cannot see, so a wake-up could be lost.
When the kernel could not queue a notification the receive fails with ENOBUFS: events were
lost, and a pyroute2 socket that saw an error raises it forever; the caller drops the
monitor, opens a new one and reads the state back.

Memory. pyroute2's parsed messages hold reference cycles, so each would wait for a full
collection of the cyclic garbage collector; after every NETLINK_COLLECT_EVERY messages
parsed (a dump, or a flood of notifications) the young generations are collected. A fresh
daemon receiving 60,000 routes in one burst peaked at 61.4 MiB that way, 63.8 MiB without.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wgpy.constants import (
    NETLINK_COLLECT_EVERY, NETLINK_MONITOR_RCVBUF, NETLINK_RECV_SIZE, NETLINK_REQUEST_TIMEOUT,
)
from wgpy.routemtu import Route

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["LinkState", "LinkEvent", "Monitor", "Routes", "open_monitor", "read_link",
           "read_routes", "read_route_set",
           "link_state", "routes_into", "as_oserror"]

# asm-generic/socket.h; Python's socket module does not export it (a socket option, not
# an rtnetlink constant: pyroute2 has none either).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _main_table() -> int:
    """RT_TABLE_MAIN, by the name pyroute2 gives it (its routes' default table)."""
    from pyroute2.iproute.linux import DEFAULT_TABLE  # type: ignore[import-untyped]

    table: int = DEFAULT_TABLE
    return table


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the kernel says of the interface: its index, IFF_UP and MTU."""

    index: int
    up: bool
    mtu: int


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One notification, reduced to what the watcher needs: an RTM_NEWLINK or RTM_DELLINK
    (`link` True; `up` and `mtu` of a new link, `deleted` of a DELLINK) or a route change
    (`link` False; `index` is the route's output interface, 0 if none)."""

    link: bool
    index: int
    deleted: bool = False
    up: bool = False
    mtu: int | None = None


def as_oserror(exc: BaseException) -> OSError:
    """pyroute2's NetlinkError(code) as OSError(code); an OSError as it is; anything else
    (a decoding error) as OSError(EBADMSG) with its text."""
    if isinstance(exc, OSError):
        return exc
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return OSError(code, os.strerror(code))
    return OSError(errno.EBADMSG, f"{type(exc).__name__}: {exc}")


def _netlink_errors() -> tuple[type[BaseException], ...]:
    from pyroute2.netlink.exceptions import (  # type: ignore[import-untyped]
        NetlinkDecodeError, NetlinkError,
    )

    return (NetlinkError, NetlinkDecodeError)


def _open_ipr(strict: bool) -> Any:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

    if strict:
        try:
            return IPRoute(strict_check=True)
        except OSError as exc:  # before Linux 4.20: no NETLINK_GET_STRICT_CHK
            if exc.errno != errno.ENOPROTOOPT:
                raise
    return IPRoute()


def read_link(name: str) -> LinkState | None:
    """The interface `name` in this thread's namespace, or None if there is none (ENODEV).
    Raises OSError on any other failure."""
    try:
        ipr = _open_ipr(strict=False)
    except _netlink_errors() as exc:
        raise as_oserror(exc) from exc
    try:
        links = ipr.link("get", ifname=name)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    except _netlink_errors() as exc:
        if getattr(exc, "code", None) == errno.ENODEV:
            return None
        raise as_oserror(exc) from exc
    finally:
        ipr.close()
    for msg in links:
        mtu = msg.get("mtu")
        if mtu is None:
            continue
        from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP  # type: ignore[import-untyped]

        return LinkState(msg["index"], bool(msg["flags"] & IFF_UP), mtu)
    return None


def _route(msg: Any, family: int, index: int, unicast: int, table: int
           ) -> tuple[bytes, int, int | None] | None:
    """A pyroute2 route message as (address, prefix length, MTU or None), if it is a
    `unicast` route of `table` out of `index` (the kernel filtered already when it checks
    strictly)."""
    if msg.get("oif") != index or msg["type"] != unicast or msg.get("table") != table:
        return None
    dst = msg.get("dst")
    size = 4 if family == socket.AF_INET else 16
    address = socket.inet_pton(family, dst) if dst else bytes(size)
    return address, msg["dst_len"], msg.get_nested("RTA_METRICS", "RTAX_MTU") or None


class Routes:
    """The routes of one read, gathered as they come. Those with an MTU are kept as Route
    objects; those without are packed (prefix length, address) into a bytearray per family,
    some 7 bytes a route instead of some 300: 60,000 routes into the interface are common
    (`wg-quick` with a large AllowedIPs) and rarely carry an MTU."""

    def __init__(self) -> None:
        self.count = 0
        self.with_mtu: list[Route] = []
        self.plain: dict[int, bytearray] = {4: bytearray(), 16: bytearray()}

    def add(self, address: bytes, prefix_len: int, mtu: int | None) -> None:
        self.count += 1
        if mtu:
            self.with_mtu.append(Route(address, prefix_len, mtu))
        else:
            self.plain[len(address)] += bytes([prefix_len]) + address

    def _plain(self, size: int) -> Iterator[tuple[bytes, int]]:
        packed, step = self.plain[size], size + 1
        for offset in range(0, len(packed), step):
            yield bytes(packed[offset + 1:offset + step]), packed[offset]

    def all(self) -> list[Route]:
        """Every route."""
        return self.with_mtu + [Route(address, prefix_len, None) for size in (4, 16)
                                for address, prefix_len in self._plain(size)]

    def for_mtu_lookup(self) -> list[Route]:
        """The routes with an MTU, and those without that lie inside one of them (a longer
        prefix that overrides its MTU): a longest-prefix lookup among these answers as among
        all routes (wgpy.routemtu.RouteMTUs), and with no MTU at all there are none."""
        chosen = list(self.with_mtu)
        for size in (4, 16):
            bits = size * 8
            networks: dict[int, set[int]] = {}
            for route in self.with_mtu:
                if len(route.address) == size:
                    value = int.from_bytes(route.address, "big")
                    networks.setdefault(route.prefix_len, set()).add(
                        value >> (bits - route.prefix_len) if route.prefix_len else 0)
            if not networks:
                continue
            lengths = sorted(networks)
            for address, prefix_len in self._plain(size):
                value = int.from_bytes(address, "big")
                if any((value >> (bits - n) if n else 0) in networks[n]
                       for n in lengths if n <= prefix_len):
                    chosen.append(Route(address, prefix_len, None))
        return chosen


async def _dump_routes(ipr: Any, family: int, index: int, routes: Routes) -> None:
    from pyroute2.netlink.rtnl import rt_type  # type: ignore[import-untyped]

    table, unicast = _main_table(), rt_type["unicast"]
    dump = await ipr.route("dump", family=family, table=table, oif=index)
    seen = 0
    async for msg in dump:
        route = _route(msg, family, index, unicast, table)
        if route is not None:
            routes.add(*route)
        seen += 1
        if seen % NETLINK_COLLECT_EVERY == 0:
            gc.collect(1)  # pyroute2's messages are reference cycles: free them young


def read_route_set(index: int) -> Routes | None:
    """The unicast routes of the main table out of interface `index`, both families; None
    if the interface left meanwhile (ENODEV). A family the kernel lacks (EAFNOSUPPORT: no
    IPv6) has none. Raises OSError on any other failure: never a partial answer."""
    try:
        ipr = _open_ipr(strict=True)
    except _netlink_errors() as exc:
        raise as_oserror(exc) from exc
    routes = Routes()
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                ipr.asyncore.event_loop.run_until_complete(asyncio.wait_for(
                    _dump_routes(ipr.asyncore, family, index, routes),
                    NETLINK_REQUEST_TIMEOUT))
            except asyncio.TimeoutError as exc:
                raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT)) from exc
            except Exception as exc:  # OSError, or pyroute2's NetlinkError and kin
                if not isinstance(exc, (OSError, *_netlink_errors())):
                    raise
                err = as_oserror(exc)
                if err.errno == errno.ENODEV:
                    return None
                if err.errno == errno.EAFNOSUPPORT:
                    continue
                raise err from exc
    finally:
        ipr.close()
    return routes


def read_routes(index: int) -> list[Route] | None:
    """`read_route_set` as a list of every route."""
    routes = read_route_set(index)
    return None if routes is None else routes.all()


def link_state(name: str) -> tuple[int, bool, int] | None:
    """(ifindex, up, mtu) of interface `name` in our namespace, or None: also when it leaves
    meanwhile or cannot be read (for callers that only look)."""
    try:
        state = read_link(name)
    except OSError:
        return None
    return None if state is None else (state.index, state.up, state.mtu)


def routes_into(index: int) -> list[Route]:
    """`read_routes`, with [] when the interface has left. Raises OSError when the routes
    cannot be read: [] would clear their MTUs."""
    routes = read_routes(index)
    return [] if routes is None else routes


class Monitor:
    """An IPRoute bound to the link and route groups; `receive` reads what is waiting."""

    def __init__(self, ipr: Any) -> None:
        self.ipr = ipr
        self.parsed = 0  # messages parsed since their cycles were last collected

    def fileno(self) -> int:
        fd: int = self.ipr.fileno()
        return fd

    def close(self) -> None:
        self.ipr.close()

    def receive(self) -> list[LinkEvent] | None:
        """The notifications of one waiting datagram, or None when none waits. Raises
        OSError: ENOBUFS when notifications were lost, anything else when the socket (or
        pyroute2's parser) failed; the monitor is unusable then."""
        from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK  # type: ignore[import-untyped]
        from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg  # type: ignore[import-untyped]
        from pyroute2.netlink.rtnl.rtmsg import rtmsg  # type: ignore[import-untyped]

        try:
            data = self.ipr.recv(NETLINK_RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        try:
            messages = list(self.ipr.marshal.parse(data))
        except _netlink_errors() as exc:
            raise as_oserror(exc) from exc
        self.parsed += len(messages)
        if self.parsed >= NETLINK_COLLECT_EVERY:  # a flood of notifications: see _dump_routes
            self.parsed = 0
            gc.collect(1)
        events: list[LinkEvent] = []
        for msg in messages:
            if isinstance(msg, ifinfmsg):
                kind = msg["header"]["type"]
                if kind not in (RTM_NEWLINK, RTM_DELLINK):
                    continue
                events.append(LinkEvent(True, msg["index"], deleted=kind == RTM_DELLINK,
                                        up=bool(msg["flags"] & IFF_UP), mtu=msg.get("mtu")))
            elif isinstance(msg, rtmsg):
                events.append(LinkEvent(False, msg.get("oif") or 0))
        return events


def enlarge_receive_buffer(sock: Any, size: int = NETLINK_MONITOR_RCVBUF) -> None:
    """SO_RCVBUFFORCE (root: beyond rmem_max), else SO_RCVBUF (up to rmem_max)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def open_monitor() -> Monitor:
    """A new monitor in this thread's namespace, subscribed before the caller reads the
    state (so that no change falls between). Raises OSError."""
    from pyroute2 import IPRoute  # type: ignore[import-untyped]
    from pyroute2.netlink.rtnl import (  # type: ignore[import-untyped]
        RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
    )

    try:
        ipr = IPRoute()
    except _netlink_errors() as exc:
        raise as_oserror(exc) from exc
    try:
        enlarge_receive_buffer(ipr)
        ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
    except BaseException as exc:
        ipr.close()
        if isinstance(exc, _netlink_errors()):
            raise as_oserror(exc) from exc
        raise
    return Monitor(ipr)


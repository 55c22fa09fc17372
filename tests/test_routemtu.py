"""wgpy.routemtu: padding stops at the MTU of the packet's route, as the kernel's
calculate_skb_padding with dst_mtu (netns.sh: routes at 1299 on interfaces at 1300)."""

from __future__ import annotations

import ipaddress

from helpers import ipv4
from wgpy.noise.peer import padding_for
from wgpy.routemtu import Route, RouteMTUs


def route(prefix: str, mtu: int | None) -> Route:
    net = ipaddress.ip_network(prefix)
    return Route(net.network_address.packed, net.prefixlen, mtu)


def packet_to(dst: str, size: int) -> bytes:
    p = ipv4("10.0.0.1", dst, b"")
    return p + bytes(size - len(p))


def test_no_route_with_an_mtu_builds_no_table() -> None:
    assert RouteMTUs.build([route("10.0.0.0/24", None)]) is None


def test_longest_prefix_decides_and_small_packets_cost_one_comparison() -> None:
    table = RouteMTUs.build([route("192.168.241.2/32", 1299), route("192.168.0.0/16", None),
                             route("fd00::/64", 1280), route("0.0.0.0/0", 1350)])
    assert table is not None and table.floor == 1280
    assert table.mtu_for(packet_to("192.168.241.2", 1297), 1300) == 1299
    assert table.mtu_for(packet_to("192.168.9.9", 1297), 1300) == 1300  # more specific, none
    assert table.mtu_for(packet_to("8.8.8.8", 1297), 1300) == 1300  # 1350 > the device's
    assert table.mtu_for(packet_to("192.168.241.2", 100), 1300) == 1300  # far below: skipped


def test_the_kernels_padding_with_the_route_mtu() -> None:
    table = RouteMTUs.build([route("192.168.241.2/32", 1299)])
    assert table is not None
    packet = packet_to("192.168.241.2", 1297)
    mtu = table.mtu_for(packet, 1300)
    assert 1297 + padding_for(1297, mtu) == 1299  # the kernel's 1359-byte datagram
    assert 1297 + padding_for(1297, 1300) == 1300  # the interface's MTU would give 1360

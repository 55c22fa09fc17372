"""Sticky source address, "sticky but not too sticky" (wireguard-go's tests/netns.sh).

wgpy answers from the local address its peer sent to. When that address is removed from the
host, the very next packet must still arrive: the send from the vanished address fails
(ENETUNREACH for IPv4) and goes again at once from the address routing picks (kernel
socket.c `send4`), and the peer roams to it.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from wgpy.testing import LabTunnel, endpoint

pytestmark = pytest.mark.root


def test_first_packet_after_the_sticky_address_vanishes_arrives(wg_tunnel: LabTunnel) -> None:
    """wg_tunnel (wgpy's pytest plugin): wgpy in namespace a, wireguard-go in b."""
    wgpy, go, pair = wg_tunnel.a, wg_tunnel.b, wg_tunnel.namespaces
    a, b = pair.a, pair.b
    primary = pair.a_addresses[0]
    net = ipaddress.ip_interface(primary).network
    extra = f"{net[12]}/{net.prefixlen}"  # a second address on wgpy's side of the veth
    a.run("ip", "addr", "add", extra, "dev", pair.veth_a, "nodad")
    go.wg("set", go.ifname, "peer", wgpy.public_key_b64, "endpoint", endpoint(extra, wgpy.port))
    ping = b.ping(wgpy.ip4, count=2, interval=0.3)
    assert ping.returncode == 0, ping.stdout + wgpy.log_tail()
    seen = go.wg("show", go.ifname, "endpoints").stdout.split()[-1]
    assert seen == endpoint(extra, wgpy.port), seen  # wgpy answered from the extra address
    a.run("ip", "addr", "del", extra, "dev", pair.veth_a)
    # One packet, one chance: it leaves from the primary address at once and wireguard-go
    # roams to it.
    started = time.monotonic()
    ping = a.ping(go.ip4, count=1)
    assert ping.returncode == 0, ping.stdout + wgpy.log_tail()
    assert time.monotonic() - started < 2.5
    seen = go.wg("show", go.ifname, "endpoints").stdout.split()[-1]
    assert seen == endpoint(primary, wgpy.port), seen

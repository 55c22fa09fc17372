"""The TUN moved to another network namespace, and sticky source addresses.

- netns.sh starts the daemon in ns0 and moves its TUN with `ip link set wg1 netns ns1`:
  the daemon and its UDP sockets stay in ns0, the interface is configured and used in ns1.
- "Reply to sender" (netns.sh): with several addresses on one link, replies must leave from
  the address the peer sent to, so the peer sees one stable endpoint.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from wgpy.testing import Lab, LabTunnel, endpoint

pytestmark = pytest.mark.root


def test_tun_moved_to_another_namespace_keeps_working() -> None:
    with Lab() as lab:
        ns0, ns1, ns2 = lab.namespace("n0"), lab.namespace("n1"), lab.namespace("n2")
        lab.link(ns0, ns2, "192.168.88.1/24", "192.168.88.2/24")
        moved = lab.daemon(ns0, "wgpy")
        other = lab.daemon(ns2, "wireguard-go")
        ns0.run("ip", "link", "set", moved.ifname, "netns", ns1.name)
        moved.ns = ns1  # configure it where it now lives; its socket stays in ns0
        lab.configure(moved, "10.88.0.1/24", 51820)
        lab.configure(other, "10.88.0.2/24", 51820)
        lab.peer(moved, other, "10.88.0.2/32", "192.168.88.2:51820")
        lab.peer(other, moved, "10.88.0.1/32")
        ping = ns1.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.88.0.2", check=False)
        assert ping.returncode == 0, ping.stdout + moved.log_tail()
        ping = ns2.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.88.0.1", check=False)
        assert ping.returncode == 0, ping.stdout + moved.log_tail()
        # Deleting the interface in its new namespace still stops the daemon.
        ns1.run("ip", "link", "del", moved.ifname)
        assert moved.proc is not None
        assert moved.proc.wait(10) == 0
        assert not moved.socket.exists()


def test_replies_leave_from_the_address_the_peer_used(wg_tunnel: LabTunnel) -> None:
    """wg_tunnel (wgpy's pytest plugin): wgpy in namespace a, wireguard-go in b."""
    wgpy, go, pair = wg_tunnel.a, wg_tunnel.b, wg_tunnel.namespaces
    net = ipaddress.ip_interface(pair.a_addresses[0]).network
    for extra in (11, 12):
        pair.a.run("ip", "addr", "add", f"{net[extra]}/{net.prefixlen}", "dev", pair.veth_a,
                   "nodad")
    for target in (net[11], net[12], net[1]):
        wanted = endpoint(str(target), wgpy.port)
        go.wg("set", go.ifname, "peer", wgpy.public_key_b64, "endpoint", wanted)
        deadline = time.monotonic() + 10
        seen = ""
        while time.monotonic() < deadline:
            pair.b.ping(wgpy.ip4, count=1, wait=1)
            seen = go.wg("show", go.ifname, "endpoints").stdout.split()[-1]
            if seen == wanted:
                break
            time.sleep(0.2)
        # wireguard-go roams to the source of what it receives: it must be `target`.
        assert seen == wanted, wgpy.log_tail()
        assert pair.b.ping(wgpy.ip4, count=2).returncode == 0


def test_mtu_and_link_state_are_followed(wg_lab: Lab) -> None:
    lab = wg_lab  # wgpy's pytest plugin: a Lab closed after the test
    ns = lab.namespace("mt")
    d = lab.daemon(ns, "wgpy")
    ns.run("ip", "link", "set", d.ifname, "mtu", "1280")
    ns.run("ip", "link", "set", d.ifname, "up")
    ns.run("ip", "link", "set", d.ifname, "down")
    deadline = time.monotonic() + 5
    wanted = ["MTU updated: 1280", "Interface up", "Interface down"]
    while time.monotonic() < deadline and not all(w in d.log.read_text() for w in wanted):
        time.sleep(0.1)
    log = d.log.read_text()
    positions = [log.find(w) for w in wanted]
    assert -1 not in positions and positions == sorted(positions), log

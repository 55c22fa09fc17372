"""Scenarios of netns.sh (kernel and wireguard-go) that need each daemon in the namespace of
its own interface, with a veth link between them (issue 8, item 5):

    ns1: wg1 (wgpy)                                 ns2: wg2
         veth1 10.0.0.1/24 fd00:aa::1/96  ───────────  veth2 10.0.0.2/24 fd00:aa::2/96
         vethc 192.168.1.100/24 ── ns0 (router, SNAT) ── veths 10.9.0.100/24

- link down and up (item 2), a route MTU below the interface MTU;
- NAT: SNAT in ns0 with a 2 s UDP conntrack timeout, a persistent keepalive keeps it open;
- multihomed: the sticky source address fails over when it is removed, survives while it
  exists, and is not moved by spoofed datagrams (junk, forged, replayed).

One lab per pair serves the module; every test starts from the baseline (`Net.reset`).
Pairs: `wgpy-wgpy`, and `wgpy-wireguard-go` with wgpy as wg1, the side that is checked.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from compat.lab import Daemon, Lab, Namespace, b64
from compat.test_scenarios import (
    INNER,
    PAIRS,
    assert_ping,
    hostport,
    ping,
    ping_counts,
)

pytestmark = pytest.mark.root

PORT1, PORT2 = 1, 2  # netns.sh's ports
VETH = {4: ("10.0.0.1", "10.0.0.2"), 6: ("fd00:aa::1", "fd00:aa::2")}
PREFIX = {4: 24, 6: 96}
EXTRA = {4: "10.0.0.11", 6: "fd00:aa::11"}  # a second address of ns1
MOVED = {4: "10.0.0.10", 6: "fd00:aa::10"}  # netns.sh's replacement address
NAT_CLIENT, NAT_ROUTER_IN, NAT_ROUTER_OUT, NAT_SERVER = (
    "192.168.1.100", "192.168.1.1", "10.9.0.1", "10.9.0.100")

STICKY_REASON = (
    "issue 8 item 1 (sticky source as the kernel keeps it) not landed: when wgpy's "
    "remembered source address is removed, the first datagram sent from it is lost instead "
    "of being sent again without it (kernel send4/send6), so `ping -c 1` fails")
SPOOF_REASON = (
    "issue 8 item 1 not landed: a datagram spoofed from the peer's endpoint to another local "
    "address moves wgpy's remembered source address before (or without) authenticating, so "
    "wgpy's next packets leave from that address and the peer roams to it")
LINK_DOWN_REASON = (
    "issue 8 item 2 (link down means down) not landed: with its link down, wgpy still "
    "answers a handshake initiation (the peer's latest handshake is set) and decrypts")


@dataclass
class Net:
    lab: Lab
    pair: str
    ns0: Namespace
    ns1: Namespace
    ns2: Namespace
    d1: Daemon
    d2: Daemon
    veth1: str
    veth2: str

    def logs(self) -> str:
        return "".join(f"\n--- wg{i} {d.impl} {d.ifname} log tail ---\n{d.log_tail(25)}"
                       for i, d in ((1, self.d1), (2, self.d2)))

    def reset(self) -> None:
        for ns, dev, side in ((self.ns1, self.veth1, 0), (self.ns2, self.veth2, 1)):
            ns.run("ip", "addr", "flush", "dev", dev)
            for family in (4, 6):
                ns.run("ip", "addr", "add", f"{VETH[family][side]}/{PREFIX[family]}", "dev",
                       dev, "nodad")
            ns.run("nft", "flush", "ruleset")
        for d, other, port, side in ((self.d1, self.d2, PORT1, 1), (self.d2, self.d1, PORT2, 0)):
            conf = self.lab.tmp / f"{d.ifname}.conf"
            conf.write_text(
                f"[Interface]\nPrivateKey = {b64(d.private_key)}\nListenPort = {port}\n\n"
                f"[Peer]\nPublicKey = {b64(other.public_key)}\n"
                f"AllowedIPs = {INNER[4][side]}/32, {INNER[6][side]}/128\n"
                f"Endpoint = {VETH[4][side]}:{other_port(port)}\n")
            conf.chmod(0o600)
            d.wg("setconf", d.ifname, str(conf))
            d.port = port
            d.ns.run("ip", "link", "set", d.ifname, "mtu", "1420", "up")
            inner_addresses(d.ns, d, 1 - side)

    def endpoint(self, d: Daemon) -> str:
        out = d.wg("show", d.ifname, "endpoints").stdout.split()
        return out[1] if len(out) == 2 else ""

    def latest_handshake(self, d: Daemon) -> int:
        out = d.wg("show", d.ifname, "latest-handshakes").stdout.split()
        return int(out[1]) if len(out) == 2 else 0

    def rx(self, d: Daemon) -> int:
        out = d.wg("show", d.ifname, "transfer").stdout.split()
        return int(out[1]) if len(out) == 3 else 0


def inner_addresses(ns: Namespace, d: Daemon, side: int) -> None:
    """(Re)set the tunnel addresses (a link taken down loses its IPv6 addresses)."""
    ns.run("ip", "addr", "replace", f"{INNER[4][side]}/24", "dev", d.ifname)
    ns.run("ip", "addr", "replace", f"{INNER[6][side]}/112", "dev", d.ifname, "nodad")


def other_port(port: int) -> int:
    return PORT2 if port == PORT1 else PORT1


def build(lab: Lab, pair: str) -> Net:
    impl1, impl2 = PAIRS[pair]
    ns0, ns1, ns2 = lab.namespace("r0"), lab.namespace("r1"), lab.namespace("r2")
    lab.link(ns1, ns2)
    veths = [line.split(":")[1].strip().split("@")[0]
             for ns in (ns1, ns2)
             for line in ns.run("ip", "-o", "link", "show", "type", "veth").stdout.splitlines()]
    veth1, veth2 = veths
    for ns, dev in ((ns1, veth1), (ns2, veth2)):
        ns.sysctl(f"net/ipv6/conf/{dev}/accept_dad", 0)
    ns1.sysctl(f"net/ipv4/conf/{veth1}/promote_secondaries", 1)
    # NAT: ns1 -- ns0 -- ns2, on other subnets than the direct link.
    lab.link(ns1, ns0, f"{NAT_CLIENT}/24", f"{NAT_ROUTER_IN}/24")
    lab.link(ns0, ns2, f"{NAT_ROUTER_OUT}/24", f"{NAT_SERVER}/24")
    ns1.run("ip", "route", "add", "default", "via", NAT_ROUTER_IN)
    ns0.sysctl("net/ipv4/ip_forward", 1)
    d1, d2 = lab.daemon(ns1, impl1), lab.daemon(ns2, impl2)
    return Net(lab, pair, ns0, ns1, ns2, d1, d2, veth1, veth2)


@pytest.fixture(scope="module", params=list(PAIRS), ids=list(PAIRS))
def net(request: pytest.FixtureRequest) -> Iterator[Net]:
    from compat.conftest import require_root

    require_root()
    with Lab() as lab:
        yield build(lab, request.param)


@pytest.fixture
def n(net: Net) -> Net:
    for d in (net.d1, net.d2):
        assert d.alive(), f"{d.impl} {d.ifname} is not running:\n{d.log_tail()}"
    net.reset()
    return net


def nft(ns: Namespace, *rules: str) -> None:
    """A fresh `inet scen` table with an input chain holding `rules`."""
    ns.run("nft", "add", "table", "inet", "scen")
    ns.run("nft", "add", "chain", "inet", "scen", "in", "{ type filter hook input priority 0; }")
    for rule in rules:
        ns.run("nft", "add", "rule", "inet", "scen", "in", *rule.split())


# --- link down and up ---------------------------------------------------------------------------

def test_link_down_and_up(n: Net) -> None:
    """Item 2: while wg1 is down it answers no handshake, sends and receives nothing; once
    up, the handshake wg2 keeps retrying completes and traffic flows both ways."""
    assert_ping(n, n.ns2, INNER[4][0])
    n.ns1.run("ip", "link", "set", n.d1.ifname, "down")
    # A fresh peer entry on wg2: its next packet needs a new handshake.
    key = b64(n.d1.public_key)
    n.d2.wg("set", n.d2.ifname, "peer", key, "remove")
    n.d2.wg("set", n.d2.ifname, "peer", key, "allowed-ips",
            f"{INNER[4][0]}/32,{INNER[6][0]}/128", "endpoint", f"{VETH[4][0]}:{PORT1}")
    time.sleep(0.3)  # the link event reaches wg1
    rx1 = n.rx(n.d1)
    r = ping(n.ns2, INNER[4][0], "-w", "3", count=2, wait=1)
    assert ping_counts(r.stdout)[1] == 0, r.stdout
    assert n.latest_handshake(n.d2) == 0, "a handshake was answered while down" + n.logs()
    assert n.rx(n.d2) == 0, "wg1 sent while down" + n.logs()
    assert n.rx(n.d1) == rx1, "wg1 received while down" + n.logs()
    n.ns1.run("ip", "link", "set", n.d1.ifname, "up")
    r = ping(n.ns2, INNER[4][0], "-w", "12", count=1, wait=10)  # wg2's retry, ~5 s
    assert r.returncode == 0, "no traffic after link up:\n" + r.stdout + n.logs()
    inner_addresses(n.ns1, n.d1, 0)  # IPv6 addresses went with the link
    assert_ping(n, n.ns1, INNER[6][1])


# --- a route MTU below the interface MTU --------------------------------------------------------

@pytest.fixture
def route_mtu(n: Net) -> Iterator[None]:
    """Interfaces at MTU 1300 and routes to the peer at 1299 (netns.sh), removed after."""
    routes = ((n.ns1, n.d1, INNER[4][1]), (n.ns2, n.d2, INNER[4][0]))
    for ns, d, peer in routes:
        ns.run("ip", "link", "set", d.ifname, "mtu", "1300")
        ns.run("ip", "route", "replace", f"{peer}/32", "dev", d.ifname, "mtu", "1299")
    time.sleep(0.3)  # the MTU and route events reach the daemons
    yield
    for ns, d, peer in routes:
        ns.run("ip", "route", "del", f"{peer}/32", "dev", d.ifname, check=False)


def test_route_mtu_below_interface_mtu(n: Net, route_mtu: None) -> None:
    """Interfaces at MTU 1300, routes to the peer at 1299: pings up to 1299 bytes pass both
    ways, 1300 bytes are refused by the sender's stack, and no datagram from wg1 is longer
    than the interface MTU allows (1300 + 60)."""
    nft(n.ns2, f"udp sport {PORT1} meta length gt 1360 counter")
    assert_ping(n, n.ns1, INNER[4][1], "-M", "do", "-s", "1271")
    assert_ping(n, n.ns2, INNER[4][0], "-M", "do", "-s", "1271")
    r = ping(n.ns1, INNER[4][1], "-M", "do", "-s", "1272")
    assert r.returncode != 0 and "1299" in r.stdout + r.stderr, r.stdout + r.stderr
    rules = n.ns2.run("nft", "list", "table", "inet", "scen").stdout
    assert "counter packets 0 " in rules, rules + n.logs()


def test_route_mtu_padding_as_the_kernel(n: Net, route_mtu: None) -> None:
    """netns.sh exactly: 1360-byte datagrams are dropped on the way in, so a 1297-byte ping
    passes only if it is padded to the route's MTU (1299), not the interface's (1300)
    (wgpy.routemtu). Debian's wireguard-go pads to the interface's, so with it as wg2 only
    wgpy's datagrams (those arriving in ns2) meet the filter, and the ping starts at wg1."""
    both = n.pair == "wgpy-wgpy"
    for ns in (n.ns1, n.ns2) if both else (n.ns2,):
        nft(ns, "meta length 1360 drop")
    assert_ping(n, n.ns2 if both else n.ns1, INNER[4][0] if both else INNER[4][1], "-s", "1269")


# --- NAT ----------------------------------------------------------------------------------------

def test_nat_persistent_keepalive(n: Net) -> None:
    """netns.sh: wg1 behind SNAT (ns0, UDP conntrack timeouts of 2 s) with a persistent
    keepalive of 1 s; wg2 learns the router's address; 3 s later, with nothing else sent,
    wg2 still reaches wg1 through the mapping the keepalives kept open."""
    n.ns0.sysctl("net/netfilter/nf_conntrack_udp_timeout", 2)
    n.ns0.sysctl("net/netfilter/nf_conntrack_udp_timeout_stream", 2)
    n.ns0.run("nft", "flush", "ruleset")
    n.ns0.run("nft", "add", "table", "ip", "nat")
    n.ns0.run("nft", "add", "chain", "ip", "nat", "post",
              "{ type nat hook postrouting priority 100; }")
    n.ns0.run("nft", "add", "rule", "ip", "nat", "post", "ip", "saddr", "192.168.1.0/24",
              "ip", "daddr", "10.9.0.0/24", "snat", "to", NAT_ROUTER_OUT)
    n.d1.wg("set", n.d1.ifname, "peer", b64(n.d2.public_key), "endpoint",
            f"{NAT_SERVER}:{PORT2}", "persistent-keepalive", "1")
    assert_ping(n, n.ns1, INNER[4][1])
    assert_ping(n, n.ns2, INNER[4][0])
    assert n.endpoint(n.d2) == f"{NAT_ROUTER_OUT}:{PORT1}", n.logs()
    rx2 = n.rx(n.d2)
    time.sleep(3)
    assert n.rx(n.d2) > rx2, "no keepalive reached wg2 in 3 s" + n.logs()
    assert_ping(n, n.ns2, INNER[4][0])
    n.d1.wg("set", n.d1.ifname, "peer", b64(n.d2.public_key), "persistent-keepalive", "0")


# --- multihomed: the sticky source address ------------------------------------------------------

def upstream_v6_sticky(n: Net, family: int, request: pytest.FixtureRequest) -> None:
    """Known failure, strict: against today's wireguard-go (f333402) the IPv6 sticky-source
    scenarios fail, on wgpy's compiled and pure-Python paths alike: wireguard-go logs
    "Sending handshake response" to each initiation after the address change, and no
    response reaches wgpy. Not yet understood; Debian's build and wgpy pass them."""
    if n.pair == "wgpy-upstream" and family == 6:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "today's wireguard-go: IPv6 sticky source, its responses do not arrive "
            "(under investigation)")))


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_sticky_source_fails_over(n: Net, family: int,
                                  request: pytest.FixtureRequest) -> None:
    """netns.sh, "sticky but not too sticky": wg1 talks to wg2 from 10.0.0.1; 10.0.0.10 is
    added and 10.0.0.1 removed; the very next ping (one packet) arrives, from 10.0.0.10.
    The same over IPv6 (fd00:aa::1 → fd00:aa::10)."""
    upstream_v6_sticky(n, family, request)
    n.d1.wg("set", n.d1.ifname, "peer", b64(n.d2.public_key), "endpoint",
            hostport(VETH[family][1], PORT2))
    assert_ping(n, n.ns1, INNER[4][1])
    assert n.endpoint(n.d2) == hostport(VETH[family][0], PORT1)
    n.ns1.run("ip", "addr", "add", f"{MOVED[family]}/{PREFIX[family]}", "dev", n.veth1,
              "nodad")
    n.ns1.run("ip", "addr", "del", f"{VETH[family][0]}/{PREFIX[family]}", "dev", n.veth1)
    r = ping(n.ns1, INNER[4][1], count=1, wait=2)
    assert r.returncode == 0, "the first packet after the address went is lost:\n" + (
        r.stdout + n.logs())
    assert n.endpoint(n.d2) == hostport(MOVED[family], PORT1)


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_sticky_source_replies_to_sender(n: Net, family: int,
                                         request: pytest.FixtureRequest) -> None:
    """netns.sh's reply-to-sender: ns1 has two addresses; whichever one wg2 sends to, wg1's
    replies and then its own packets leave from it, so wg2's endpoint for wg1 stays there
    (the route's preferred source would be the first address)."""
    upstream_v6_sticky(n, family, request)
    n.ns1.run("ip", "addr", "add", f"{EXTRA[family]}/{PREFIX[family]}", "dev", n.veth1,
              "nodad")
    for address in (VETH[family][0], EXTRA[family]):
        n.d2.wg("set", n.d2.ifname, "peer", b64(n.d1.public_key), "endpoint",
                hostport(address, PORT1))
        assert_ping(n, n.ns2, INNER[4][0])
        assert n.endpoint(n.d2) == hostport(address, PORT1), n.logs()
    # wg1 now sends on its own, several times: still from the address wg2 used.
    assert_ping(n, n.ns1, INNER[4][1], "-i", "0.2", count=3)
    assert n.endpoint(n.d2) == hostport(EXTRA[family], PORT1), n.logs()


def udp_datagram(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying a UDP datagram (UDP checksum 0: none, valid for IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64,
                         socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    checksum = sum(struct.unpack("!10H", header))
    checksum = (checksum & 0xFFFF) + (checksum >> 16)
    checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
    return header[:10] + struct.pack("!H", checksum) + header[12:] + udp


def capture_transport(n: Net, timeout: float = 5.0) -> bytes:
    """One transport data message wg2 sends to wg1 (sniffed on veth2 while ns2 pings)."""
    # ETH_P_ALL: outgoing frames reach only the taps of all protocols.
    sniffer = n.ns2.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    with sniffer:
        sniffer.bind((n.veth2, 0))
        sniffer.settimeout(0.5)
        pinger = n.ns2.popen("ping", "-c", "3", "-i", "0.2", "-W", "1", INNER[4][0],
                             stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    frame, meta = sniffer.recvfrom(65535)
                except socket.timeout:
                    continue
                if meta[2] != socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                    continue
                ip = frame[14:]
                ihl = (ip[0] & 15) * 4
                if ip[9] != socket.IPPROTO_UDP:
                    continue
                sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
                payload = ip[ihl + 8:]
                if (sport, dport) == (PORT2, PORT1) and payload[:1] == b"\x04" and \
                        len(payload) > 32:
                    return bytes(payload)
        finally:
            pinger.wait(10)
    raise AssertionError("no transport data message from wg2 seen on veth2" + n.logs())


def test_sticky_source_not_moved_by_spoofed_datagrams(n: Net) -> None:
    """wg1's remembered source (10.0.0.11, where wg2 sends) is not moved by datagrams from
    wg2's address and port to wg1's other address (10.0.0.1): junk, a forged transport
    message with the session's receiver index, and a replay of a real one. After each, wg1
    pings on its own and wg2 must still see it at 10.0.0.11."""
    n.ns1.run("ip", "addr", "add", f"{EXTRA[4]}/24", "dev", n.veth1, "nodad")
    n.d2.wg("set", n.d2.ifname, "peer", b64(n.d1.public_key), "endpoint",
            f"{EXTRA[4]}:{PORT1}")
    assert_ping(n, n.ns2, INNER[4][0])
    real = capture_transport(n)
    receiver_index = real[4:8]
    counter = struct.unpack("<Q", real[8:16])[0]
    spoofs = {
        "junk": b"\x04\x00\x00\x00" + os.urandom(4) + os.urandom(40),
        "forged": b"\x04\x00\x00\x00" + receiver_index + struct.pack("<Q", counter + 1000)
        + os.urandom(len(real) - 16),
        "replayed": real,
    }
    raw = n.ns2.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with raw:
        for label, payload in spoofs.items():
            raw.sendto(udp_datagram(VETH[4][1], PORT2, VETH[4][0], PORT1, payload),
                       (VETH[4][0], 0))
            time.sleep(0.2)
            assert_ping(n, n.ns1, INNER[4][1])
            assert n.endpoint(n.d2) == f"{EXTRA[4]}:{PORT1}", (
                f"after a {label} datagram to {VETH[4][0]}, wg1 sends from elsewhere"
                + n.logs())

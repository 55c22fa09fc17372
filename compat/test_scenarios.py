"""Scenarios of the kernel's tools/testing/selftests/wireguard/netns.sh and wireguard-go's
tests/netns.sh, in their loopback topology, for each pair (issue 8, item 5):

    ns1: wg1 (192.168.241.1, fd00::1)   ns0: both daemons, their UDP sockets on lo   ns2: wg2
                                             (wg1 port 10001, wg2 port 10002)

Each daemon is started in ns0 and its TUN moved to ns1 or ns2, so the outer transport
runs over ns0's loopback (127.0.0.1 or ::1) and the inner traffic between ns1 and ns2.
One topology per pair serves the whole module; every test starts from the same baseline
(`Topology.reset`: `wg setconf` of both sides, with a preshared key and both endpoints, so
sessions and counters start from zero), and leaves it as it likes.

Pairs: `wgpy-wgpy`, and `wgpy-wireguard-go` with wgpy as wg1. Where a scenario has a side
that is checked (the side that filters, changes its key, goes down), that side is wg1, wgpy.

Written from the scripts' descriptions; none of their code is used. The scenarios of the
other topologies (link down and up, route MTU, NAT, multihomed, each daemon in its TUN's
namespace) are in test_scenarios_net.py, the single-interface ones (low-order keys, IPC
stress) in test_scenarios_ipc.py; the matrix is compat/matrix.py.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from compat.lab import Daemon, Lab, Namespace, b64
from wgpy import crypto

pytestmark = pytest.mark.root

PAIRS = {"wgpy-wgpy": ("wgpy", "wgpy"), "wgpy-wireguard-go": ("wgpy", "wireguard-go"),
         # today's wireguard-go (compat/upstream.py): TUN TSO/GRO and UDP GSO/GRO bursts
         "wgpy-upstream": ("wgpy", "wireguard-go-upstream")}
PORT1, PORT2 = 10001, 10002
INNER = {4: ("192.168.241.1", "192.168.241.2"), 6: ("fd00::1", "fd00::2")}
LOOPBACK = {4: "127.0.0.1", 6: "::1"}
ORIG_MTU = 1420
BIG_MTU = 34816 - 1500 + ORIG_MTU  # netns.sh's big MTU
ROAM_V4 = "127.212.121.99"  # ns0's loopback address after 127.0.0.1 is removed (netns.sh)
COMMAND_TIMEOUT = 30.0
IPERF_SECONDS = 2
WAIT = 5.0  # bounded waits for a state to show up


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ping(ns: Namespace, target: str, *opts: str, count: int = 1, wait: int = 2
         ) -> subprocess.CompletedProcess[str]:
    """`ping -c COUNT -W WAIT` (bounded overall by -w), not checked."""
    deadline = [] if "-w" in opts else ["-w", str(wait + count + 5)]
    argv = ["ping", *(["-6"] if ":" in target else []), "-c", str(count), "-W", str(wait),
            *deadline, *opts, target]
    return ns.run(*argv, check=False, timeout=COMMAND_TIMEOUT + count)


def ping_counts(output: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, f"no ping summary in:\n{output}"
    return int(m[1]), int(m[2])


def eventually(predicate: Callable[[], object], timeout: float = WAIT,
               interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class Topology:
    lab: Lab
    pair: str
    ns0: Namespace
    ns1: Namespace
    ns2: Namespace
    d1: Daemon
    d2: Daemon
    psk: bytes = field(default_factory=lambda: crypto.generate_private_key())

    @property
    def sides(self) -> tuple[tuple[Namespace, Daemon], tuple[Namespace, Daemon]]:
        return (self.ns1, self.d1), (self.ns2, self.d2)

    def logs(self) -> str:
        return "".join(f"\n--- wg{i} {d.impl} {d.ifname} log tail ---\n{d.log_tail(25)}"
                       for i, d in ((1, self.d1), (2, self.d2)))

    def keyfile(self, name: str, key: bytes) -> str:
        path = self.lab.tmp / name
        path.write_text(b64(key) + "\n")
        path.chmod(0o600)
        return str(path)

    def conf(self, d: Daemon, port: int, other: Daemon, allowed: str, endpoint: str) -> str:
        path = self.lab.tmp / f"{d.ifname}.conf"
        path.write_text(
            f"[Interface]\nPrivateKey = {b64(d.private_key)}\nListenPort = {port}\n\n"
            f"[Peer]\nPublicKey = {b64(other.public_key)}\nPresharedKey = {b64(self.psk)}\n"
            f"AllowedIPs = {allowed}\nEndpoint = {endpoint}\n")
        path.chmod(0o600)
        return str(path)

    def reset(self, outer: int = 4) -> None:
        """The baseline: ns0's loopback as netns.sh starts it, MTU, link up, and both sides
        configured afresh by `wg setconf` (new peers: no session, counters at zero)."""
        lo = self.ns0.run("ip", "-o", "addr", "show", "dev", "lo").stdout
        if ROAM_V4 in lo:
            self.ns0.run("ip", "addr", "del", f"{ROAM_V4}/8", "dev", "lo")
        if "127.0.0.1/8" not in lo:
            self.ns0.run("ip", "addr", "add", "127.0.0.1/8", "dev", "lo")
        self.ns0.run("nft", "flush", "ruleset")
        host = LOOPBACK[outer]
        for (ns, d), (_, other), port, other_port, side in (
                (self.sides[0], self.sides[1], PORT1, PORT2, 1),
                (self.sides[1], self.sides[0], PORT2, PORT1, 0)):
            allowed = f"{INNER[4][side]}/32, {INNER[6][side]}/128"
            d.wg("setconf", d.ifname,
                 self.conf(d, port, other, allowed, hostport(host, other_port)))
            d.port = port
            ns.run("ip", "link", "set", d.ifname, "mtu", str(ORIG_MTU), "up")
            # (again: a link taken down loses its IPv6 addresses)
            ns.run("ip", "addr", "replace", f"{INNER[4][1 - side]}/24", "dev", d.ifname)
            ns.run("ip", "addr", "replace", f"{INNER[6][1 - side]}/112", "dev", d.ifname,
                   "nodad")

    def transfer(self, d: Daemon) -> tuple[int, int]:
        """(rx, tx) bytes of d's one peer, from `wg show IF transfer`."""
        fields = d.wg("show", d.ifname, "transfer").stdout.split()
        assert len(fields) == 3, fields
        return int(fields[1]), int(fields[2])

    def endpoint(self, d: Daemon, peer: Daemon | bytes | None = None) -> str:
        """The endpoint `d` has for `peer` (default: the other side)."""
        other = peer if peer is not None else (self.d2 if d is self.d1 else self.d1)
        key = b64(other.public_key if isinstance(other, Daemon) else other)
        for line in d.wg("show", d.ifname, "endpoints").stdout.splitlines():
            pub, _, ep = line.partition("\t")
            if pub == key:
                return ep
        return ""

    def latest_handshake(self, d: Daemon, peer: bytes | None = None) -> int:
        other = self.d2 if d is self.d1 else self.d1
        key = b64(peer if peer is not None else other.public_key)
        for line in d.wg("show", d.ifname, "latest-handshakes").stdout.splitlines():
            pub, _, value = line.partition("\t")
            if pub == key:
                return int(value)
        return 0


def build(lab: Lab, pair: str) -> Topology:
    impl1, impl2 = PAIRS[pair]
    ns0, ns1, ns2 = lab.namespace("s0"), lab.namespace("s1"), lab.namespace("s2")
    d1, d2 = lab.daemon(ns0, impl1), lab.daemon(ns0, impl2)
    lab.move(d1, ns1)
    lab.move(d2, ns2)
    # wgpy follows a moved TUN into its new namespace (wgpy/link/netlink.py), where it is
    # down until `reset` sets it up, as the kernel's device would be. Wait for the move to
    # be seen, so no test starts before wgpy watches the right namespace.
    for d in (d1, d2):
        if d.impl == "wgpy":
            assert eventually(lambda: "moved to another network namespace"
                              in d.log.read_text(errors="replace")), d.log_tail()
    return Topology(lab, pair, ns0, ns1, ns2, d1, d2)


@pytest.fixture(scope="module", params=list(PAIRS), ids=list(PAIRS))
def topo(request: pytest.FixtureRequest) -> Iterator[Topology]:
    from compat.conftest import require_root

    require_root()
    with Lab() as lab:
        yield build(lab, request.param)


@pytest.fixture
def t(topo: Topology) -> Topology:
    """The module's topology, reset to the baseline (outer IPv4) for this test."""
    for d in (topo.d1, topo.d2):
        assert d.alive(), f"{d.impl} {d.ifname} is not running:\n{d.log_tail()}"
    topo.reset()
    return topo


# --- helpers for traffic ------------------------------------------------------------------------

def udp_listener(ns: Namespace, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = ns.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, port))
    return sock


def udp_send(ns: Namespace, host: str, port: int, data: bytes) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with ns.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, (host, port))


def received(sock: socket.socket, timeout: float) -> bytes | None:
    sock.settimeout(timeout)
    try:
        return sock.recv(2048)
    except socket.timeout:
        return None


class HasLogs(Protocol):
    def logs(self) -> str: ...


def assert_ping(t: HasLogs, src: Namespace, target: str, *opts: str, count: int = 1,
                wait: int = 2) -> None:
    r = ping(src, target, *opts, count=count, wait=wait)
    assert r.returncode == 0, (f"ping {target} from {src.name} failed:\n"
                              f"{r.stdout}{r.stderr}{t.logs()}")
    sent, got = ping_counts(r.stdout)
    assert sent == got == count, f"{r.stdout}{t.logs()}"


def link_stats(ns: Namespace, dev: str) -> dict[str, int]:
    """rx/tx bytes and packets of `dev` from `ip -stats -json link show`."""
    data = json.loads(ns.run("ip", "-stats", "-json", "link", "show", "dev", dev).stdout)[0]
    stats = data["stats64"]
    return {"rx_bytes": stats["rx"]["bytes"], "rx_packets": stats["rx"]["packets"],
            "tx_bytes": stats["tx"]["bytes"], "tx_packets": stats["tx"]["packets"]}


# --- the topology itself ------------------------------------------------------------------------

def test_tuns_in_their_own_namespaces(t: Topology) -> None:
    """netns.sh's topology: the daemons and their UDP sockets in ns0, the interfaces in ns1
    and ns2; v4 and v6 inside, both ways, handshakes on both sides."""
    for ns, d in t.sides:
        assert ns.run("ip", "link", "show", d.ifname, check=False).returncode == 0
        assert t.ns0.run("ip", "link", "show", d.ifname, check=False).returncode != 0
    udp = t.ns0.run("ss", "-Hunl").stdout
    for port in (PORT1, PORT2):
        assert f":{port} " in udp, f"port {port} not bound in ns0:\n{udp}"
    for family in (4, 6):
        assert_ping(t, t.ns1, INNER[family][1])
        assert_ping(t, t.ns2, INNER[family][0])
    for d in (t.d1, t.d2):
        assert t.latest_handshake(d) > 0, t.logs()


def test_preshared_key(t: Topology) -> None:
    """Both sides hold the PSK and the tunnel carries traffic; with a different PSK on one
    side no handshake completes."""
    for d in (t.d1, t.d2):
        shown = d.wg("show", d.ifname, "preshared-keys").stdout.split()
        assert shown[1:] == [b64(t.psk)], shown
    assert_ping(t, t.ns1, INNER[4][1])
    other_psk = t.keyfile("other.psk", crypto.generate_private_key())
    # A new peer entry (remove, add) so that no session survives on either side.
    for d, other, ip in ((t.d1, t.d2, INNER[4][1]), (t.d2, t.d1, INNER[4][0])):
        d.wg("set", d.ifname, "peer", b64(other.public_key), "remove")
        d.wg("set", d.ifname, "peer", b64(other.public_key), "allowed-ips", f"{ip}/32",
             "endpoint", hostport("127.0.0.1", other.port),
             *(("preshared-key", other_psk) if d is t.d1 else
               ("preshared-key", t.keyfile("psk", t.psk))))
    r = ping(t.ns1, INNER[4][1], "-w", "3", count=2, wait=1)
    assert ping_counts(r.stdout)[1] == 0, f"traffic with mismatched PSKs:\n{r.stdout}"
    assert t.latest_handshake(t.d1) == 0 and t.latest_handshake(t.d2) == 0, t.logs()


# --- counters -----------------------------------------------------------------------------------

ECHO_V4 = 84  # IPv4 header 20 + ICMP 8 + 56 bytes of payload
INITIATION, RESPONSE, KEEPALIVE = 148, 92, 32
DATA_84 = 16 + 96 + 16  # header, 84 bytes padded to 96, tag


def test_counters(t: Topology) -> None:
    """netns.sh: after 10 flood pings from ns2 on a fresh session, `wg show transfer` is
    exactly the handshake and the ten data messages each way (the initiator may have sent
    one keepalive), and `ip -stats link` counts the inner packets each interface carried."""
    before = {d.ifname: link_stats(ns, d.ifname) for ns, d in t.sides}
    r = ping(t.ns2, INNER[4][0], "-f", count=10, wait=1)
    assert r.returncode == 0 and ping_counts(r.stdout) == (10, 10), r.stdout + t.logs()
    data = 10 * DATA_84
    rx2, tx2 = t.transfer(t.d2)  # ns2 pinged first: wg2 initiated
    rx1, tx1 = t.transfer(t.d1)
    assert rx2 == RESPONSE + data, (rx2, tx2, t.logs())
    assert tx2 in (INITIATION + data, INITIATION + data + KEEPALIVE), (rx2, tx2)
    assert tx1 == rx2 and rx1 == tx2, ((rx1, tx1), (rx2, tx2))
    for ns, d in t.sides:
        after = link_stats(ns, d.ifname)
        delta = {k: after[k] - before[d.ifname][k] for k in after}
        # The TUN's tx is what the kernel handed the daemon, rx what the daemon wrote.
        assert delta == {"rx_bytes": 10 * ECHO_V4, "rx_packets": 10,
                         "tx_bytes": 10 * ECHO_V4, "tx_packets": 10}, (d.ifname, delta)


# --- flood ping, big MTU, iperf3 ----------------------------------------------------------------

FLOOD_COUNT = 100


@pytest.mark.parametrize("outer", [4, 6], ids=["outer4", "outer6"])
def test_flood_ping(t: Topology, outer: int) -> None:
    """`ping -f -c 100` v4 and v6 inside, both ways, over v4 or v6 outside; nothing lost."""
    t.reset(outer)
    for family in (4, 6):
        for src, target in ((t.ns2, INNER[family][0]), (t.ns1, INNER[family][1])):
            r = ping(src, target, "-f", count=FLOOD_COUNT, wait=1)
            assert r.returncode == 0, r.stdout + r.stderr + t.logs()
            assert ping_counts(r.stdout) == (FLOOD_COUNT, FLOOD_COUNT), r.stdout
    assert t.endpoint(t.d1) == hostport(LOOPBACK[outer], PORT2)
    assert t.endpoint(t.d2) == hostport(LOOPBACK[outer], PORT1)


def test_big_mtu(t: Topology) -> None:
    """netns.sh repeats its tests with MTU 34736: 30,000-byte pings v4 and v6 pass whole."""
    for ns, d in t.sides:
        ns.run("ip", "link", "set", d.ifname, "mtu", str(BIG_MTU))
    for family in (4, 6):
        for src, target in ((t.ns1, INNER[family][1]), (t.ns2, INNER[family][0])):
            assert_ping(t, src, target, "-M", "do", "-s", "30000", "-i", "0.2", count=3)


def iperf3(t: Topology, server_ns: Namespace, client_ns: Namespace, address: str,
           udp: bool) -> dict:  # type: ignore[type-arg]
    server = server_ns.popen("iperf3", "-s", "-1", "-B", address, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert eventually(lambda: ":5201 " in server_ns.run("ss", "-Hltn").stdout
                          or server.poll() is not None), "iperf3 server not listening"
        assert server.poll() is None, "iperf3 server exited"
        extra = ["-u", "-b", "200M", "-l", "1200"] if udp else []
        r = client_ns.run("iperf3", "-c", address, "-t", str(IPERF_SECONDS), "-J",
                          "--connect-timeout", "5000", *extra, check=False,
                          timeout=IPERF_SECONDS + 25)
        try:
            data = json.loads(r.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"iperf3 gave no JSON: {r.stdout}{r.stderr}{t.logs()}")
        assert "error" not in data, f"iperf3: {data['error']}{t.logs()}"
        return data["end"]  # type: ignore[no-any-return]
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


@pytest.mark.parametrize("inner", [4, 6], ids=["inner4", "inner6"])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("outer", [4, 6], ids=["outer4", "outer6"])
def test_iperf3(t: Topology, outer: int, proto: str, inner: int) -> None:
    """iperf3 for 2 s (netns.sh: 3 s), TCP from wg1 to wg2, UDP from wg2 to wg1, v4 or v6
    inside, v4 or v6 outside: the run completes and data arrives (no speed is asserted)."""
    t.reset(outer)
    if proto == "tcp":
        end = iperf3(t, t.ns2, t.ns1, INNER[inner][1], udp=False)
        got = end["sum_received"]["bytes"]
        print(f"\n{t.pair} tcp outer{outer} inner{inner}: "
              f"{end['sum_received']['bits_per_second'] / 1e6:.0f} Mbit/s")
        assert got > 0, end
    else:
        end = iperf3(t, t.ns1, t.ns2, INNER[inner][0], udp=True)
        total = end["sum"]
        delivered = total["packets"] - total["lost_packets"]
        print(f"\n{t.pair} udp outer{outer} inner{inner}: {delivered}/{total['packets']} "
              "datagrams delivered")
        assert delivered > 0, total
    assert t.endpoint(t.d1) == hostport(LOOPBACK[outer], PORT2)


# --- roaming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("roamer", [1, 2], ids=["wg1-roams", "wg2-roams"])
def test_roaming(t: Topology, roamer: int) -> None:
    """netns.sh: ns0's 127.0.0.1 is replaced by 127.212.121.99 and the roaming side moves to
    port 9999; one ping from it and the other side's endpoint for it is the new address and
    port. Then over IPv6, port 9998, endpoint [::1]."""
    (rns, rd), (_, sd) = t.sides if roamer == 1 else t.sides[::-1]
    target = INNER[6][1] if roamer == 1 else INNER[6][0]
    assert_ping(t, rns, target)  # a session, and the endpoints, before anything moves
    t.ns0.run("ip", "-4", "addr", "del", "127.0.0.1/8", "dev", "lo")
    t.ns0.run("ip", "-4", "addr", "add", f"{ROAM_V4}/8", "dev", "lo")
    rd.wg("set", rd.ifname, "listen-port", "9999")
    rd.wg("set", rd.ifname, "peer", b64(sd.public_key), "endpoint",
          hostport("127.0.0.1", sd.port))
    assert_ping(t, rns, target)
    assert t.endpoint(sd) == f"{ROAM_V4}:9999", t.logs()

    target4 = INNER[4][1] if roamer == 1 else INNER[4][0]
    rd.wg("set", rd.ifname, "listen-port", "9998")
    rd.wg("set", rd.ifname, "peer", b64(sd.public_key), "endpoint", hostport("::1", sd.port))
    assert_ping(t, rns, target4)
    assert t.endpoint(sd) == "[::1]:9998", t.logs()


# --- reverse-path filtering ---------------------------------------------------------------------

def test_reverse_path_filter(t: Topology) -> None:
    """netns.sh's crypto-RP filter: wg1's peer wg2 owns 192.168.241.0/24 and a datagram from
    192.168.241.2 arrives; once another peer owns the more specific 192.168.241.2/32, the
    same datagram from wg2 is dropped, while wg2's new endpoint (port 9997) is still learnt
    from the authenticated packet; removing that peer restores delivery."""
    t.reset(6)
    t.d1.wg("set", t.d1.ifname, "peer", b64(t.d2.public_key), "allowed-ips", "192.168.241.0/24")
    with udp_listener(t.ns1, INNER[4][0], 1111) as sock:
        udp_send(t.ns2, INNER[4][0], 1111, b"X")
        assert received(sock, 3.0) == b"X", t.logs()

        more_specific = crypto.public_key(crypto.generate_private_key())
        t.d1.wg("set", t.d1.ifname, "peer", b64(more_specific), "allowed-ips",
                "192.168.241.2/32")
        t.d2.wg("set", t.d2.ifname, "listen-port", "9997")
        udp_send(t.ns2, INNER[4][0], 1111, b"Y")
        assert received(sock, 1.5) is None, "delivered from an address wg2 does not own"
        assert eventually(lambda: t.endpoint(t.d1) == "[::1]:9997"), t.endpoint(t.d1)

        t.d1.wg("set", t.d1.ifname, "peer", b64(more_specific), "remove")
        assert t.endpoint(t.d1) == "[::1]:9997"
        udp_send(t.ns2, INNER[4][0], 1111, b"Z")
        assert received(sock, 3.0) == b"Z", t.logs()


# --- keys ---------------------------------------------------------------------------------------

def test_private_key_change_then_fresh_handshake(t: Topology) -> None:
    """netns.sh: after a ping, wg1 takes a new private key; wg2 replaces wg1's old public
    key by the new one; the next ping from wg1 succeeds at once on a new handshake."""
    assert_ping(t, t.ns1, INNER[4][1])
    key3 = crypto.generate_private_key()
    pub3 = crypto.public_key(key3)
    t.d1.wg("set", t.d1.ifname, "private-key", t.keyfile("key3", key3))
    t.d2.wg("set", t.d2.ifname, "peer", b64(pub3), "preshared-key", t.keyfile("psk", t.psk),
            "allowed-ips", f"{INNER[4][0]}/32", "peer", b64(t.d1.public_key), "remove")
    t.d1.private_key = key3
    assert t.d1.wg("show", t.d1.ifname, "public-key").stdout.strip() == b64(pub3)
    assert_ping(t, t.ns1, INNER[4][1], wait=3)
    assert t.latest_handshake(t.d2, pub3) > 0, t.logs()


def test_forced_rekey(t: Topology) -> None:
    """A fresh handshake over a live session: wg2 drops its peer entry for wg1 and adds it
    again, so it initiates while wg1 still holds the old session; wg1 must take the new
    keypair and traffic flows both ways (the time-driven rekey after 120 s is
    test_interop.py::test_rekey_after_time_with_traffic)."""
    assert_ping(t, t.ns1, INNER[4][1])
    before = t.latest_handshake(t.d1)
    time.sleep(1.1)  # handshake times have a resolution of one second
    key = b64(t.d1.public_key)
    t.d2.wg("set", t.d2.ifname, "peer", key, "remove")
    t.d2.wg("set", t.d2.ifname, "peer", key, "preshared-key", t.keyfile("psk", t.psk),
            "allowed-ips", f"{INNER[4][0]}/32,{INNER[6][0]}/128",
            "endpoint", hostport("127.0.0.1", PORT1))
    assert_ping(t, t.ns2, INNER[4][0], wait=3)
    assert_ping(t, t.ns1, INNER[6][1])
    assert t.latest_handshake(t.d1) > before, t.logs()


# --- the moved TUN's MTU and link state ---------------------------------------------------------

# wgpy follows the TUN into the namespace it was moved to (wgpy/link/netlink.py), as the
# kernel's device is told its state there; Debian's wireguard-go does not.


def test_moved_tun_mtu_is_followed(t: Topology) -> None:
    """After the TUN moved, `ip link set mtu 1300` still bounds wg1's padding: no datagram
    from wg1 is longer than 1300 + 60 bytes (IPv4, UDP, WireGuard header and tag)."""
    for ns, d in t.sides:
        ns.run("ip", "link", "set", d.ifname, "mtu", "1300")
    t.ns0.run("nft", "add", "table", "inet", "scen")
    t.ns0.run("nft", "add", "chain", "inet", "scen", "in",
              "{ type filter hook input priority 0; }")
    t.ns0.run("nft", "add", "rule", "inet", "scen", "in", "udp", "sport", str(PORT1),
              "meta", "length", "gt", "1360", "counter")
    time.sleep(0.3)  # the MTU event, if it is seen at all
    assert_ping(t, t.ns1, INNER[4][1], "-s", "1269")
    rules = t.ns0.run("nft", "list", "table", "inet", "scen").stdout
    assert "counter packets 0 " in rules, rules + t.logs()


def test_moved_tun_link_down_answers_nothing(t: Topology) -> None:
    """After the TUN moved, `ip link set down` in ns1 still stops wg1: no handshake answered."""
    t.ns1.run("ip", "link", "set", t.d1.ifname, "down")
    time.sleep(0.3)
    r = ping(t.ns2, INNER[4][0], "-w", "2", count=1, wait=2)
    assert ping_counts(r.stdout)[1] == 0, r.stdout
    assert t.latest_handshake(t.d2) == 0, "a handshake was answered while down" + t.logs()

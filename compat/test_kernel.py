"""wgpy against kernel WireGuard (Debian's kernel in a QEMU VM, compat/kernel.py).

Every test gets a fresh wgpy daemon with fresh keys, next to a VM booted once for this module
whose wg0 has no peer when the test begins. The pair is in every test id (`wgpy-kernel`), so
that the scenario x pair matrix can be read from the ids.

1. Handshake initiated by either side, over outer IPv4 and IPv6: only the initiator knows the
   other's endpoint, the responder learns it from the initiation.
2. Ping, inner IPv4 and IPv6, each way; afterwards each side's `wg show transfer` equals the
   other's (both count whole datagrams, handshakes included); `ip -stats link`: wgpy wrote
   every packet the kernel sent to its TUN, and the kernel's wg0 counts wgpy's datagrams.
3. Preshared key, with either side initiating; a mismatched key gives no session.
4. A fresh handshake while the other side holds the old session (forced, not after 120 s):
   the peer removed and re-added on one side (that side initiates and the other must rotate
   to the new keypair), or wgpy's private key changed (its sessions must go with the old key).
5. Persistent keepalive from either side: 32-byte keepalives arrive about every second with
   no traffic, and the receiver sends nothing back.
6. Roaming: wgpy's underlay address and port change and the kernel learns the new endpoint
   from authenticated data; the kernel's port changes and wgpy learns it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Callable

import pytest

from compat.kernel import (HOST_OUTER, PORT, TAP, VM_INNER, VM_OUTER, WGPY_INNER, KernelPair,
                           endpoint)
from compat.lab import b64
from wgpy import crypto
from wgpy.testing.lab import PeerDump

pytestmark = pytest.mark.root

PAIR = pytest.mark.parametrize("pair", ["wgpy-kernel"])
OUTERS = {"outer4": "ipv4", "outer6": "ipv6"}
INNERS = {"v4": "ipv4", "v6": "ipv6"}
KEEPALIVE_SIZE = 32  # header 16 + Poly1305 tag 16, no payload


def ping_counts(output: str) -> tuple[int, int]:
    """(transmitted, received) from iputils' or busybox's ping summary."""
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    assert m, f"no ping summary in:\n{output}"
    return int(m[1]), int(m[2])


def assert_ping(r: subprocess.CompletedProcess[str], expected: int, p: KernelPair,
                what: str) -> None:
    sent, received = ping_counts(r.stdout)
    assert received == sent == expected, f"{what}:\n{r.stdout}{r.stderr}{p.logs()}"


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def settled_dumps(p: KernelPair) -> tuple[PeerDump, PeerDump]:
    """Both sides' dumps, read while nothing moved (two equal reads on each side)."""
    for _ in range(20):
        w1, k1 = p.wgpy_dump(), p.kernel_dump()
        w2, k2 = p.wgpy_dump(), p.kernel_dump()
        if w1 == w2 and k1 == k2:
            return w2, k2
        time.sleep(0.5)
    raise AssertionError(f"counters never settled: {w2} {k2}")


def wgpy_link_stats(p: KernelPair) -> tuple[int, int]:
    """(rx_packets, tx_packets) of wgpy's TUN, from `ip -stats link`."""
    out = p.ns.run("ip", "-j", "-s", "link", "show", "dev", p.wgpy.ifname).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["rx"]["packets"]), int(stats["tx"]["packets"])


def kernel_link_stats(p: KernelPair) -> tuple[int, int]:
    """(rx_packets, tx_packets) of the kernel's wg0."""
    out = p.vm.exec("cat /sys/class/net/wg0/statistics/rx_packets "
                    "/sys/class/net/wg0/statistics/tx_packets").stdout.split()
    return int(out[0]), int(out[1])


# --- 1. handshake from either side ----------------------------------------------------------------

@pytest.mark.parametrize("outer", list(OUTERS))
@pytest.mark.parametrize("initiator", ["init-wgpy", "init-kernel"])
@PAIR
def test_kernel_handshake(kernel_pair: KernelPair, pair: str, initiator: str,
                          outer: str) -> None:
    p, family = kernel_pair, OUTERS[outer]
    wgpy_end, kernel_end = endpoint(HOST_OUTER[family]), endpoint(VM_OUTER[family])
    if initiator == "init-wgpy":
        p.kernel_peer()  # the kernel cannot initiate: it has no endpoint
        p.wgpy_peer(endpoint=kernel_end)
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel")
        assert p.kernel_dump().endpoint == wgpy_end, p.logs()
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> wgpy")
    else:
        p.wgpy_peer()  # wgpy cannot initiate
        p.kernel_peer(endpoint=wgpy_end)
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> wgpy")
        assert p.wgpy_dump().endpoint == kernel_end, p.logs()
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel")
    w, k = settled_dumps(p)
    assert w.latest_handshake > 0 and k.latest_handshake > 0, (w, k)
    assert w.rx_bytes > 0 and w.tx_bytes > 0 and k.rx_bytes > 0 and k.tx_bytes > 0, (w, k)


# --- 2. ping, transfer and link counters ----------------------------------------------------------

@pytest.mark.parametrize("inner", list(INNERS))
@PAIR
def test_kernel_ping(kernel_pair: KernelPair, pair: str, inner: str) -> None:
    p, family = kernel_pair, INNERS[inner]
    p.kernel_peer(endpoint=endpoint(HOST_OUTER["ipv4"]))
    p.wgpy_peer(endpoint=endpoint(VM_OUTER["ipv4"]))
    w_rx0, _ = wgpy_link_stats(p)
    k_rx0, k_tx0 = kernel_link_stats(p)
    count = 5
    assert_ping(p.ping_from_wgpy(VM_INNER[family], "-c", str(count), "-i", "0.2", "-W", "2"),
                count, p, f"wgpy -> kernel {family}")
    assert_ping(p.ping_from_kernel(WGPY_INNER[family], count=count), count, p,
                f"kernel -> wgpy {family}")
    # Read before any passive keepalive (10 s after the last data received without reply).
    w_rx1, _ = wgpy_link_stats(p)
    k_rx1, k_tx1 = kernel_link_stats(p)
    # Each side sent `count` requests and `count` replies through the tunnel. wgpy wrote the
    # kernel's to its TUN; the kernel's wg0 also counts the handshake messages as packets
    # (wgpy's initiation received, its response sent).
    assert w_rx1 - w_rx0 == 2 * count, (w_rx0, w_rx1)
    assert (k_rx1 - k_rx0, k_tx1 - k_tx0) == (2 * count + 1, 2 * count + 1), (
        f"kernel wg0 rx/tx packets {k_rx0}/{k_tx0} -> {k_rx1}/{k_tx1}{p.logs()}")
    w, k = settled_dumps(p)
    # Both count whole datagrams (handshake messages, data, keepalives) as sent and received.
    assert (w.tx_bytes, w.rx_bytes) == (k.rx_bytes, k.tx_bytes), (
        f"wgpy tx/rx {w.tx_bytes}/{w.rx_bytes}, kernel rx/tx {k.rx_bytes}/{k.tx_bytes}"
        f"{p.logs()}")


# --- 3. preshared key -----------------------------------------------------------------------------

@pytest.mark.parametrize("initiator", ["init-wgpy", "init-kernel"])
@PAIR
def test_kernel_psk(kernel_pair: KernelPair, pair: str, initiator: str) -> None:
    p = kernel_pair
    psk = b64(crypto.generate_private_key())  # any 32 random bytes
    wgpy_end, kernel_end = endpoint(HOST_OUTER["ipv4"]), endpoint(VM_OUTER["ipv4"])
    p.kernel_peer(psk=psk, endpoint=wgpy_end if initiator == "init-kernel" else None)
    p.wgpy_peer(psk=psk, endpoint=kernel_end if initiator == "init-wgpy" else None)
    if initiator == "init-wgpy":
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel, PSK")
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv6"]), 3, p, "kernel -> wgpy, PSK")
    else:
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> wgpy, PSK")
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv6"]), 3, p, "wgpy -> kernel, PSK")
    w, k = p.wgpy_dump(), p.kernel_dump()
    assert w.preshared_key == k.preshared_key == psk
    assert w.latest_handshake > 0 and k.latest_handshake > 0

    # The key is really mixed in: with different keys no session comes up.
    p.kernel_remove_peer()
    p.wgpy_remove_peer()
    other = b64(crypto.generate_private_key())
    p.kernel_peer(psk=psk, endpoint=wgpy_end if initiator == "init-kernel" else None)
    p.wgpy_peer(psk=other, endpoint=kernel_end if initiator == "init-wgpy" else None)
    if initiator == "init-wgpy":
        r = p.ping_from_wgpy(VM_INNER["ipv4"], "-c", "2", "-i", "0.5", "-w", "3")
    else:
        r = p.ping_from_kernel(WGPY_INNER["ipv4"], count=2, wait=3)
    assert ping_counts(r.stdout)[1] == 0, f"ping passed with mismatched PSKs:\n{r.stdout}"
    # The initiator cannot open the response; the responder's session is never confirmed by
    # data. Neither reports a handshake (the kernel's latest handshake is set only then).
    w, k = p.wgpy_dump(), p.kernel_dump()
    assert w.latest_handshake == 0 and k.latest_handshake == 0, (w, k)


# --- 4. a fresh handshake while the other side holds the old session ------------------------------

@pytest.mark.parametrize("how", ["wgpy-initiates", "kernel-initiates", "wgpy-key-change"])
@PAIR
def test_kernel_rekey(kernel_pair: KernelPair, pair: str, how: str) -> None:
    p = kernel_pair
    wgpy_end, kernel_end = endpoint(HOST_OUTER["ipv4"]), endpoint(VM_OUTER["ipv4"])
    p.kernel_peer(endpoint=wgpy_end)
    p.wgpy_peer(endpoint=kernel_end)
    # The first session is initiated by the side that will keep it.
    if how == "kernel-initiates":
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "first session, wgpy -> kernel")
    else:
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "first session, kernel")
    w0, k0 = p.wgpy_dump(), p.kernel_dump()
    assert w0.latest_handshake > 0 and k0.latest_handshake > 0
    time.sleep(1.1)  # latest-handshake has a resolution of one second

    if how == "wgpy-initiates":
        # wgpy forgets the peer; the kernel still holds its session and must accept a new
        # initiation from the same peer and move to the new keypair.
        p.wgpy_remove_peer()
        p.wgpy_peer(endpoint=kernel_end)
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel, new session")
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> wgpy, after")
        holder_before, holder_after = k0.latest_handshake, p.kernel_dump().latest_handshake
    elif how == "kernel-initiates":
        # The kernel forgets the peer; wgpy holds its session (in which it was the initiator)
        # and, as responder, must rotate to the kernel's new keypair.
        p.kernel_remove_peer()
        p.kernel_peer(endpoint=wgpy_end)
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> wgpy, new session")
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel, after")
        holder_before, holder_after = w0.latest_handshake, p.wgpy_dump().latest_handshake
    else:
        # wgpy's private key changes: its sessions belonged to the old key and must go; the
        # kernel only knows the new public key, so the next ping needs a fresh handshake.
        old_public = p.wgpy_public
        p.wgpy.private_key = crypto.generate_private_key()
        key = p.lab.tmp / f"{p.wgpy.ifname}.key"
        key.write_text(b64(p.wgpy.private_key) + "\n")
        p.wgpy.wg("set", p.wgpy.ifname, "private-key", str(key))
        p.vm.wg("set", "wg0", "peer", old_public, "remove")
        p.kernel_peer(endpoint=wgpy_end)
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel, new key")
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> wgpy, new key")
        holder_before, holder_after = w0.latest_handshake, p.wgpy_dump().latest_handshake
    assert holder_after > holder_before, (holder_before, holder_after, p.logs())


# --- 5. persistent keepalive ----------------------------------------------------------------------

@pytest.mark.parametrize("sender", ["from-kernel", "from-wgpy"])
@PAIR
def test_kernel_persistent_keepalive(kernel_pair: KernelPair, pair: str, sender: str) -> None:
    """With persistent-keepalive 1 on one side and no traffic at all, the keepalive set over
    the configuration interface starts the handshake, then 32-byte keepalives arrive about
    every second; the receiver answers none of them."""
    p = kernel_pair
    if sender == "from-kernel":
        p.wgpy_peer()
        p.kernel_peer(endpoint=endpoint(HOST_OUTER["ipv4"]), keepalive=1)
        receiver = p.wgpy_dump
    else:
        p.kernel_peer()
        p.wgpy_peer(endpoint=endpoint(VM_OUTER["ipv4"]), keepalive=1)
        receiver = p.kernel_dump
    assert wait_for(lambda: receiver().latest_handshake > 0, 10), (
        f"no handshake within 10 s of setting persistent-keepalive ({sender}){p.logs()}")
    time.sleep(1.5)  # past the first keepalive, which confirms the session
    d0, t0 = receiver(), time.monotonic()
    time.sleep(4)
    d1, t1 = receiver(), time.monotonic()
    received = d1.rx_bytes - d0.rx_bytes
    assert received % KEEPALIVE_SIZE == 0, f"{received} bytes is not keepalives only"
    keepalives = received // KEEPALIVE_SIZE
    assert 2 <= keepalives <= t1 - t0 + 2, (
        f"{keepalives} keepalives in {t1 - t0:.1f} s with an interval of 1 s{p.logs()}")
    assert d1.tx_bytes == d0.tx_bytes, f"the receiver answered keepalives: {d0} {d1}"


# --- 6. roaming -----------------------------------------------------------------------------------

MOVED_HOST = "10.242.0.3"
MOVED_PORT = PORT + 1


@pytest.mark.parametrize("mover", ["wgpy-moves", "kernel-moves"])
@PAIR
def test_kernel_roaming(kernel_pair: KernelPair, pair: str, mover: str) -> None:
    p = kernel_pair
    p.kernel_peer(endpoint=endpoint(HOST_OUTER["ipv4"]))
    p.wgpy_peer(endpoint=endpoint(VM_OUTER["ipv4"]))
    assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "before roaming")
    if mover == "wgpy-moves":
        try:
            # wgpy's host gets a new address (the old one goes) and wgpy a new port.
            p.ns.run("ip", "addr", "del", f"{HOST_OUTER['ipv4']}/24", "dev", TAP)
            p.ns.run("ip", "addr", "add", f"{MOVED_HOST}/24", "dev", TAP)
            p.wgpy.wg("set", p.wgpy.ifname, "listen-port", str(MOVED_PORT))
            assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> kernel, moved")
            assert p.kernel_dump().endpoint == f"{MOVED_HOST}:{MOVED_PORT}", p.logs()
            assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "kernel -> moved wgpy")
        finally:  # the old address back as the only (primary) one, for the next tests
            p.ns.run("ip", "addr", "del", f"{MOVED_HOST}/24", "dev", TAP, check=False)
            p.ns.run("ip", "addr", "replace", f"{HOST_OUTER['ipv4']}/24", "dev", TAP)
    else:
        # The kernel's port changes (the fixture's reset restores it).
        p.vm.wg("set", "wg0", "listen-port", str(MOVED_PORT))
        assert_ping(p.ping_from_kernel(WGPY_INNER["ipv4"]), 3, p, "moved kernel -> wgpy")
        assert p.wgpy_dump().endpoint == endpoint(VM_OUTER["ipv4"], MOVED_PORT), p.logs()
        assert_ping(p.ping_from_wgpy(VM_INNER["ipv4"]), 3, p, "wgpy -> moved kernel")


@PAIR
def test_kernel_peer_is_the_kernel_module(kernel_pair: KernelPair, pair: str) -> None:
    """The peer really is kernel WireGuard: wg0 is a `wireguard` link of the Debian kernel."""
    out = kernel_pair.vm.exec("uname -r; /usr/sbin/ip -d link show wg0; "
                              "cat /sys/module/wireguard/version")
    assert "wireguard" in out.stdout and "amd64" in out.stdout, out.stdout

"""Sticky source address, "sticky but not too sticky" (wireguard-go's tests/netns.sh).

wgpy answers from the local address its peer sent to. When that address is removed from the
host, the very next packet must still arrive: the send from the vanished address fails
(ENETUNREACH for IPv4) and goes again at once from the address routing picks (kernel
socket.c `send4`), and the peer roams to it.
"""

from __future__ import annotations

import time

import pytest

from compat.lab import Lab

pytestmark = pytest.mark.root


def _veth(ns) -> str:  # type: ignore[no-untyped-def]
    return ns.run("ip", "-o", "link", "show", "type", "veth").stdout.split(":")[1].strip() \
        .split("@")[0]


def test_first_packet_after_the_sticky_address_vanishes_arrives() -> None:
    with Lab() as lab:
        a, b = lab.namespace("ka"), lab.namespace("kb")
        lab.link(a, b, "192.168.91.1/24", "192.168.91.2/24")
        vb = _veth(b)
        b.run("ip", "addr", "add", "192.168.91.12/24", "dev", vb, "nodad")
        wa = lab.daemon(a, "wireguard-go")
        wb = lab.daemon(b, "wgpy")
        lab.configure(wa, "10.91.0.1/24", 51820)
        lab.configure(wb, "10.91.0.2/24", 51820)
        lab.peer(wb, wa, "10.91.0.1/32")
        lab.peer(wa, wb, "10.91.0.2/32", "192.168.91.12:51820")
        ping = a.run("ping", "-c", "2", "-i", "0.3", "-W", "2", "10.91.0.2", check=False)
        assert ping.returncode == 0, ping.stdout + wb.log_tail()
        endpoint = wa.wg("show", wa.ifname, "endpoints").stdout.split()[-1]
        assert endpoint == "192.168.91.12:51820", endpoint  # wgpy answered from .12
        b.run("ip", "addr", "del", "192.168.91.12/24", "dev", vb)
        # One packet, one chance: it leaves from .2 at once and wireguard-go roams to it.
        started = time.monotonic()
        ping = b.run("ping", "-c", "1", "-W", "2", "10.91.0.1", check=False)
        assert ping.returncode == 0, ping.stdout + wb.log_tail()
        assert time.monotonic() - started < 2.5
        endpoint = wa.wg("show", wa.ifname, "endpoints").stdout.split()[-1]
        assert endpoint == "192.168.91.2:51820", endpoint

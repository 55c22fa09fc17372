"""Big configurations through the stock `wg`, wgpy beside wireguard-go (root, namespaces).

What `wg show IF dump`, `wg showconf` and raw pipelined ``get`` requests print for many
peers with many allowed IPs must be what wireguard-go prints, after the normalization of
`compat.duo` (interface name, random port, peer order). No figure is asserted here: the
timings are `compat/bench_uapi.py`'s business.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from compat.duo import Duo, many_peers_config, peer_prefixes
from compat.lab import Lab, b64
from wgpy import crypto

pytestmark = pytest.mark.root

TIMEOUT = 120.0


@pytest.fixture
def duo() -> Iterator[Duo]:
    with Lab() as lab:
        w = lab.daemon(lab.namespace("sw"), "wgpy", env={"LOG_LEVEL": "error"})
        g = lab.daemon(lab.namespace("sg"), "wireguard-go", env={"LOG_LEVEL": "error"})
        yield Duo(lab, w, g)


def keys(n: int) -> list[str]:
    return [b64(crypto.public_key(crypto.generate_private_key())) for _ in range(n)]


def test_thousand_peers_by_ten_dump_as_the_reference(duo: Duo) -> None:
    private = b64(crypto.generate_private_key())
    publics = keys(1000)
    text = many_peers_config(publics, 10, private)
    # A few prefixes whose printing has corners: IPv4-mapped, IPv4-compatible, runs of
    # zeros to compress, host bits to clear, the default routes.
    text += ("\n[Peer]\nPublicKey = " + keys(1)[0] + "\nAllowedIPs = ::ffff:10.1.2.3/128, "
             "::ffff:0.0.0.0/96, ::1.2.3.4/128, 1:0:0:1::/64, 1::1:0:0:1/128, "
             "fd00:0:1:0:1::/80, 192.168.7.9/24, 0.0.0.0/0, ::/0\n")
    conf = duo.file("peers.conf", text)
    duo.wg("setconf", "{IF}", conf)
    dump = duo.wg("show", "{IF}", "dump")
    lines = dump.stdout.splitlines()
    assert dump.rc == 0 and len(lines) == 1 + 1001
    mine = {line.split("\t")[0]: line.split("\t")[3] for line in lines[1:]}
    assert mine[publics[7]] == ",".join(peer_prefixes(7, 10))
    duo.wg("showconf", "{IF}")
    duo.raw("two pipelined gets", b"get=1\n\nget=1\n\n")
    duo.wg("setconf", "{IF}", duo.file("empty.conf", f"[Interface]\nPrivateKey = {private}\n"))
    duo.same_state("after removing every peer")
    duo.check()


def test_thousand_peers_by_130_dump_is_complete(duo: Duo) -> None:
    """The ping check's configuration (bench_uapi.py): 130,000 prefixes over 1,000 peers,
    every one printed by `wg show IF dump`, as wireguard-go prints them."""
    publics = keys(1000)
    private = b64(crypto.generate_private_key())
    conf = duo.file("peers.conf", many_peers_config(publics, 130, private))
    for d in duo.daemons:
        d.ns.run("wg", "setconf", d.ifname, conf, timeout=TIMEOUT)
    dumps = {}
    for d in duo.daemons:
        out = d.ns.run("wg", "show", d.ifname, "dump", timeout=TIMEOUT).stdout
        dumps[d.impl] = sorted(line.split("\t", 4)[:4:3] for line in out.splitlines()[1:])
    assert len(dumps["wgpy"]) == 1000
    assert sum(len(p.split(",")) for _, p in dumps["wgpy"]) == 130_000
    assert dict(dumps["wgpy"])[publics[999]] == ",".join(peer_prefixes(999, 130))
    assert dumps["wgpy"] == dumps["wireguard-go"]

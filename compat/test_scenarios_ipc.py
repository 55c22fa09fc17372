"""netns.sh's single-interface scenarios (issue 8, item 5), run on wgpy and on Debian's
wireguard-go side by side, each in a namespace of its own, with the same commands: the
scenario's own check must hold on both, and where outputs can be compared they must be
equal (peers in sorted order: wireguard-go lists them in Go map order). The pair id is
`wgpy-wireguard-go`: these involve one interface, so there is no wgpy-wgpy form (see the
matrix's registry, compat/matrix.py).

- IPC stress ("things that usually cause split responses"): 40 peers × 52 allowed IPs;
  29 peers without allowed IPs and one with two, set without a private key; a peer with
  197 allowed IPs next to one with none; `wg show doesnotexist` fails. (netns.sh's 130,560
  allowed IPs on one peer is test_uapi_compat.py::test_setconf_with_130560_allowed_ips.)
- A peer whose public key is a low-order point sends nothing, even with a persistent
  keepalive and an endpoint, once the interface is up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from compat.lab import Daemon, Lab, b64
from wgpy import crypto

pytestmark = pytest.mark.root

IMPLS = ("wgpy", "wireguard-go")
PAIR = "wgpy-wireguard-go"
# The kernel selftest's low-order points of Curve25519 (and non-canonical encodings).
LOW_ORDER_POINTS = (
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",
    "X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=",
    "7P///////////////////////////////////////38=",
    "7f///////////////////////////////////////38=",
    "7v///////////////////////////////////////38=",
)
LISTEN = ("127.0.0.1", 1111)


def new_key() -> str:
    return b64(crypto.public_key(crypto.generate_private_key()))


@pytest.fixture(params=[PAIR])
def both(request: pytest.FixtureRequest) -> Iterator[dict[str, Daemon]]:
    """wgpy and wireguard-go, each serving one interface in a namespace of its own."""
    from compat.conftest import require_root

    require_root()
    with Lab() as lab:
        yield {impl: lab.daemon(lab.namespace(f"ipc{impl[:2]}"), impl) for impl in IMPLS}


def setconf(d: Daemon, text: str) -> None:
    path = d.log.with_suffix(".conf")
    path.write_text(text)
    path.chmod(0o600)
    d.wg("setconf", d.ifname, str(path))


def allowed_ips(d: Daemon) -> dict[str, list[str]]:
    """`wg show IF allowed-ips` as {public key: prefixes}."""
    table = {}
    for line in d.wg("show", d.ifname, "allowed-ips").stdout.splitlines():
        key, *prefixes = line.split()
        table[key] = prefixes
    return table


def test_ipc_40_peers_52_allowed_ips(both: dict[str, Daemon]) -> None:
    lines = ["[Interface]", f"PrivateKey = {b64(crypto.generate_private_key())}"]
    expected = {}
    for a in range(1, 41):
        key = new_key()
        prefixes = [f"{a}.{b}.0.0/16" for b in range(1, 53)]
        expected[key] = prefixes
        lines += ["[Peer]", f"PublicKey = {key}"] + [f"AllowedIPs = {p}" for p in prefixes]
    text = "\n".join(lines) + "\n"
    for impl, d in both.items():
        setconf(d, text)
        out = d.wg("show", d.ifname, "allowed-ips").stdout.splitlines()
        assert len(out) == 40, (impl, len(out))
        assert all(len(line.split()) == 53 for line in out), impl
        assert allowed_ips(d) == expected, impl


def test_ipc_29_empty_peers(both: dict[str, Daemon]) -> None:
    """No private key, 29 peers without allowed IPs and a 30th with two: set, and shown."""
    keys = [new_key() for _ in range(30)]
    lines = []
    for key in keys[:29]:
        lines += ["[Peer]", f"PublicKey = {key}"]
    lines += ["[Peer]", f"PublicKey = {keys[29]}", "AllowedIPs = 255.2.3.4/32,abcd::255/128"]
    text = "\n".join(lines) + "\n"
    shown = {}
    for impl, d in both.items():
        setconf(d, text)
        conf = d.wg("showconf", d.ifname).stdout
        assert "PrivateKey" not in conf, (impl, conf)
        assert sorted(k for k in conf.split() if k in keys) == sorted(keys), impl
        table = allowed_ips(d)
        assert table == {**{k: ["(none)"] for k in keys[:29]},
                         keys[29]: ["255.2.3.4/32", "abcd::255/128"]}, (impl, table)
        # (each side's own random listen port aside)
        shown[impl] = sorted("\n".join(line for line in part.splitlines()
                                       if not line.startswith("ListenPort"))
                             for part in conf.split("\n\n"))
    assert shown["wgpy"] == shown["wireguard-go"]


def test_ipc_197_allowed_ips_next_to_an_empty_peer(both: dict[str, Daemon]) -> None:
    first, second = new_key(), new_key()
    prefixes = ",".join(f"abcd::{i}" for i in range(1, 198))
    for impl, d in both.items():
        d.wg("set", d.ifname, "peer", first)
        d.wg("set", d.ifname, "peer", second, "allowed-ips", prefixes)
        table = allowed_ips(d)
        assert table[first] == ["(none)"], impl
        assert table[second] == [f"abcd::{i}/128" for i in range(1, 198)], impl


def test_wg_show_doesnotexist(both: dict[str, Daemon]) -> None:
    for impl, d in both.items():
        assert d.wg("show", d.ifname, check=False).returncode == 0, impl
        r = d.wg("show", "doesnotexist", check=False)
        assert r.returncode != 0 and not r.stdout, (impl, r.stdout)


def test_low_order_public_keys_send_nothing(both: dict[str, Daemon]) -> None:
    """netns.sh: seven peers whose public keys are low-order points, each with an endpoint
    (a UDP socket of ours) and a persistent keepalive of 1 s; the interface comes up; in
    2 s nothing arrives at the socket."""
    socks = {}
    try:
        for impl, d in both.items():
            sock = d.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks[impl] = sock
            sock.bind(LISTEN)
            key = d.log.with_suffix(".key")
            key.write_text(b64(crypto.generate_private_key()) + "\n")
            key.chmod(0o600)
            d.wg("set", d.ifname, "private-key", str(key))
            for point in LOW_ORDER_POINTS:
                d.wg("set", d.ifname, "peer", point, "persistent-keepalive", "1",
                     "endpoint", f"{LISTEN[0]}:{LISTEN[1]}")
            assert d.wg("show", d.ifname, "peers").stdout.split(), impl
            d.ns.run("ip", "link", "set", d.ifname, "up")
        time.sleep(2.0)
        for impl, sock in socks.items():
            sock.setblocking(False)
            try:
                data, src = sock.recvfrom(2048)
            except BlockingIOError:
                continue
            raise AssertionError(f"{impl} sent {len(data)} bytes from {src} for a low-order "
                                 f"peer:\n{both[impl].log_tail()}")
    finally:
        for sock in socks.values():
            sock.close()

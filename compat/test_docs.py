"""The root examples of docs/api.md, run as written against real peers: a device on a TUN
(in a namespace of its own, seen by `wg`), a `wgpy.Tunnel` run as the unprivileged
`nobody` user against Debian's wireguard-go in another namespace, and `uapi.Client`
driving wireguard-go. The unprivileged examples: tests/test_docs.py."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compat.lab import WG_RUN_DIR, Daemon, Lab, Namespace, b64
from wgpy import crypto
from wgpy.noise.actions import SendDatagram
from wgpy.noise.interface import Interface

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from docexamples import examples  # noqa: E402

pytestmark = pytest.mark.root
EXAMPLE_TIMEOUT = 60.0
EXAMPLES = dict(examples(root=True))


def _example(part: str) -> str:
    found = [code for name, code in EXAMPLES.items() if part in code]
    assert len(found) == 1, f"one root example with {part!r} expected, found {len(found)}"
    return found[0]


def _run(ns: Namespace, code: str, env: dict[str, str], *prefix: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns.name, *prefix, sys.executable, "-c", code],
                          env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True, timeout=EXAMPLE_TIMEOUT, cwd="/")


def _client_and_wireguard_go(lab: Lab, net: str) -> tuple[Namespace, Daemon, bytes]:
    """A namespace for the client (NET.1) joined to one where wireguard-go serves at
    NET.2:51820 as 10.66.0.1/24, knowing the returned client key as 10.66.0.2/32."""
    a, b = lab.namespace("cli"), lab.namespace("srv")
    lab.link(a, b, f"{net}.1/24", f"{net}.2/24")
    server = lab.daemon(b, "wireguard-go")
    lab.configure(server, "10.66.0.1/24", 51820)
    client_key = crypto.generate_private_key()
    server.wg("set", server.ifname, "peer", b64(crypto.public_key(client_key)),
              "allowed-ips", "10.66.0.2/32")
    return a, server, client_key


def test_every_root_example_is_run_here() -> None:
    assert len(EXAMPLES) == 3
    for part in ("Device.create", "wgpy.Tunnel", "uapi.Client"):
        _example(part)


def test_device_on_a_tun_is_seen_by_wg_and_gone_after_close() -> None:
    with Lab() as lab:
        ns = lab.namespace("doc")
        name = lab.ifname()
        result = _run(ns, _example("Device.create"), {"WG_EXAMPLE_INTERFACE": name})
        assert result.returncode == 0, result.stderr[-3000:]
        assert not (WG_RUN_DIR / f"{name}.sock").exists()
        assert ns.run("ip", "link", "show", name, check=False).returncode != 0


def test_tunnel_as_nobody_reaches_wireguard_go() -> None:
    with Lab() as lab:
        a, server, client_key = _client_and_wireguard_go(lab, "192.168.93")
        env = {"WG_SERVER_PUBLIC_KEY": b64(server.public_key),
               "WG_SERVER_ENDPOINT": "192.168.93.2:51820",
               "WG_CLIENT_PRIVATE_KEY": b64(client_key)}
        result = _run(a, _example("wgpy.Tunnel"), env,
                      "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
        assert result.returncode == 0, result.stderr[-3000:]
        assert " ms " in result.stdout and "bytes received" in result.stdout
        dump = server.wg("show", server.ifname, "dump").stdout.splitlines()[1].split("\t")
        assert int(dump[4]) > 0 and int(dump[5]) > 0, dump  # handshake, bytes received


def test_uapi_client_drives_wireguard_go() -> None:
    with Lab() as lab:
        ns = lab.namespace("uapi")
        go = lab.daemon(ns, "wireguard-go")
        result = _run(ns, _example("uapi.Client"), {"WG_EXAMPLE_INTERFACE": go.ifname})
        assert result.returncode == 0, result.stderr[-3000:]
        assert go.wg("show", go.ifname, "listen-port").stdout.strip() == "51999"


def _answered(core_key: bytes, wall_offset: float, ns: Namespace, server_key: bytes,
              endpoint: tuple[str, int]) -> bool:
    """Whether wireguard-go answers an initiation from a fresh core (a restarted program)."""
    core = Interface(core_key, wall_offset=wall_offset)
    peer = core.add_peer(server_key)
    peer.endpoint = endpoint
    core.allowed_ips.insert(ipaddress.ip_network("10.66.0.0/24"), peer)
    sock = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(1.0)
        for action in core.send(b"", time.monotonic()) + peer.initiate(time.monotonic()):
            if isinstance(action, SendDatagram):
                sock.sendto(action.data, action.endpoint)
        try:
            data, src = sock.recvfrom(2048)
        except TimeoutError:
            return False
        core.receive(data, src, time.monotonic())
        return peer.keypairs.current is not None
    finally:
        sock.close()


def test_the_core_is_accepted_by_wireguard_go_when_it_is_given_the_wall_clock() -> None:
    """docs/api.md: `wall_offset` makes the TAI64N timestamps real. wireguard-go takes an
    initiation only if its timestamp is newer than the last one from that key, so a program
    that leaves it at 0 (1970) is answered once and never again after a restart."""
    with Lab() as lab:
        a, server, key = _client_and_wireguard_go(lab, "192.168.94")
        endpoint = ("192.168.94.2", 51820)
        wall = time.time() - time.monotonic()
        assert _answered(key, 0.0, a, server.public_key, endpoint)  # first time: 1970 > never
        assert not _answered(key, 0.0, a, server.public_key, endpoint)  # "restart": replay
        assert _answered(key, wall, a, server.public_key, endpoint)
        # Another restart: newer again, once past wireguard-go's flood limit (one initiation
        # per 20 ms from a peer) and the timestamp's whitening (rounded down to 2^24 ns).
        time.sleep(0.05)
        assert _answered(key, time.time() - time.monotonic(), a, server.public_key, endpoint)

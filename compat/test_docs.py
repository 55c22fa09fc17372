"""The root examples of docs/api.md, run as written against real peers: a device on a TUN
(in a namespace of its own, seen by `wg`), a `wgpy.Tunnel` run as the unprivileged
`nobody` user against Debian's wireguard-go in another namespace, and `uapi.Client`
driving wireguard-go. The unprivileged examples: tests/test_docs.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat.lab import WG_RUN_DIR, Lab, Namespace, b64
from wgpy import crypto

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
        a, b = lab.namespace("cli"), lab.namespace("srv")
        lab.link(a, b, "192.168.93.1/24", "192.168.93.2/24")
        server = lab.daemon(b, "wireguard-go")
        lab.configure(server, "10.66.0.1/24", 51820)
        client_key = crypto.generate_private_key()
        server.wg("set", server.ifname, "peer", b64(crypto.public_key(client_key)),
                  "allowed-ips", "10.66.0.2/32")
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

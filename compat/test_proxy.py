"""`wgpy proxy` and `wgpy.Network` against today's wireguard-go, as the `nobody` user.

Namespace `psrv` runs upstream wireguard-go (10.61.0.1) with an HTTP server and a DNS
server (web.wg -> 10.61.0.1) behind it; namespace `pcli` reaches it over a veth. In
`pcli`, as nobody: `wgpy proxy` (10.61.0.2) serves SOCKS5 and `-L 8080:web.wg:80`, and
curl fetches a WGPY_PROXY_BYTES file (100 MB) through each, names resolved by the DNS
server through the tunnel; the sha256 must match. The same file through a wgpy daemon's
TUN (10.61.0.3, curl and the kernel's TCP) gives the rate to compare with, in the same
run. An asyncio program (10.61.0.4) opens 100 concurrent connections through a Network,
then closes it and counts its threads and fds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from compat.lab import Lab, Namespace, b64
from compat.upstream import ensure_upstream
from wgpy import crypto

pytestmark = pytest.mark.root

SIZE = int(os.environ.get("WGPY_PROXY_BYTES", 100_000_000))
ROOT = Path(__file__).resolve().parent.parent
NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")

_DNS = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53))
print("READY", flush=True)
while True:
    q, src = s.recvfrom(512)
    name = q[13:13 + q[12]]
    if name == b"web":
        r = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + q[12:] + struct.pack(
            "!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(sys.argv[1])
    else:
        r = q[:2] + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0) + q[12:]
    s.sendto(r, src)
"""

_ASYNC_CLIENT = """
import asyncio, base64, hashlib, os, sys, threading
import wgpy
key, peer, endpoint, expect = sys.argv[1:5]
async def main(net):
    async def one(i):
        reader, writer = await net.open_connection("10.61.0.1", 80)
        writer.write(b"GET /small HTTP/1.0\\r\\nHost: web.wg\\r\\n\\r\\n")
        await writer.drain()
        reply = await reader.read()
        writer.close()
        await writer.wait_closed()
        return hashlib.sha256(reply.split(b"\\r\\n\\r\\n", 1)[1]).hexdigest()
    return await asyncio.gather(*(one(i) for i in range(100)))
threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
with wgpy.Tunnel(base64.b64decode(key), base64.b64decode(peer), endpoint,
                 address="10.61.0.4") as tunnel, wgpy.Network(tunnel) as net:
    digests = asyncio.run(asyncio.wait_for(main(net), 120))
print("ok", sum(d == expect for d in digests))
print("threads", threading.active_count() - threads, "fds",
      len(os.listdir("/proc/self/fd")) - fds)
"""


def _python_for_nobody() -> tuple[list[str], dict[str, str]]:
    """An interpreter nobody may run, and the environment that finds wgpy and its
    dependencies: this one, or the system's python3 of the same version on our paths
    (pyenv's lives under /root, which nobody cannot enter)."""
    env = dict(os.environ)
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import wgpy"],
                           capture_output=True)
    if probe.returncode == 0:
        return [sys.executable], env
    system = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}",
                          path="/usr/bin:/bin")
    if system is None:
        pytest.fail(f"no interpreter nobody can run: {probe.stderr.decode()[-300:]}")
    import site  # noqa: PLC0415
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    return [system], env


def _wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if re.search(pattern, line):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r}; exit {proc.poll()}")


def _curl(ns: Namespace, out: Path, *args: str, nobody: bool = True) -> float:
    """Fetch into `out` with curl in `ns`; the rate in Mbit/s."""
    result = ns.run(*(NOBODY if nobody else ()), "curl", "-sS", "--max-time", "300",
                    "-o", str(out), "-w", "%{speed_download}", *args, check=False,
                    timeout=320)
    assert result.returncode == 0, result.stderr
    return float(result.stdout) * 8 / 1e6


class World:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.srv, self.cli = lab.namespace("psrv"), lab.namespace("pcli")
        lab.link(self.srv, self.cli, "192.168.61.1/24", "192.168.61.2/24")
        self.wg = lab.daemon(self.srv, ensure_upstream())
        lab.configure(self.wg, "10.61.0.1/24", 51820)
        self.www = lab.tmp / "www"
        self.www.mkdir()
        digest = hashlib.sha256()
        with open(self.www / "blob", "wb") as f:
            for _ in range(SIZE // (1 << 20)):
                chunk = os.urandom(1 << 20)
                digest.update(chunk)
                f.write(chunk)
        self.blob_sha = digest.hexdigest()
        small = os.urandom(10_000)
        (self.www / "small").write_bytes(small)
        self.small_sha = hashlib.sha256(small).hexdigest()
        self.out = lab.tmp / "out"
        self.out.mkdir()
        self.out.chmod(0o777)
        self.procs = [
            self.srv.popen(sys.executable, "-m", "http.server", "80", "--bind", "10.61.0.1",
                           "--directory", str(self.www), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL),
            self.srv.popen(sys.executable, "-c", _DNS, "10.61.0.1", stdout=subprocess.PIPE)]
        _wait_line(self.procs[1], "READY")
        self.python, self.env = _python_for_nobody()

    def key_for(self, address: str) -> bytes:
        """A peer key the server allows `address` for."""
        key = crypto.generate_private_key()
        self.wg.wg("set", self.wg.ifname, "peer", b64(crypto.public_key(key)),
                   "allowed-ips", f"{address}/32")
        return key

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def world() -> Iterator[World]:
    with Lab() as lab:
        w = World(lab)
        try:
            yield w
        finally:
            w.close()


def test_proxy_and_forward_carry_100_mb_as_nobody(world: World) -> None:
    key = world.key_for("10.61.0.2")
    conf = world.lab.tmp / "proxy.conf"
    conf.write_text(f"""[Interface]
PrivateKey = {b64(key)}
Address = 10.61.0.2/32
DNS = 10.61.0.1
[Peer]
PublicKey = {b64(world.wg.public_key)}
Endpoint = 192.168.61.1:51820
AllowedIPs = 10.61.0.0/24
""")
    conf.chmod(0o600)
    shutil.chown(conf, "nobody", "nogroup")
    log = open(world.lab.tmp / "proxy.log", "w")
    proxy = world.cli.popen(*NOBODY, *world.python, "-m", "wgpy", "proxy", str(conf),
                            "-L", "8080:web.wg:80", env=world.env, stdout=subprocess.PIPE,
                            stderr=log)
    log.close()
    world.procs.append(proxy)
    _wait_line(proxy, r"SOCKS5 on 127\.0\.0\.1:1080")
    _wait_line(proxy, r"8080 -> web\.wg:80")

    refused = world.cli.run(*NOBODY, "curl", "-sS", "--max-time", "20", "--socks5-hostname",
                            "127.0.0.1:1080", "http://web.wg:81/", check=False)
    assert refused.returncode == 97 and "(5)" in refused.stderr, refused.stderr  # 5: refused

    socks_rate = _curl(world.cli, world.out / "socks", "--socks5-hostname", "127.0.0.1:1080",
                       "http://web.wg/blob")
    forward_rate = _curl(world.cli, world.out / "forward", "http://127.0.0.1:8080/blob")
    for name in ("socks", "forward"):
        digest = hashlib.sha256((world.out / name).read_bytes()).hexdigest()
        assert digest == world.blob_sha, name
    assert proxy.poll() is None  # served on after the refused request

    tun = world.lab.daemon(world.cli, "wgpy")
    world.lab.configure(tun, "10.61.0.3/24", 51821)
    world.lab.peer(world.wg, tun, "10.61.0.3/32")
    world.lab.peer(tun, world.wg, "10.61.0.0/24", "192.168.61.1:51820")
    tun_rate = _curl(world.cli, world.out / "tun", "http://10.61.0.1/blob", nobody=False)
    assert hashlib.sha256((world.out / "tun").read_bytes()).hexdigest() == world.blob_sha
    print(f"\n{SIZE / 1e6:.0f} MB from wireguard-go's side: SOCKS5 through wgpy proxy "
          f"{socks_rate:.0f} Mbit/s, -L forward {forward_rate:.0f} Mbit/s, wgpy daemon's "
          f"TUN and the kernel's TCP {tun_rate:.0f} Mbit/s "
          f"(proxy/TUN {socks_rate / tun_rate:.2f})")


def test_an_asyncio_program_opens_100_connections_as_nobody(world: World) -> None:
    key = world.key_for("10.61.0.4")
    result = world.cli.run(*NOBODY, *world.python, "-c", _ASYNC_CLIENT, b64(key),
                           b64(world.wg.public_key), "192.168.61.1:51820", world.small_sha,
                           env=world.env, check=False, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok 100" in result.stdout, result.stdout
    assert "threads 0 fds 0" in result.stdout, result.stdout

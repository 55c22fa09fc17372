"""The container image under a real engine: podman runs the image contrib/Containerfile
built (contrib/ci/build-image, as .ci/run does), with the flags the README gives docker:

- the image holds the venv and what runs it, and nothing of the build: no compiler, pip,
  setuptools, pip cache or pip configuration; the compiled batch path is there, every
  package at the version contrib/constraints.txt pins; it keeps its HEALTHCHECK;
- two containers of it on a podman network of their own, each `--cap-drop ALL --cap-add
  NET_ADMIN --device /dev/net/tun --read-only --tmpfs /run`, configured by `podman exec
  wgpy-up wg0` from a mounted wg-quick file: they handshake and ping through the tunnel;
  `wg-quick up` in one brings up a second interface with wgpy, which pings too; the
  healthcheck passes, `podman logs` has the startup line, `podman stop` exits 0;
- without `--device /dev/net/tun` the container exits 1 with the message that says so.

Needs root, podman and the image (WGPY_PODMAN_IMAGE, default localhost/wgpy:ci): the tests
skip with the reason without them, or fail instead under WGPY_REQUIRE_PODMAN=1 (.ci/run),
as WGPY_REQUIRE_ROOT=1 does for the root tests. podman is used as the environment configures
it (.ci/run sets CONTAINERS_CONF=contrib/ci/containers.conf).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from compat.lab import b64
from compat.test_container import write_conf  # the same wg-quick file as the runtime test
from wgpy import __version__, crypto

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "contrib" / "constraints.txt"
IMAGE = os.environ.get("WGPY_PODMAN_IMAGE", "localhost/wgpy:ci")
RUN_FLAGS = ["--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun",
             "--read-only", "--tmpfs", "/run"]  # the README's `docker run`
CAP_NET_ADMIN = 1 << 12
TIMEOUT = 60.0

pytestmark = pytest.mark.root


def podman(*argv: str, check: bool = True, timeout: float = TIMEOUT
           ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(argv)} exited {proc.returncode}:\n"
                             f"{proc.stdout}{proc.stderr}")
    return proc


def missing() -> str | None:
    if os.geteuid() != 0:
        return "the podman tests need root"
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it)"
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        return f"no image {IMAGE} (contrib/ci/build-image builds it)"
    return None


@pytest.fixture(autouse=True)
def require_podman() -> None:
    reason = missing()
    if reason is None:
        return
    if os.environ.get("WGPY_REQUIRE_PODMAN") == "1":
        pytest.fail(f"WGPY_REQUIRE_PODMAN=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def unique(kind: str) -> str:
    return f"wgpy-{kind}-{os.getpid()}-{secrets.token_hex(3)}"


def in_image(*argv: str) -> subprocess.CompletedProcess[str]:
    return podman("run", "--rm", "--network", "none", "--entrypoint", argv[0], IMAGE,
                  *argv[1:], check=False)


def test_image_holds_the_runtime_only() -> None:
    """No build tools, pip, setuptools or pip cache and configuration in the image; the
    compiled batch path and the pinned versions; the HEALTHCHECK kept (docker format)."""
    info = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    size = info["Size"]
    print(f"{IMAGE}: {size / 1e6:.1f} MB")
    health = info["Config"].get("Healthcheck") or info.get("Healthcheck") or {}
    assert "wg show" in " ".join(health.get("Test", [])), info["Config"]
    assert info["Config"]["Entrypoint"] == ["wgpy", "-f"] and info["Config"]["Cmd"] == ["wg0"]

    script = r"""
import importlib.metadata as md, importlib.util, json, os, shutil
print(json.dumps({
    "versions": {d.metadata["Name"].lower(): d.version for d in md.distributions()},
    "fastpath": importlib.util.find_spec("wgpy._fastpath") is not None,
    "tools": [t for t in ("gcc", "cc", "pip", "pip3", "strip", "ld") if shutil.which(t)],
    "files": [p for p in ("/root/.cache/pip", "/root/.config/pip", "/etc/pip.conf",
                          "/etc/xdg/pip", "/run/secrets", "/src", "/usr/include/python3.11",
                          "/usr/include/openssl") if os.path.exists(p)],
}))
"""
    result = in_image("python3", "-c", script)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["fastpath"], "the compiled batch path (wgpy._fastpath) is not in the image"
    assert found["tools"] == [] and found["files"] == [], found
    versions = found["versions"]
    assert "pip" not in versions and "setuptools" not in versions, versions
    pins = dict(line.lower().split("==") for line in CONSTRAINTS.read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for name, version in versions.items():
        if name != "wgpy":
            assert pins.get(name) == version, f"{name} {version} is not pinned: {pins}"
    assert versions["wgpy"] == __version__
    libssl = in_image("sh", "-c", "ls /usr/lib/x86_64-linux-gnu/libssl.so.3* "
                      "/usr/lib/*/libssl.so.3 2>/dev/null | head -1")
    assert libssl.stdout.strip(), "libssl3 is not in the image"


def wait_for(what: str, check, timeout: float = 20.0, context=lambda: "") -> float:
    """Poll `check` until true; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout:.0f} s\n{context()}")


class Box:
    """One container of the image, run as the README runs it."""

    def __init__(self, network: str, confdir: Path) -> None:
        self.name = unique("box")
        self.started = time.monotonic()
        podman("run", "-d", "--name", self.name, "--network", network, *RUN_FLAGS,
               "-v", f"{confdir}:/etc/wireguard:ro", IMAGE)
        state = json.loads(podman("inspect", self.name).stdout)[0]
        self.pid = state["State"]["Pid"]
        self.address = state["NetworkSettings"]["Networks"][network]["IPAddress"]

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = podman("exec", self.name, *argv, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in {self.name} exited {proc.returncode}:"
                                 f"\n{proc.stdout}{proc.stderr}\n{self.logs()}")
        return proc

    def logs(self) -> str:
        return podman("logs", self.name, check=False).stdout + \
            podman("logs", self.name, check=False).stderr

    def ping(self, address: str) -> subprocess.CompletedProcess[str]:
        """The host's ping in the container's network namespace."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-n", "ping", "-c", "3", "-i",
                               "0.2", "-W", "2", address], capture_output=True, text=True,
                              timeout=20)

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture
def network() -> Iterator[str]:
    """A podman bridge network of its own (netavark), removed after the test. netavark turns
    the host's IPv4 forwarding on: it is turned back off when it was off and no container
    is left running."""
    name = unique("net")
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    was = forwarding.read_text().strip()
    podman("network", "create", name)
    try:
        yield name
    finally:
        podman("network", "rm", "-f", name, check=False)
        if was == "0" and not podman("ps", "-q", check=False).stdout.strip():
            forwarding.write_text("0\n")


def status_field(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(field)


def test_two_containers_tunnel_and_stop(network: str) -> None:
    """wgpy-up in both, handshake and pings; wg-quick up inside one; healthcheck, logs, and
    `podman stop` exits 0."""
    keys = [crypto.generate_private_key() for _ in range(3)]
    dirs = [Path(tempfile.mkdtemp(prefix="wgpy-podman-")) for _ in range(2)]
    boxes: list[Box] = []
    try:
        a, b = Box(network, dirs[0]), None
        boxes.append(a)
        b = Box(network, dirs[1])
        boxes.append(b)
        # PID 1 of the container is `wgpy wg0`, with CAP_NET_ADMIN and nothing else.
        for box in (a, b):
            wait_for(f"wg0 served in {box.name}",
                     lambda box=box: box.exec("wg", "show", "wg0", check=False).returncode == 0,
                     context=box.logs)
        assert Path(f"/proc/{a.pid}/cmdline").read_bytes().split(b"\0")[0] == b"wgpy wg0"
        assert status_field(a.pid, "NSpid").split()[-1] == "1"
        for caps in ("CapEff", "CapPrm", "CapBnd"):
            assert int(status_field(a.pid, caps), 16) == CAP_NET_ADMIN, caps
        assert a.exec("touch", "/probe", check=False).returncode != 0  # read-only root

        write_conf(dirs[0] / "wg0.conf", keys[0], 51820, "10.80.0.1/24",
                   crypto.public_key(keys[1]), "10.80.0.2/32", f"{b.address}:51820")
        write_conf(dirs[1] / "wg0.conf", keys[1], 51820, "10.80.0.2/24",
                   crypto.public_key(keys[0]), "10.80.0.1/32", f"{a.address}:51820")
        for box in (a, b):
            up = box.exec("wgpy-up", "wg0")
            assert "already served" in up.stderr, up.stderr
        pinged = a.ping("10.80.0.2")
        first = time.monotonic() - a.started
        assert pinged.returncode == 0, pinged.stdout + a.logs() + b.logs()
        assert b.ping("10.80.0.1").returncode == 0, b.logs()
        shown = a.exec("wg", "show", "wg0", "latest-handshakes").stdout.split()
        assert int(shown[1]) > 0, shown
        print(f"first ping through the tunnel {first:.2f} s after `podman run`; "
              f"PID 1 RSS {status_field(a.pid, 'VmRSS')}")

        # wg-quick in the container starts a second wgpy (WG_QUICK_USERSPACE_IMPLEMENTATION).
        write_conf(dirs[0] / "wg1.conf", keys[2], 51821, "10.80.1.1/24",
                   crypto.public_key(keys[1]), "10.80.1.2/32", f"{b.address}:51820")
        b.exec("wg", "set", "wg0", "peer", b64(crypto.public_key(keys[2])), "allowed-ips",
               "10.80.1.1/32", "endpoint", f"{a.address}:51821")
        b.exec("ip", "address", "add", "10.80.1.2/24", "dev", "wg0")
        quick = a.exec("wg-quick", "up", "wg1")
        assert "[#] /opt/wgpy/bin/wgpy wg1" in quick.stderr, quick.stderr
        pinged = a.ping("10.80.1.2")
        assert pinged.returncode == 0, pinged.stdout + a.logs()

        health = podman("healthcheck", "run", a.name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        a.exec("wg-quick", "down", "wg1")
        assert a.exec("wg", "show", "wg1", check=False).returncode != 0
        assert a.ping("10.80.0.2").returncode == 0  # the first tunnel is untouched

        stop = podman("stop", "-t", "10", a.name)
        assert stop.returncode == 0
        state = json.loads(podman("inspect", a.name).stdout)[0]["State"]
        logs = a.logs()
        print(logs)
        assert state["ExitCode"] == 0, f"exit status {state['ExitCode']}:\n{logs}"
        assert f"Starting wgpy version {__version__}" in logs, logs
        assert re.search(r"^DEBUG: \(wg0\) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d Starting wgpy",
                         logs, re.M), logs
        assert "Shutting down: signal SIGTERM" in logs, logs
        assert "Traceback" not in logs
    finally:
        for box in boxes:
            box.remove()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_without_tun_device_exits_1_and_says_so() -> None:
    """`podman run` without `--device /dev/net/tun`: exit 1, the message names the option."""
    name = unique("notun")
    flags = [f for f in RUN_FLAGS if f not in ("--device", "/dev/net/tun")]
    try:
        run = podman("run", "--name", name, "--network", "none", *flags, IMAGE, check=False)
        out = run.stdout + run.stderr
        print(out)
        assert run.returncode == 1, out
        assert "Failed to create TUN device" in out, out
        assert "--device /dev/net/tun" in out, out
        assert "Traceback" not in out
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)

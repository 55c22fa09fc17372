"""Fixtures for the compatibility tests against the Debian WireGuard tools.

`require_root()` is the skip policy for every test that needs root, network namespaces,
TUN and the stock tools: it skips with the reason, or fails instead when the environment
variable WGPY_REQUIRE_ROOT=1 asks for these tests to be mandatory (CI running as root). It is
the policy of the fixtures of wgpy's pytest plugin (wgpy/testing/plugin.py: `wg_lab`,
`wg_tunnel`, ...), which the tests here use too.
Tests marked `@pytest.mark.root` in this directory get it applied automatically; the
`needs_root` fixture applies it explicitly.

`wggo` gives a test a fresh network namespace running Debian's wireguard-go, configured by
stock `wg`, plus a UDP socket bound on that namespace's loopback for the sans-IO core to
talk through. Everything it creates (namespace, wireguard-go process, interface, UAPI
socket file, processes started through `WgGoNamespace.spawn`) is removed at teardown,
also when the setup itself fails half-way.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from wgpy import crypto
from wgpy.testing.lab import PeerDump
from wgpy.testing.lab import in_netns as lab_in_netns
from wgpy.testing.lab import stop_process as lab_stop_process
from wgpy.testing.plugin import require

__all__ = ["require_root", "WgGoNamespace", "PeerDump", "in_netns", "WG_GO_ADDRESS",
           "CORE_ADDRESS"]

REQUIRED_TOOLS = ("wg", "wireguard-go", "ip", "ping")
WG_RUN_DIR = Path("/var/run/wireguard")
CORE_ADDRESS = "10.77.0.1"  # the sans-IO core's inner address (wireguard-go's allowed IP)
WG_GO_ADDRESS = "10.77.0.2"  # wireguard-go's interface address in the namespace
COMMAND_TIMEOUT = 10.0
STARTUP_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

_counter = itertools.count()


# --- skip policy ---------------------------------------------------------------------------------

def require_root() -> None:
    """Skip (or, with WGPY_REQUIRE_ROOT=1, fail) unless root with the WireGuard tools: the
    policy of the packaged plugin's fixtures (wgpy.testing.plugin.require)."""
    require(*REQUIRED_TOOLS)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        require_root()


@pytest.fixture
def needs_root() -> None:
    require_root()


# --- helpers ------------------------------------------------------------------------------------

def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command, bounded in time; failures carry its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM this process (by its pid, which we own), then SIGKILL if it lingers."""
    lab_stop_process(proc, timeout=timeout)


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Run the body with this thread inside network namespace `ns` (sockets created there
    stay there)."""
    with lab_in_netns(ns):
        yield


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass
class WgGoNamespace:
    """A namespace with wireguard-go on `ifname` (address 10.77.0.2/24, one peer: the core
    at 10.77.0.1/32) and the core's UDP socket on the namespace's loopback."""

    ns: str
    ifname: str
    private_key: bytes
    public_key: bytes
    core_private: bytes
    core_public: bytes
    sock: socket.socket
    listen_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    owns_uapi_socket: bool = False
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def core_port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def endpoint(self) -> tuple[str, int]:
        """wireguard-go's UDP address, as the core's socket sees it."""
        return ("127.0.0.1", self.listen_port)

    @property
    def uapi_socket(self) -> Path:
        return WG_RUN_DIR / f"{self.ifname}.sock"

    def ns_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def wg(self, *args: str) -> str:
        return run(*self.ns_argv("wg", *args)).stdout

    def set_core_endpoint(self) -> None:
        """Tell wireguard-go where the core listens, so that it can initiate."""
        self.wg("set", self.ifname, "peer", b64(self.core_public),
                "endpoint", f"127.0.0.1:{self.core_port}")

    def peer_dump(self) -> PeerDump:
        lines = self.wg("show", self.ifname, "dump").splitlines()
        peers = [line.split("\t") for line in lines[1:]]
        mine = [p for p in peers if p[0] == b64(self.core_public)]
        assert len(mine) == 1, f"core peer not in wg show dump: {lines}"
        p = mine[0]
        return PeerDump(p[0], p[1], p[2], p[3], int(p[4]), int(p[5]), int(p[6]), p[7])

    def spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        """Start a command inside the namespace; it is stopped at teardown if still running."""
        proc = subprocess.Popen(self.ns_argv(*argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.children.append(proc)
        return proc

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no wireguard-go log)"
        return "\n".join(text.splitlines()[-lines:])


def _write_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(b64(key) + "\n")


def _start_wireguard_go(wire: WgGoNamespace) -> None:
    """Run wireguard-go in the foreground (so the pid is ours) and wait for its UAPI socket."""
    env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="verbose")
    with open(wire.log_path, "wb") as log:
        # `ip netns exec` execs the command, so this pid is wireguard-go's own.
        wire.proc = subprocess.Popen(wire.ns_argv("wireguard-go", wire.ifname),
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not wire.uapi_socket.exists():
        if wire.proc.poll() is not None:
            raise RuntimeError(f"wireguard-go exited {wire.proc.returncode}:\n{wire.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {wire.uapi_socket} after {STARTUP_TIMEOUT} s:\n"
                               f"{wire.log_tail()}")
        time.sleep(0.02)
    wire.owns_uapi_socket = True


def _teardown_wireguard_go(wire: WgGoNamespace) -> None:
    if wire.proc is not None:
        stop_process(wire.proc)
    if run("ip", "-n", wire.ns, "link", "show", wire.ifname, check=False).returncode == 0:
        run("ip", "-n", wire.ns, "link", "del", wire.ifname, check=False)
    if wire.owns_uapi_socket:  # never another session's socket of the same name
        with contextlib.suppress(FileNotFoundError):
            wire.uapi_socket.unlink()


@pytest.fixture
def wggo(tmp_path: Path) -> Iterator[WgGoNamespace]:
    """A fresh namespace with a configured wireguard-go and the core's socket in it."""
    require_root()
    pid = os.getpid()
    # pid % 10000 may clash with another session's: skip names whose UAPI socket exists.
    for _ in range(100):
        n = next(_counter)
        ns, ifname = f"wgpy-wp{pid}-{n}", f"wgpwp{pid % 10000}{n}"
        if not (WG_RUN_DIR / f"{ifname}.sock").exists():
            break
    else:
        pytest.fail(f"no free interface name wgpwp{pid % 10000}<n> in {WG_RUN_DIR}")
    assert len(ifname) <= 15, ifname
    wg_private = crypto.generate_private_key()
    core_private = crypto.generate_private_key()
    with contextlib.ExitStack() as cleanup:
        run("ip", "netns", "add", ns)
        cleanup.callback(run, "ip", "netns", "del", ns, check=False)
        run("ip", "-n", ns, "link", "set", "lo", "up")

        with in_netns(ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cleanup.callback(sock.close)
        sock.bind(("127.0.0.1", 0))
        core_port = sock.getsockname()[1]

        wire = WgGoNamespace(
            ns=ns, ifname=ifname, private_key=wg_private,
            public_key=crypto.public_key(wg_private), core_private=core_private,
            core_public=crypto.public_key(core_private), sock=sock,
            listen_port=51820 if core_port != 51820 else 51821,
            log_path=tmp_path / "wireguard-go.log")
        cleanup.callback(_teardown_wireguard_go, wire)
        _start_wireguard_go(wire)

        key_file = tmp_path / "wg-go.key"
        _write_key(key_file, wg_private)
        wire.wg("set", ifname, "private-key", str(key_file),
                "listen-port", str(wire.listen_port),
                "peer", b64(wire.core_public), "allowed-ips", f"{CORE_ADDRESS}/32")
        run("ip", "-n", ns, "addr", "add", f"{WG_GO_ADDRESS}/24", "dev", ifname)
        run("ip", "-n", ns, "link", "set", ifname, "up")

        # Children started by the test go first, before the socket and the namespace.
        def stop_children() -> None:
            for child in wire.children:
                stop_process(child)
                if child.stdout is not None:
                    child.stdout.close()
        cleanup.callback(stop_children)
        yield wire


# Kernel WireGuard as a peer in a QEMU VM (compat/kernel.py): fixtures kernel_vm, kernel_pair.
from compat.kernel import kernel_pair, kernel_vm  # noqa: E402,F401

"""A small network lab for the compatibility tests: namespaces, veth links and WireGuard
daemons (wgpy or Debian's wireguard-go), all created by the test and all removed by it.

    with Lab() as lab:
        a, b = lab.namespace("a"), lab.namespace("b")
        lab.link(a, b, "192.168.77.1/24", "192.168.77.2/24", "fd77::1/64", "fd77::2/64")
        wa = lab.daemon(a, "wgpy")              # a started WireGuard interface in `a`
        wb = lab.daemon(b, "wireguard-go")
        lab.connect(wa, "10.8.0.1/24", wb, "10.8.0.2/24", endpoint_b="192.168.77.2")

Names carry the test process's pid and a counter, so parallel runs and other sessions
(which share /var/run/wireguard) never collide. Daemons run in the foreground
(WG_PROCESS_FOREGROUND=1) under a Popen we own, so they are stopped by pid; the lab then
deletes interfaces, stray sockets and namespaces, in that order, also when a test fails.
Every command is bounded in time.
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import signal
import socket as _socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from wgpy import crypto

__all__ = ["Lab", "Namespace", "Daemon", "run", "WGPY", "WG_RUN_DIR"]

WG_RUN_DIR = Path("/var/run/wireguard")
COMMAND_TIMEOUT = 30.0
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# The wgpy console script of the environment running the tests.
WGPY = str(Path(sys.executable).with_name("wgpy"))
_ids = itertools.count()


def run(*argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
        input: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                          env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass
class Namespace:
    name: str

    def run(self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
            input: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.name, *argv, check=check, timeout=timeout,
                   input=input, env=env)

    def popen(self, *argv: str, env: dict[str, str] | None = None, **kw: object
              ) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=env,
                                text=True, **kw)  # type: ignore[call-overload]

    def sysctl(self, key: str, value: str | int) -> None:
        """Write /proc/sys/KEY (dots or slashes) inside this namespace."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run("sh", "-c", f"printf '%s' '{value}' > {path}")

    def socket(self, family: int = _socket.AF_INET, type: int = _socket.SOCK_DGRAM,
               proto: int = 0) -> _socket.socket:
        """A socket created inside this namespace (it stays there); the caller closes it."""
        from pyroute2 import netns

        netns.pushns(self.name)
        try:
            return _socket.socket(family, type, proto)
        finally:
            netns.popns()


@dataclass
class Daemon:
    """A WireGuard interface served by `impl` in `ns`."""

    ns: Namespace
    impl: str  # "wgpy" or "wireguard-go"
    ifname: str
    proc: subprocess.Popen[str] | None
    log: Path
    private_key: bytes = field(default_factory=crypto.generate_private_key)
    port: int = 0

    @property
    def public_key(self) -> bytes:
        return crypto.public_key(self.private_key)

    @property
    def socket(self) -> Path:
        return WG_RUN_DIR / f"{self.ifname}.sock"

    def wg(self, *args: str, check: bool = True, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
        return self.ns.run("wg", *args, check=check, input=input)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """VmRSS of the daemon's process (`ip netns exec` execs it: same pid)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class Lab:
    def __init__(self, tmp: Path | None = None) -> None:
        self.tag = f"{os.getpid() % 100000}{next(_ids)}"
        self.tmp = tmp or Path(f"/tmp/wgpy-lab-{self.tag}")
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.namespaces: list[Namespace] = []
        self.daemons: list[Daemon] = []
        self._n = itertools.count()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- building -------------------------------------------------------------------------------

    def namespace(self, label: str) -> Namespace:
        ns = Namespace(f"wgpy-{label}-{self.tag}")
        run("ip", "netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def link(self, a: Namespace, b: Namespace, *addresses: str) -> tuple[str, str]:
        """A veth pair between `a` and `b`; addresses alternate a, b, a, b... Returns the
        names of its two ends (in `a`, in `b`)."""
        n = next(self._n)
        va, vb = f"va{self.tag}{n}"[-15:], f"vb{self.tag}{n}"[-15:]
        run("ip", "link", "add", va, "netns", a.name, "type", "veth", "peer", "name", vb,
            "netns", b.name)
        for i, address in enumerate(addresses):
            ns, dev = (a, va) if i % 2 == 0 else (b, vb)
            ns.run("ip", "addr", "add", address, "dev", dev, "nodad")
        a.run("ip", "link", "set", va, "up")
        b.run("ip", "link", "set", vb, "up")
        return va, vb

    def ifname(self) -> str:
        name = f"wgl{self.tag}{next(self._n)}"
        if len(name) > 15:
            name = f"wgl{os.urandom(5).hex()}"
        return name

    def daemon(self, ns: Namespace, impl: str, ifname: str | None = None,
               env: dict[str, str] | None = None) -> Daemon:
        """Start `impl` for a new interface in `ns`, in the foreground under our pid."""
        ifname = ifname or self.ifname()
        log = self.tmp / f"{ifname}.log"
        program = WGPY if impl == "wgpy" else shutil.which(impl) or impl
        full_env = dict(os.environ, LOG_LEVEL="verbose", WG_PROCESS_FOREGROUND="1")
        full_env.update(env or {})
        with open(log, "w") as out:
            proc = ns.popen(program, ifname, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        daemon = Daemon(ns, impl, ifname, proc, log)
        self.daemons.append(daemon)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if daemon.socket.exists() and ns.run("wg", "show", ifname, check=False).returncode == 0:
                return daemon
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{impl} {ifname} did not start:\n{daemon.log_tail()}")

    def configure(self, d: Daemon, address: str | list[str], port: int) -> None:
        key = self.tmp / f"{d.ifname}.key"
        key.write_text(b64(d.private_key) + "\n")
        key.chmod(0o600)
        d.port = port
        d.wg("set", d.ifname, "private-key", str(key), "listen-port", str(port))
        for addr in [address] if isinstance(address, str) else address:
            d.ns.run("ip", "addr", "add", addr, "dev", d.ifname)
        d.ns.run("ip", "link", "set", d.ifname, "up")

    def move(self, d: Daemon, ns: Namespace) -> None:
        """Move `d`'s TUN into `ns`, as netns.sh does: the daemon and its UDP sockets stay
        in the namespace it was started in, the interface is configured and used in `ns`."""
        d.ns.run("ip", "link", "set", d.ifname, "netns", ns.name)
        d.ns = ns

    def peer(self, d: Daemon, other: Daemon, allowed_ips: str, endpoint: str | None = None,
             *extra: str) -> None:
        args = ["set", d.ifname, "peer", b64(other.public_key), "allowed-ips", allowed_ips]
        if endpoint:
            args += ["endpoint", endpoint]
        d.wg(*args, *extra)

    # --- tearing down ---------------------------------------------------------------------------

    def stop(self, d: Daemon) -> int | None:
        """SIGTERM the daemon by pid; returns its exit status."""
        if d.proc is None:
            return None
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(STOP_TIMEOUT)
        return d.proc.returncode

    def close(self) -> None:
        for d in self.daemons:
            try:
                self.stop(d)
            except Exception:
                pass
            d.ns.run("ip", "link", "del", d.ifname, check=False)
            if d.socket.exists() and d.proc is not None:
                try:
                    d.socket.unlink()  # only ours: the name carries our tag
                except OSError:
                    pass
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns.name, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

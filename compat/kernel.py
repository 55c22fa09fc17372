"""Kernel WireGuard as a peer: a tiny QEMU VM (Debian kernel, `drivers/net/wireguard`) whose
only NIC is a tap in a network namespace the test owns, next to a wgpy daemon.

    netns wgpy-kp-<tag>                          QEMU VM (compat/kernel_peer/)
    wgpy  10.243.0.1/24 fd43::1/64   :51820      wg0  10.243.0.2/24 fd43::2/64   :51820
    tap   10.242.0.1/24 fd42::1/64   <-virtio->  eth0 10.242.0.2/24 fd42::2/64

`kernel_vm` (module scope) boots the VM once per test module; its wg0 has a private key and a
listen port but no peer. `kernel_pair` (per test) starts a fresh wgpy daemon with fresh keys in
the VM's namespace and leaves the peering to the test (`KernelPair.kernel_peer(...)`,
`KernelPair.wgpy_peer(...)`); at teardown it stops the daemon and removes every peer from the
VM's wg0, so each test begins without a session on either side.

The VM image is built on first use (`kernel_peer.sh build`: `apt-get download` of the Debian
kernel, then an initramfs), cached in $KP_CACHE (default /var/cache/kernel-peer), under a lock
so concurrent sessions do not build at once. Names carry the pid and a counter (Lab), so
sessions sharing the machine never collide. The VM is stopped by the script's `stop` (the QEMU
pid from its pidfile; SIGKILL on the recorded pid if it lingers), and the namespace is deleted
by the Lab, also when setup fails half-way.

Skip policy: as `require_root()` (compat/conftest.py): without the tools or when the VM cannot
be built or booted, the tests skip with the reason, or fail with WGPY_REQUIRE_ROOT=1.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from compat.lab import Daemon, Lab, Namespace, b64, run
from wgpy.testing.lab import InterfaceDump, PeerDump

__all__ = ["KernelVM", "KernelPair", "kernel_vm", "kernel_pair",
           "KERNEL_PEER_DIR", "TAP", "HOST_OUTER", "VM_OUTER", "WGPY_INNER", "VM_INNER", "PORT"]

KERNEL_PEER_DIR = Path(__file__).with_name("kernel_peer")
SCRIPT = KERNEL_PEER_DIR / "kernel_peer.sh"
CACHE = Path(os.environ.get("KP_CACHE", "/var/cache/kernel-peer"))
TOOLS = ("qemu-system-x86_64", "busybox", "cpio", "depmod", "modprobe", "dpkg-deb", "apt-get",
         "xz", "wg", "ip")
BUILD_TIMEOUT = 900.0  # first build: ~70 MB kernel package download plus the initramfs
START_TIMEOUT = 420.0  # the script itself waits up to 300 s for TCG (plus a 25 s KVM probe)
EXEC_TIMEOUT = 30.0

PORT = 51820
TAP = "kptap"
HOST_OUTER = {"ipv4": "10.242.0.1", "ipv6": "fd42::1"}  # the tap, in the namespace (wgpy side)
VM_OUTER = {"ipv4": "10.242.0.2", "ipv6": "fd42::2"}  # the VM's eth0
WGPY_INNER = {"ipv4": "10.243.0.1", "ipv6": "fd43::1"}
VM_INNER = {"ipv4": "10.243.0.2", "ipv6": "fd43::2"}
WGPY_ALLOWED = f"{WGPY_INNER['ipv4']}/32,{WGPY_INNER['ipv6']}/128"  # on the kernel's side
VM_ALLOWED = f"{VM_INNER['ipv4']}/32,{VM_INNER['ipv6']}/128"  # on wgpy's side


def endpoint(host: str, port: int = PORT) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unavailable(reason: str) -> None:
    """Skip, or fail under WGPY_REQUIRE_ROOT=1 (the policy of require_root())."""
    if os.environ.get("WGPY_REQUIRE_ROOT") == "1":
        pytest.fail(f"WGPY_REQUIRE_ROOT=1 but the kernel peer is unavailable: {reason}",
                    pytrace=False)
    pytest.skip(f"kernel peer unavailable: {reason}")


def _script_env() -> dict[str, str]:
    return dict(os.environ, KP_CACHE=str(CACHE))


def build_image() -> None:
    """Build (or find cached) the VM image, one builder at a time on this machine."""
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                proc = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True,
                                      timeout=BUILD_TIMEOUT, env=_script_env())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"cannot build the VM image in {CACHE}: {e}")
    if proc.returncode != 0:
        _unavailable(f"kernel_peer.sh build exited {proc.returncode}:\n{proc.stderr[-3000:]}")


@dataclass
class KernelVM:
    """The booted VM: wg0 with `public_key` on VM_OUTER:PORT, reached from `ns`."""

    lab: Lab
    ns: Namespace
    private_key: str
    public_key: str
    pid: int
    console: Path
    boot_seconds: float
    accel: str
    dirty: bool = False  # a reset failed: the next test resets again before it begins

    def exec(self, command: str, check: bool = True, timeout: float = EXEC_TIMEOUT
             ) -> subprocess.CompletedProcess[str]:
        """Run a busybox shell command in the VM (over its TCP control channel on eth0, so
        it never touches wg0's counters)."""
        proc = subprocess.run([str(SCRIPT), "exec", "--ns", self.ns.name, "--timeout",
                               str(int(timeout)), "--", command], capture_output=True,
                              text=True, timeout=timeout + 10, env=_script_env())
        if check and proc.returncode != 0:
            raise RuntimeError(f"VM: {command!r} exited {proc.returncode}: "
                               f"{proc.stdout.strip()} {proc.stderr.strip()}")
        return proc

    def wg(self, *args: str) -> str:
        return self.exec(shlex.join(["wg", *args])).stdout

    def dump(self) -> list[PeerDump]:
        return InterfaceDump.parse(self.wg("show", "wg0", "dump")).peers

    def reset(self) -> None:
        """No peers, the original listen port: the state every test starts from."""
        self.dirty = True
        self.exec("for p in $(wg show wg0 peers); do wg set wg0 peer $p remove; done; "
                  f"wg set wg0 listen-port {PORT}")
        self.dirty = False

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"


@dataclass
class KernelPair:
    """wgpy (`wgpy`, in `vm.ns`) and the VM's kernel wg0; no peers configured yet."""

    vm: KernelVM
    lab: Lab
    wgpy: Daemon

    @property
    def ns(self) -> Namespace:
        return self.vm.ns

    @property
    def wgpy_public(self) -> str:
        return b64(self.wgpy.public_key)

    def kernel_peer(self, endpoint: str | None = None, psk: str | None = None,
                    keepalive: int | None = None) -> None:
        """Give the kernel's wg0 the wgpy peer (replacing its settings where given)."""
        args = ["wg", "set", "wg0", "peer", self.wgpy_public, "allowed-ips", WGPY_ALLOWED]
        if endpoint:
            args += ["endpoint", endpoint]
        if keepalive is not None:
            args += ["persistent-keepalive", str(keepalive)]
        command = shlex.join(args)
        if psk is not None:
            command = (f"echo {shlex.quote(psk)} > /tmp/psk && "
                       f"{command} preshared-key /tmp/psk; rc=$?; rm -f /tmp/psk; exit $rc")
        self.vm.exec(command)

    def kernel_remove_peer(self) -> None:
        self.vm.wg("set", "wg0", "peer", self.wgpy_public, "remove")

    def wgpy_peer(self, endpoint: str | None = None, psk: str | None = None,
                  keepalive: int | None = None) -> None:
        """Give wgpy the kernel peer (replacing its settings where given)."""
        args = ["set", self.wgpy.ifname, "peer", self.vm.public_key, "allowed-ips", VM_ALLOWED]
        if endpoint:
            args += ["endpoint", endpoint]
        if keepalive is not None:
            args += ["persistent-keepalive", str(keepalive)]
        if psk is not None:
            path = self.lab.tmp / f"{self.wgpy.ifname}.psk"
            path.write_text(psk + "\n")
            path.chmod(0o600)
            args += ["preshared-key", str(path)]
        self.wgpy.wg(*args)

    def wgpy_remove_peer(self) -> None:
        self.wgpy.wg("set", self.wgpy.ifname, "peer", self.vm.public_key, "remove")

    def wgpy_dump(self) -> PeerDump:
        text = self.wgpy.wg("show", self.wgpy.ifname, "dump").stdout
        peers = InterfaceDump.parse(text).peers
        assert len(peers) == 1, f"wgpy {self.wgpy.ifname}: expected one peer: {text}"
        return peers[0]

    def kernel_dump(self) -> PeerDump:
        peers = [p for p in self.vm.dump() if p.public_key == self.wgpy_public]
        assert len(peers) == 1, f"kernel wg0: wgpy's peer not in dump: {self.vm.dump()}"
        return peers[0]

    def ping_from_wgpy(self, target: str, *opts: str) -> subprocess.CompletedProcess[str]:
        argv = ["ping", *(["-6"] if ":" in target else []),
                *(opts or ("-c", "3", "-i", "0.2", "-W", "2")), target]
        return self.ns.run(*argv, check=False, timeout=60)

    def ping_from_kernel(self, target: str, count: int = 3, wait: int = 2
                         ) -> subprocess.CompletedProcess[str]:
        """busybox ping in the VM: one request a second, then up to `wait` s for replies."""
        six = "-6 " if ":" in target else ""
        return self.vm.exec(f"ping {six}-c {count} -W {wait} {target}", check=False,
                            timeout=wait + count + 20)

    def logs(self) -> str:
        return (f"\n--- wgpy {self.wgpy.ifname} log tail ---\n{self.wgpy.log_tail(40)}"
                f"\n--- VM console tail ---\n{self.vm.console_tail(15)}")


def _stop_vm(ns: Namespace, pid: int | None) -> None:
    """The script's stop (QEMU by its pidfile, then the tap); SIGKILL the recorded pid if
    it is still our QEMU."""
    with contextlib.suppress(Exception):
        subprocess.run([str(SCRIPT), "stop", "--ns", ns.name], capture_output=True,
                       timeout=60, env=_script_env())
    if pid is None:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"qemu" in cmdline and f"run-{ns.name}/".encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_run_state(ns: Namespace) -> None:
    """The script's per-run folder (initrd copy of ~5 MB, console log, VM key)."""
    shutil.rmtree(CACHE / f"run-{ns.name}", ignore_errors=True)


def _parse_start(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def kernel_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelVM]:
    """A booted kernel WireGuard VM in a namespace of its own, shared by a test module."""
    from compat.conftest import require_root

    require_root()
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"needs {', '.join(missing)} on PATH (see .ci/run's apt-get line)")
    build_image()
    with Lab(tmp_path_factory.mktemp("kernel-peer")) as lab:
        ns = lab.namespace("kp")
        private_key = run("wg", "genkey").stdout.strip()
        conf = lab.tmp / "wg0.conf"
        conf.write_text(f"[Interface]\nPrivateKey = {private_key}\nListenPort = {PORT}\n")
        conf.chmod(0o600)
        pid = None
        try:
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    [str(SCRIPT), "start", "--ns", ns.name, "--tap", TAP,
                     "--host-addr", f"{HOST_OUTER['ipv4']}/24",
                     "--vm-addr", f"{VM_OUTER['ipv4']}/24",
                     "--vm-wg-addr", f"{VM_INNER['ipv4']}/24 {VM_INNER['ipv6']}/64",
                     "--wg-conf", str(conf), "--timeout", "3600"],
                    capture_output=True, text=True, timeout=START_TIMEOUT, env=_script_env())
            except subprocess.TimeoutExpired:
                _unavailable(f"kernel_peer.sh start took more than {START_TIMEOUT} s")
            if proc.returncode != 0:
                _unavailable(f"kernel_peer.sh start exited {proc.returncode}:\n"
                             f"{proc.stderr[-3000:]}")
            info = _parse_start(proc.stdout)
            pid = int(info["VM_PID"])
            vm = KernelVM(lab, ns, private_key, info["VM_PUBKEY"], pid,
                          Path(info["VM_CONSOLE"]), float(info["VM_BOOT_SECONDS"]),
                          info["VM_ACCEL"])
            print(f"\nkernel peer VM up: accel={vm.accel}, boot {vm.boot_seconds:.1f} s, "
                  f"start {time.monotonic() - started:.1f} s")
            # Outer IPv6 between the namespace and the VM.
            ns.run("ip", "addr", "add", f"{HOST_OUTER['ipv6']}/64", "dev", TAP, "nodad")
            vm.exec(f"/usr/sbin/ip addr add {VM_OUTER['ipv6']}/64 dev eth0 nodad")
            yield vm
        finally:
            _stop_vm(ns, pid)
            _remove_run_state(ns)


def wait_addresses_ready(ns: Namespace, dev: str, timeout: float = 10.0) -> None:
    """Bounded wait until no IPv6 address of `dev` is tentative (DAD)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ns.run("ip", "-6", "addr", "show", "dev", dev, "tentative").stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"{dev}: IPv6 address still tentative after {timeout} s")


@pytest.fixture
def kernel_pair(kernel_vm: KernelVM) -> Iterator[KernelPair]:
    """A fresh wgpy daemon (new keys, :PORT, WGPY_INNER) next to the module's kernel VM;
    no peer on either side yet."""
    lab = kernel_vm.lab
    if kernel_vm.dirty:
        kernel_vm.reset()
    d = lab.daemon(kernel_vm.ns, "wgpy")
    try:
        lab.configure(d, [f"{WGPY_INNER['ipv4']}/24", f"{WGPY_INNER['ipv6']}/64"], PORT)
        wait_addresses_ready(kernel_vm.ns, d.ifname)
        yield KernelPair(kernel_vm, lab, d)
    finally:
        with contextlib.suppress(Exception):
            lab.stop(d)
        kernel_vm.ns.run("ip", "link", "del", d.ifname, check=False)
        if d.socket.exists():
            with contextlib.suppress(OSError):
                d.socket.unlink()  # ours: the name carries the lab's tag
        lab.daemons.remove(d)
        with contextlib.suppress(Exception):
            kernel_vm.reset()  # sets `dirty` if it fails

"""wireguard-go's operational habits, and wgpy run as an operator runs it (issue 10):

- log lines on stdout, the first `Starting wgpy version X`; the kernel's interface name
  (`PREFIX%d`), the socket named after it; empty WG_TUN_FD/WG_UAPI_FD count as unset; an
  adopted TUN gets MTU 1420; the daemon is `wgpy IFNAME` to ps and pgrep; a thread that dies
  makes the daemon exit 2; a missing /dev/net/tun is explained; bad environment values get
  one clear line;
- contrib/wgpy-up, which configures an interface with wgpy, `wg setconf` and `ip` where
  wg-quick would use the kernel module;
- wg-quick@.service with contrib's drop-in (checked by systemd-analyze, then its ExecStart,
  ExecReload = `wg syncconf IF <(wg-quick strip IF)` and ExecStop run with its Environment),
  and `wg-quick save` of a wgpy interface.

Each test builds its namespaces with compat.lab and removes them, also on failure.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compat.lab import WG_RUN_DIR, WGPY, Lab, Namespace, b64, run
from compat.test_daemon import Background, daemon_pids, link_exists, wait_gone
from wgpy import __version__, crypto

ROOT = Path(__file__).resolve().parent.parent
WGPY_UP = ROOT / "contrib" / "wgpy-up"
DROPIN = ROOT / "contrib" / "wg-quick@.service.d" / "wgpy.conf"
UNIT_DIRS = (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))
VETH_A, VETH_B = "192.168.78.1", "192.168.78.2"
LOG_LINE = re.compile(r"^(DEBUG|ERROR): \((\S+)\) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d (.*)$")
_DAEMON_ENV = ("LOG_LEVEL", "WG_TUN_FD", "WG_UAPI_FD", "WG_PROCESS_FOREGROUND", "WGPY_SWITCH")


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in _DAEMON_ENV}
    clean.update(extra)
    return clean


def foreground(ns: Namespace, name: str, **extra: str) -> subprocess.Popen[str]:
    return ns.popen(WGPY, "-f", name, env=env(LOG_LEVEL="verbose", **extra),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out, err


def wait_served(ns: Namespace, ifname: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"wgpy exited {proc.returncode}: {proc.communicate()}")
        if ns.run("wg", "show", ifname, check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{ifname} not served")


def mtu(ns: Namespace, ifname: str) -> int:
    return int(re.search(r"mtu (\d+)", ns.run("ip", "link", "show", ifname).stdout)[1])


# --- wireguard-go's habits ---------------------------------------------------------------------

@pytest.mark.root
def test_kernel_name_logs_on_stdout_and_empty_fds() -> None:
    """`wgpy -f 'PREFIX%d'` with WG_TUN_FD= and WG_UAPI_FD= (empty: unset) creates PREFIX0,
    names its socket and its log prefix after it, and logs wireguard-go's lines on stdout,
    the first with the version; nothing goes to stderr; it exits 0 on SIGTERM."""
    with Lab() as lab:
        ns = lab.namespace("kn")
        pattern = f"w{lab.tag}%d"
        real = pattern.replace("%d", "0")
        proc = foreground(ns, pattern, WG_TUN_FD="", WG_UAPI_FD="")
        try:
            wait_served(ns, real, proc)
            assert (WG_RUN_DIR / f"{real}.sock").exists()
            assert not (WG_RUN_DIR / f"{pattern}.sock").exists()
            assert mtu(ns, real) == 1420
        finally:
            status, out, err = stop(proc)
            ns.run("ip", "link", "del", real, check=False)
        print(out)
        assert status == 0, err
        assert err == "", err
        lines = out.splitlines()
        assert lines and all(LOG_LINE.match(line) for line in lines), out
        first = LOG_LINE.match(lines[0])
        assert first is not None and first[2] == real, lines[0]
        assert first[3] == f"Starting wgpy version {__version__}", lines[0]
        assert "Shutting down: signal SIGTERM" in out


@pytest.mark.root
def test_adopted_tun_gets_default_mtu() -> None:
    """A TUN handed over in WG_TUN_FD with MTU 1500 is set to 1420, as wireguard-go's
    CreateTUNFromFile does."""
    with Lab() as lab:
        ns = lab.namespace("ad")
        name = lab.ifname()
        adopt = (
            "import os, sys\n"
            "from wgpy.device.tun import Tun\n"
            f"tun = Tun.create({name!r}, mtu=1500)\n"
            "os.set_inheritable(tun.fd, True)\n"
            "os.environ['WG_TUN_FD'] = str(tun.fd)\n"
            f"os.execv({WGPY!r}, [{WGPY!r}, '-f', {name!r}])\n")
        proc = ns.popen(sys.executable, "-c", adopt, env=env(LOG_LEVEL="verbose"),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL)
        try:
            wait_served(ns, name, proc)
            assert mtu(ns, name) == 1420
        finally:
            status, out, err = stop(proc)
            ns.run("ip", "link", "del", name, check=False)
        assert status == 0, out + err


@pytest.mark.root
def test_process_title_and_pgrep() -> None:
    """The daemonized wgpy (a `python -m wgpy` underneath) is `wgpy IFNAME` to ps and
    /proc/PID/cmdline, and `wgpy` to pgrep -x and ps -C."""
    with Lab() as lab, Background() as bg:
        ns = lab.namespace("pt")
        name = lab.ifname()
        assert bg.start(ns, name).returncode == 0
        pid = bg.the_daemon(ns, name)
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "wgpy"
        args = run("ps", "-o", "args=", "-p", str(pid)).stdout.strip()
        assert args == f"wgpy {name}", args
        assert str(pid) in run("pgrep", "-x", "wgpy").stdout.split()
        assert str(pid) in run("pgrep", "-f", f"^wgpy {name}$").stdout.split()
        assert str(pid) in run("ps", "-C", "wgpy", "-o", "pid=").stdout.split()
        assert daemon_pids(ns, name) == [pid]


@pytest.mark.root
def test_thread_crash_exits_non_zero() -> None:
    """A device thread that dies of an exception stops the daemon with status 2 (a Go
    panic's), its socket removed and its interface gone, the failure logged."""
    with Lab() as lab:
        ns = lab.namespace("cr")
        name = lab.ifname()
        crash = (
            "import sys\n"
            "from wgpy.device.device import Device\n"
            "def broken(self): raise RuntimeError('injected failure')\n"
            "Device._timers = broken\n"
            "from wgpy.cli import main\n"
            f"sys.exit(main(['-f', {name!r}]))\n")
        proc = ns.popen(sys.executable, "-c", crash, env=env(), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            ns.run("ip", "link", "del", name, check=False)
        print(out, err)
        assert proc.returncode == 2, out + err
        assert "thread timers failed: RuntimeError('injected failure')" in out, out
        assert not (WG_RUN_DIR / f"{name}.sock").exists()


@pytest.mark.root
def test_missing_dev_net_tun_says_what_to_do() -> None:
    with Lab() as lab:
        ns = lab.namespace("nt")
        name = lab.ifname()
        result = ns.run("unshare", "--mount", "--", "sh", "-c",
                        f'mount -t tmpfs tmpfs /dev/net && exec "$0" {name}', WGPY,
                        check=False, env=env())
        print(result.stdout, result.stderr)
        assert result.returncode == 1
        assert "--device /dev/net/tun" in result.stdout
        assert "mknod /dev/net/tun c 10 200" in result.stdout
        assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.root
@pytest.mark.parametrize(("variable", "value", "message"), [
    ("WG_UAPI_FD", "socket", "WG_UAPI_FD='socket' is not a file descriptor number"),
    ("WG_UAPI_FD", "0", "UAPI listen error"),
    ("WG_TUN_FD", "2", "Failed to create TUN device: fd 2 is not a TUN"),
])
def test_bad_fd_variables_get_one_line(variable: str, value: str, message: str) -> None:
    with Lab() as lab:
        ns = lab.namespace("bf")
        name = lab.ifname()
        result = ns.run(WGPY, "-f", name, check=False, env=env(**{variable: value}))
        ns.run("ip", "link", "del", name, check=False)
        print(result.stdout, result.stderr)
        assert result.returncode == 1
        assert message in result.stdout, result.stdout
        assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.stderr
        assert not link_exists(ns, name)


# --- a wireguard-go peer and a config for the wgpy side ---------------------------------------

def peer_lab(lab: Lab) -> tuple[Namespace, Namespace, object, bytes]:
    """a (for wgpy) and b (wireguard-go on 10.78.0.2/24, port 51821) over a veth; returns
    a, b, wireguard-go's daemon and a private key for the wgpy side, which b knows as its
    peer 10.78.0.1/32 with endpoint VETH_A:51820; b also routes 10.78.9.0/24 to it."""
    a, b = lab.namespace("oa"), lab.namespace("ob")
    lab.link(a, b, f"{VETH_A}/24", f"{VETH_B}/24")
    wb = lab.daemon(b, "wireguard-go")
    lab.configure(wb, ["10.78.0.2/24", "fd78::2/64"], 51821)
    b.run("ip", "addr", "add", "10.78.5.1/32", "dev", "lo")
    private = crypto.generate_private_key()
    wb.wg("set", wb.ifname, "peer", b64(crypto.public_key(private)),
          "allowed-ips", "10.78.0.1/32,fd78::1/128", "endpoint", f"{VETH_A}:51820")
    return a, b, wb, private


def conf_text(private: bytes, peer_public: bytes, extra_interface: str = "",
              allowed: str = "10.78.0.2/32, fd78::2/128, 10.78.5.0/24") -> str:
    return f"""[Interface]
PrivateKey = {b64(private)}
ListenPort = 51820
Address = 10.78.0.1/32, fd78::1/128
{extra_interface}
[Peer]
PublicKey = {b64(peer_public)}
AllowedIPs = {allowed}
Endpoint = {VETH_B}:51821
"""


def ping(ns: Namespace, address: str, context: str = "") -> None:
    result = ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", address, check=False,
                    timeout=15)
    assert result.returncode == 0, f"ping {address} from {ns.name}:\n{result.stdout}{context}"


@pytest.mark.root
def test_wgpy_up_configures_like_wg_quick() -> None:
    """contrib/wgpy-up: wgpy started, wg setconf of `wg-quick strip`, addresses, MTU, routes
    for the allowed IPs (a /0 is skipped with a note), DNS left out without resolvconf; ping
    both ways; `ip link del` stops the daemon."""
    with Lab() as lab, Background() as bg:
        a, b, wb, private = peer_lab(lab)
        name = lab.ifname()
        bg.own(a, name)
        other = b64(crypto.public_key(crypto.generate_private_key()))
        conf = lab.tmp / f"{name}.conf"
        conf.touch(mode=0o600)
        conf.write_text(conf_text(private, wb.public_key, "MTU = 1380\nDNS = 10.78.0.53\n"
                                  "PostUp = echo never run\n")
                        + f"\n[Peer]\nPublicKey = {other}\nAllowedIPs = 0.0.0.0/0\n")
        result = a.run(str(WGPY_UP), str(conf), check=False,
                       env=env(WGPY=WGPY, PATH=os.environ["PATH"]))
        print(result.stdout, result.stderr)
        assert result.returncode == 0, result.stderr
        assert f"[#] {WGPY} {name}" in result.stderr
        assert "PostUp is wg-quick's: ignored" in result.stderr
        assert ("left out: resolvconf is not installed" in result.stderr
                or "resolvconf -a" in result.stderr)
        assert "0.0.0.0/0: a default route" in result.stderr

        showconf = a.run("wg", "showconf", name).stdout
        assert b64(wb.public_key) in showconf and "10.78.5.0/24" in showconf
        assert mtu(a, name) == 1380
        addrs = a.run("ip", "addr", "show", "dev", name).stdout
        assert "10.78.0.1/32" in addrs and "fd78::1/128" in addrs, addrs
        routes = a.run("ip", "route", "show", "dev", name).stdout
        assert "10.78.5.0/24" in routes and "10.78.0.2" in routes, routes
        assert "default" not in a.run("ip", "route").stdout.split(f"dev {name}")[0]
        assert "fd78::2" in a.run("ip", "-6", "route", "show", "dev", name).stdout

        ping(a, "10.78.0.2", wb.log_tail())
        ping(a, "10.78.5.1", wb.log_tail())
        ping(a, "fd78::2", wb.log_tail())
        ping(b, "10.78.0.1", wb.log_tail())

        pid = bg.the_daemon(a, name)
        a.run("ip", "link", "del", name)
        assert wait_gone(pid) is not None, "wgpy still runs after ip link del"
        assert not (WG_RUN_DIR / f"{name}.sock").exists()


# --- systemd: wg-quick@.service with the drop-in; wg-quick save; wg syncconf --------------------

def unit_file() -> Path:
    for directory in UNIT_DIRS:
        if (directory / "wg-quick@.service").exists():
            return directory / "wg-quick@.service"
    pytest.fail("wg-quick@.service not installed (wireguard-tools)")


def service_section(path: Path) -> dict[str, list[str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       dict_type=dict)  # type: ignore[arg-type]
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():  # repeated keys: configparser keeps one
        m = re.match(r"^(\w+)=(.*)$", line.strip())
        if m:
            values.setdefault(m[1], []).append(m[2])
    return values


def test_systemd_dropin_verifies(tmp_path: Path) -> None:
    """systemd-analyze reads wg-quick@.service with the drop-in without a complaint, and the
    drop-in's path is absolute."""
    if not Path("/usr/bin/systemd-analyze").exists() or not any(
            (d / "wg-quick@.service").exists() for d in UNIT_DIRS):
        pytest.skip("needs systemd-analyze and wireguard-tools' wg-quick@.service")
    env_lines = service_section(DROPIN)["Environment"]
    impl = [v.split("=", 1)[1] for v in env_lines
            if v.startswith("WG_QUICK_USERSPACE_IMPLEMENTATION=")]
    assert len(impl) == 1 and impl[0].startswith("/") and impl[0].endswith("/bin/wgpy"), impl
    (tmp_path / "wg-quick@.service.d").mkdir()
    (tmp_path / "wg-quick@.service").write_text(unit_file().read_text())
    (tmp_path / "wg-quick@.service.d" / "wgpy.conf").write_text(DROPIN.read_text())
    result = run("systemd-analyze", "verify", "--man=no", "wg-quick@wg0.service",
                 check=False, env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:"))
    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert "wgpy.conf" not in result.stderr, result.stderr  # no warning about the drop-in


def unit_command(line: str, instance: str) -> list[str]:
    return shlex.split(line.replace("%i", instance).replace("%I", instance))


@pytest.mark.root
def test_wg_quick_service_with_dropin_save_and_syncconf() -> None:
    """wg-quick@NAME.service as systemd would run it with the drop-in: ExecStart (wg-quick up
    starts wgpy from the drop-in's absolute path, here the test's), a ping, `wg-quick save`
    after a runtime change, ExecReload (`wg syncconf NAME <(wg-quick strip NAME)`) after an
    edit of the file, and ExecStop."""
    unit = service_section(unit_file())
    dropin = service_section(DROPIN)
    with Lab() as lab, Background() as bg:
        a, b, wb, private = peer_lab(lab)
        name = lab.ifname()
        bg.own(a, name)
        conf = Path(f"/etc/wireguard/{name}.conf")  # %i is the name; the tag keeps it ours
        conf.parent.mkdir(mode=0o700, exist_ok=True)
        service_env = env(LOG_LEVEL="")
        for assignment in unit.get("Environment", []) + dropin["Environment"]:
            key, _, value = assignment.partition("=")
            service_env[key] = value
        # The drop-in's /opt/wgpy/bin/wgpy is where the README installs it; here, the test's.
        assert service_env["WG_QUICK_USERSPACE_IMPLEMENTATION"].startswith("/")
        service_env["WG_QUICK_USERSPACE_IMPLEMENTATION"] = WGPY

        def service(kind: str) -> subprocess.CompletedProcess[str]:
            (line,) = unit[kind]
            result = a.run(*unit_command(line, name), check=False, env=service_env)
            print(f"{kind}:", result.stdout, result.stderr)
            assert result.returncode == 0, f"{kind} {line}: {result.stderr}"
            return result

        try:
            conf.touch(mode=0o600)
            conf.write_text(conf_text(private, wb.public_key))
            up = service("ExecStart")
            assert f"[#] {WGPY} {name}" in up.stderr, up.stderr
            ping(a, "10.78.0.2", wb.log_tail())
            pid = bg.the_daemon(a, name)

            # wg-quick save: a peer added at run time is written to the file, with the
            # addresses wg-quick read from the interface.
            extra = b64(crypto.public_key(crypto.generate_private_key()))
            a.run("wg", "set", name, "peer", extra, "allowed-ips", "10.78.7.0/24")
            save = a.run("wg-quick", "save", name, check=False, env=service_env)
            assert save.returncode == 0, save.stderr
            saved = conf.read_text()
            assert extra in saved and "10.78.7.0/24" in saved, saved
            assert re.search(r"Address = .*10\.78\.0\.1/32", saved), saved
            assert "ListenPort = 51820" in saved, saved

            # ExecReload: the file loses that peer and gains an allowed IP; syncconf applies
            # the difference to the running wgpy, whose session with wireguard-go goes on.
            conf.write_text(conf_text(private, wb.public_key,
                                      allowed="10.78.0.2/32, fd78::2/128, 10.78.5.0/24, "
                                              "10.78.6.0/24"))
            service("ExecReload")
            dump = a.run("wg", "show", name, "allowed-ips").stdout
            assert extra not in dump and "10.78.6.0/24" in dump, dump
            assert bg.the_daemon(a, name) == pid, "syncconf restarted the daemon"
            ping(a, "10.78.0.2", wb.log_tail())

            service("ExecStop")
            assert wait_gone(pid) is not None, "wgpy still runs after ExecStop"
            assert not (WG_RUN_DIR / f"{name}.sock").exists()
            assert not link_exists(a, name)
        finally:
            for path in conf.parent.glob(f"{name}.conf*"):
                path.unlink()

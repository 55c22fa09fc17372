"""The container image (contrib/Containerfile, contrib/compose.yaml) without a container
engine: its entry command is read from the Containerfile (ENTRYPOINT + CMD, ENV) and run the
way a runtime runs it, so the two cannot drift apart:

- in a fresh network namespace (the lab's), a new mount namespace whose root is read-only
  with a tmpfs on /run (`--read-only --tmpfs /run`), and a new PID namespace in which the
  entry command is PID 1;
- as uid 0 with every capability but CAP_NET_ADMIN dropped (setpriv: inheritable, ambient
  and bounding sets), as `--cap-drop ALL --cap-add NET_ADMIN` does;
- with the image's ENV only, its /opt/wgpy virtual environment being the test's own.

(compat/test_podman.py runs the image itself, built, under podman; this test is for hosts
without an engine, and reads the final stage of the two-stage Containerfile.)

`docker exec` is nsenter into the same namespaces with the same capabilities. The image's
wgpy then serves wg0, `wgpy-up` configures it, and a wireguard-go peer in another namespace
pings through it; wg-quick run in the container starts a second wgpy (this host has no
kernel module) and pings too; `docker stop` is SIGTERM to PID 1, which exits 0. Without
`--device /dev/net/tun` the entry command fails with a message that says so.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from compat.lab import WGPY, Lab, Namespace, b64
from wgpy import __version__, crypto

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "contrib" / "Containerfile"
COMPOSE = ROOT / "contrib" / "compose.yaml"
WGPY_UP = ROOT / "contrib" / "wgpy-up"
IMAGE_VENV = "/opt/wgpy"  # where the Containerfile installs wgpy; here the test's venv
TEST_VENV_BIN = str(Path(WGPY).parent)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's
CAPS = "-all,+net_admin"
CAP_NET_ADMIN = 1 << 12
STOP_TIMEOUT = 5.0
VETH_A, VETH_B = "192.168.79.1", "192.168.79.2"


# --- the image, as its Containerfile declares it ------------------------------------------------

@dataclass
class Image:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]

    @property
    def command(self) -> list[str]:
        return self.entrypoint + self.cmd


def stages(text: str) -> list[str]:
    """The build stages, each from its FROM line on, with continuation lines joined and
    comments left out."""
    joined = re.sub(r"\\\n", " ", text)
    found: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.split(" ", 1)[0].upper() == "FROM":
            found.append([])
        assert found, f"an instruction before FROM: {line}"
        found[-1].append(line)
    return ["\n".join(stage) for stage in found]


def parse_containerfile(text: str) -> Image:
    """The final stage's (the image's) ENTRYPOINT and CMD (exec form only: a shell form
    would make sh PID 1, and SIGTERM would not reach wgpy) and ENV."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    env: dict[str, str] = {}
    for line in stages(text)[-1].splitlines():
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)  # exec form: a JSON array
            assert isinstance(value, list), f"{instruction} must be a JSON array: {rest}"
            if instruction == "ENTRYPOINT":
                entrypoint = value
            else:
                cmd = value
        elif instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value.replace("$PATH", env.get("PATH", DEFAULT_PATH))
    return Image(entrypoint, cmd, env)


def image() -> Image:
    return parse_containerfile(CONTAINERFILE.read_text())


def runtime_env(img: Image) -> list[str]:
    """The image's ENV as `env -i` arguments, its /opt/wgpy being the test's venv."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/root", **img.env}
    return [f"{k}={v.replace(IMAGE_VENV + '/bin', TEST_VENV_BIN)}" for k, v in env.items()]


def test_containerfile_and_compose() -> None:
    """The image runs `wgpy -f IFNAME` as PID 1 (exec form), logs at a level that shows the
    startup line, installs wgpy with pip into /opt/wgpy (the path of the systemd drop-in
    too); compose asks for NET_ADMIN and /dev/net/tun only, read-only with /run on tmpfs."""
    img = image()
    assert img.entrypoint[:2] == ["wgpy", "-f"] and len(img.command) == 3, img.command
    assert img.env.get("LOG_LEVEL") == "verbose"
    assert img.env["PATH"].startswith(f"{IMAGE_VENV}/bin:"), img.env["PATH"]
    assert img.env["WG_QUICK_USERSPACE_IMPLEMENTATION"] == f"{IMAGE_VENV}/bin/wgpy"
    text = CONTAINERFILE.read_text()
    build, final = stages(text)
    assert re.match(r"FROM debian:\S+-slim AS build\n", build), "not Debian slim"
    assert re.match(r"FROM debian:\S+-slim\n", final), "not Debian slim"
    assert f"python3 -m venv {IMAGE_VENV}" in build and f"{IMAGE_VENV}/bin/pip install" in build
    # The builder's pip settings and CA as build secrets, optional; the versions pinned.
    assert "--mount=type=secret,id=pipconf --mount=type=secret,id=ca" in build
    assert "PIP_CONFIG_FILE=/run/secrets/pipconf" in build and "PIP_CERT=/run/secrets/ca" in build
    assert "PIP_CONSTRAINT=/src/contrib/constraints.txt" in build
    assert "import wgpy._fastpath" in build  # the build fails without the compiled path
    assert "pip uninstall -q -y pip setuptools" in build
    # The image: the venv and what runs it, nothing of the build.
    assert f"COPY --from=build {IMAGE_VENV} {IMAGE_VENV}" in final
    for tool in ("gcc", "python3-dev", "libssl-dev", "python3-venv", "pip install", "secret"):
        assert tool not in final, tool
    assert "libssl3" in final and "wireguard-tools" in final and "iproute2" in final
    assert re.search(r"^HEALTHCHECK .*CMD .*wg show", final, re.M), final
    assert "STOPSIGNAL SIGTERM" in final
    assert "COPY contrib/wgpy-up /usr/local/bin/wgpy-up" in final
    ignored = (ROOT / ".containerignore").read_text().split()
    for path in (".git", ".venv", "build", "**/__pycache__", "**/*.so"):
        assert path in ignored, path
    dropin = (ROOT / "contrib" / "wg-quick@.service.d" / "wgpy.conf").read_text()
    assert f"Environment=WG_QUICK_USERSPACE_IMPLEMENTATION={IMAGE_VENV}/bin/wgpy\n" in dropin

    compose = COMPOSE.read_text()
    body = "\n".join(line.split("#", 1)[0].rstrip() for line in compose.splitlines())
    assert "cap_drop: [ALL]" in body and "cap_add: [NET_ADMIN]" in body, body
    assert "privileged" not in body
    assert 'devices: ["/dev/net/tun:/dev/net/tun"]' in body, body
    assert "read_only: true" in body and "tmpfs: [/run]" in body, body
    assert "dockerfile: contrib/Containerfile" in body


def test_constraints_pin_every_dependency() -> None:
    """contrib/constraints.txt pins each runtime dependency in pyproject.toml (and the build
    backend) to one version within the bounds pyproject.toml gives."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "contrib" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), f"not exact: {line}"
            pins[name.strip().lower().replace("_", "-")] = version
    pyproject = (ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S)
    backend = re.search(r"^requires = \[(.*?)\]", pyproject, re.M)
    assert dependencies and backend
    required = re.findall(r'"([^"]+)"', dependencies.group(1) + backend.group(1))
    assert len(required) >= 6, required
    for text in required:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in contrib/constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}: {text}"
    for name in ("cffi", "pycparser"):  # cryptography's and pynacl's own
        assert name in pins, name


# --- a container runtime, made of unshare, setpriv and nsenter ---------------------------------

class Container:
    """The image's entry command as PID 1 of a sandbox in `ns` (see the module's doc)."""

    def __init__(self, lab: Lab, ns: Namespace, hide_tun: bool = False) -> None:
        self.img = image()
        self.env = runtime_env(self.img)
        self.out = lab.tmp / "container.stdout"
        self.err = lab.tmp / "container.stderr"
        setup = "mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run && " \
                "mount -o remount,bind,ro / && "
        if hide_tun:  # no --device /dev/net/tun
            setup += "mount -t tmpfs -o mode=0755 tmpfs /dev/net && "
        script = setup + f'exec setpriv {self._caps()} -- env -i "$@"'
        argv = ["ip", "netns", "exec", ns.name, "unshare", "--mount", "--pid", "--fork",
                "--mount-proc", "--", "sh", "-c", script, "sh", *self.env, *self.img.command]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err)
        self.init_pid = self._find_init()

    @staticmethod
    def _caps() -> str:
        return f"--inh-caps={CAPS} --ambient-caps={CAPS} --bounding-set={CAPS}"

    def _find_init(self) -> int | None:
        """The host pid of PID 1 in the sandbox (unshare's one child)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                children = path.read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.02)
        return None

    def exec(self, *argv: str, check: bool = True, timeout: float = 30
             ) -> subprocess.CompletedProcess[str]:
        """`docker exec`: the sandbox's namespaces, capabilities and ENV."""
        assert self.init_pid is not None
        if argv[0] == "wgpy-up":  # the image's /usr/local/bin/wgpy-up is contrib/wgpy-up
            argv = (str(WGPY_UP), *argv[1:])
        full = ["nsenter", "-t", str(self.init_pid), "-n", "-m", "-p", "--", "setpriv",
                *self._caps().split(), "--", "env", "-i", *self.env, *argv]
        # Files, not pipes: a daemon started with LOG_LEVEL set keeps them (as wireguard-go).
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            status = subprocess.run(full, stdout=out, stderr=err, timeout=timeout,
                                    stdin=subprocess.DEVNULL).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(full, status, out.read(), err.read())
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}\n{self.logs()}")
        return proc

    def wait_ready(self, ifname: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"entry command exited:\n{self.logs()}"
            if self.exec("wg", "show", ifname, check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"{ifname} not served after 15 s:\n{self.logs()}")

    def stop(self) -> int:
        """`docker stop`: SIGTERM to PID 1, SIGKILL after STOP_TIMEOUT; the exit status."""
        if self.proc.poll() is None and self.init_pid is not None:
            os.kill(self.init_pid, signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            if self.init_pid is not None:
                try:
                    os.kill(self.init_pid, signal.SIGKILL)  # takes the PID namespace along
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def logs(self) -> str:
        return (f"--- stdout:\n{self.stdout()}\n--- stderr:\n"
                f"{self.err.read_text(errors='replace')}")


def status_field(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(field)


def ping(ns: Namespace, address: str, context: str) -> None:
    result = ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", address, check=False,
                    timeout=15)
    assert result.returncode == 0, f"ping {address} from {ns.name}:\n{result.stdout}{context}"


def write_conf(path: Path, private: bytes, port: int, address: str, peer_public: bytes,
               allowed: str, endpoint: str) -> None:
    path.touch(mode=0o600)
    path.write_text(f"""[Interface]
PrivateKey = {b64(private)}
ListenPort = {port}
Address = {address}

[Peer]
PublicKey = {b64(peer_public)}
AllowedIPs = {allowed}
Endpoint = {endpoint}
""")


@pytest.mark.root
def test_image_entry_command_serves_a_tunnel() -> None:
    """PID 1 `wgpy -f wg0` with CAP_NET_ADMIN only; `wgpy-up` configures it, wireguard-go
    pings through it, its logs are on stdout, and SIGTERM stops it with status 0; wg-quick
    run in the container brings up a second interface with wgpy, which pings too."""
    with Lab() as lab:
        a, b = lab.namespace("ca"), lab.namespace("cb")
        lab.link(a, b, f"{VETH_A}/24", f"{VETH_B}/24")
        wb = lab.daemon(b, "wireguard-go")
        lab.configure(wb, "10.79.0.2/24", 51821)
        box = Container(lab, a)
        try:
            ifname = box.img.cmd[0]
            box.wait_ready(ifname)
            pid = box.init_pid
            assert pid is not None
            # PID 1 of its namespace, CAP_NET_ADMIN and nothing else, titled `wgpy wg0`.
            assert status_field(pid, "NSpid").split()[-1] == "1"
            for caps in ("CapEff", "CapPrm", "CapBnd"):
                assert int(status_field(pid, caps), 16) == CAP_NET_ADMIN, caps
            assert Path(f"/proc/{pid}/comm").read_text().strip() == "wgpy"
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            assert title == f"wgpy {ifname}", title
            # The socket is on the container's own /run; the root is read-only.
            box.exec("test", "-S", f"/run/wireguard/{ifname}.sock")
            assert box.exec("touch", "/wgpy-ro-probe", check=False).returncode != 0

            private = crypto.generate_private_key()
            conf = lab.tmp / f"{ifname}.conf"
            write_conf(conf, private, 51820, "10.79.0.1/24", wb.public_key,
                       "10.79.0.2/32", f"{VETH_B}:51821")
            up = box.exec("wgpy-up", str(conf))
            print(up.stderr)
            assert "already served" in up.stderr, up.stderr
            wb.wg("set", wb.ifname, "peer", b64(crypto.public_key(private)),
                  "allowed-ips", "10.79.0.1/32", "endpoint", f"{VETH_A}:51820")
            ping(b, "10.79.0.1", box.logs() + wb.log_tail())
            ping(a, "10.79.0.2", box.logs() + wb.log_tail())
            shown = box.exec("wg", "show", ifname, "latest-handshakes").stdout.split()
            assert int(shown[1]) > 0, shown

            # wg-quick in the container: no kernel module here, so it starts wgpy (from the
            # image's WG_QUICK_USERSPACE_IMPLEMENTATION), which daemonizes under PID 1.
            second = lab.ifname()
            private2 = crypto.generate_private_key()
            conf2 = lab.tmp / f"{second}.conf"
            write_conf(conf2, private2, 51822, "10.79.1.1/24", wb.public_key,
                       "10.79.1.2/32", f"{VETH_B}:51821")
            wb.wg("set", wb.ifname, "peer", b64(crypto.public_key(private2)),
                  "allowed-ips", "10.79.1.1/32", "endpoint", f"{VETH_A}:51822")
            b.run("ip", "addr", "add", "10.79.1.2/24", "dev", wb.ifname)
            quick = box.exec("wg-quick", "up", str(conf2))
            print(quick.stderr)
            assert f"[#] {TEST_VENV_BIN}/wgpy {second}" in quick.stderr, quick.stderr
            ping(b, "10.79.1.1", box.logs() + wb.log_tail())
            down = box.exec("wg-quick", "down", str(conf2))
            assert box.exec("wg", "show", second, check=False).returncode != 0, down.stderr
            ping(b, "10.79.0.1", box.logs())  # the first tunnel is untouched

            status = box.stop()
            assert status == 0, f"exit status {status} after SIGTERM:\n{box.logs()}"
        finally:
            box.kill()
        out = box.stdout()
        print(out)
        assert f"DEBUG: ({ifname}) " in out and f"Starting wgpy version {__version__}" in out
        assert re.search(rf"^DEBUG: \({ifname}\) \d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d Starting wgpy",
                         out, re.M), out
        assert "Shutting down: signal SIGTERM" in out, out
        assert "Traceback" not in box.logs()


@pytest.mark.root
def test_image_without_tun_device_says_what_to_do() -> None:
    """`docker run` without `--device /dev/net/tun`: exit 1, and the one log line names the
    option (and mknod, for a host)."""
    with Lab() as lab:
        a = lab.namespace("cn")
        box = Container(lab, a, hide_tun=True)
        try:
            status = box.proc.wait(15)
        finally:
            box.kill()
        out = box.stdout()
        print(out)
        assert status == 1, box.logs()
        assert "Failed to create TUN device" in out, box.logs()
        assert "--device /dev/net/tun" in out and "mknod /dev/net/tun c 10 200" in out, out
        assert "Traceback" not in box.logs()

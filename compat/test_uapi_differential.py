"""Differential test: uapi.protocol's errno for ~2,800 `set` lines against the running
reference (Debian's wireguard-go 0.0.20220316), and the printed form of what it accepted.

Needs root (a throwaway network namespace): marked `root`, so compat/conftest.py skips it
otherwise, or fails it when WGPY_REQUIRE_ROOT=1. The daemons themselves, side by side, are
compared in test_uapi_compat.py; this file checks the sans-IO parser and server alone.
The one deliberate difference, ``allowed_ip=-prefix``, is left out. Endpoint zones are
resolved the way the reference's Linux bind does (uapi.values.resolve_zone) against the
namespace's interfaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat.conftest import require_root
from uapi.operations import PeerAllowedIP, PeerEndpoint
from uapi.protocol import RequestError, ServerConnection, SetRequestEnd
from uapi.values import format_endpoint, format_network, resolve_zone

pytestmark = pytest.mark.root

PEER = b"public_key=" + b"01" * 32 + b"\n"


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[str, dict[str, int]]]:
    """(socket path, interface name → index) of wireguard-go in its own namespace."""
    require_root()
    ns = f"uapidiff{os.getpid()}"
    ifname = f"wgud{os.getpid() % 100000}"
    path = f"/var/run/wireguard/{ifname}.sock"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    proc = None
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "wireguard-go", "-f", ifname],
            env={**os.environ, "LOG_LEVEL": "silent"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not os.path.exists(path):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("wireguard-go did not create its UAPI socket")
            time.sleep(0.02)
        links = subprocess.run(["ip", "-n", ns, "-o", "link"], check=True, timeout=10,
                               capture_output=True, text=True).stdout
        names = {}
        for line in links.splitlines():
            index, name = line.split(":")[:2]
            names[name.strip().split("@")[0]] = int(index)
        yield path, names
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        subprocess.run(["ip", "netns", "del", ns], timeout=10)


def ours(body: bytes, names: dict[str, int]) -> tuple[int, list[object]]:
    conn = ServerConnection()
    conn.receive_data(b"set=1\n" + body + b"\n")
    ops: list[object] = []
    for event in conn.events():
        if isinstance(event, RequestError):
            return event.errno, ops
        if isinstance(event, SetRequestEnd):
            break
        if isinstance(event, PeerEndpoint) and event.scope is not None:
            try:
                resolve_zone(event.scope, names.get)
            except ValueError:
                return -22, ops  # what the device answers
        ops.append(event)
    return 0, ops


def exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    reply = b""
    while not reply.endswith(b"\n\n"):
        chunk = sock.recv(65536)
        assert chunk, "the reference closed the connection"
        reply += chunk
    return reply


def theirs(path: str, body: bytes) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        assert exchange(sock, b"set=1\nreplace_peers=true\n\n") == b"errno=0\n\n"
        reply = exchange(sock, b"set=1\n" + body + b"\n")
        errno = int(reply.split(b"=")[1])
        return errno, exchange(sock, b"get=1\n\n")


def cases() -> list[bytes]:
    v4 = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04", "1.2.3.256", "1.2.3",
          "1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ", " 1.2.3.4", "1.2.3.a"]
    v6 = ["::", "::1", "1::", "1::2", "fe80::1", "FE80::1", "::ffff:1.2.3.4", "::FFFF:1.2.3.4",
          "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
          "1::2::3", ":1::", "1::2:", "00001::", "10000::", "1:2:3:4:5:6:1.2.3.4",
          "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "::01.2.3.4", "1:0:0:1:0:0:0:1",
          "0:0:1:0:0:1:0:0", ":::", "::g", "1:2:3:4:5:6:7", "1.2.3.4::"]
    bits = ["0", "8", "32", "33", "128", "129", "+8", "-0", "-1", "08", "", " 8", "0x8", "1_0",
            "+", "-", "0" * 25 + "8"]
    out: list[bytes] = []
    for a in v4 + v6:
        out += [f"allowed_ip={a}/{b}".encode() for b in bits]
        out += [f"allowed_ip={a}".encode(), f"allowed_ip={a}%lo/8".encode()]
        for port in ["0", "51820", "65536", "+1", "01", "", " 1"]:
            for host in [a, f"[{a}]", f"[{a}%lo]", f"[{a}%1]", f"[{a}%eth9]", f"[{a}%]"]:
                out.append(f"endpoint={host}:{port}".encode())
    numbers = ["0", "1", "65535", "65536", "4294967295", "4294967296", "+1", "-1", "01", "",
               " 1", "1 ", "0x1", "1_0", "\u0661", "0" * 50 + "1"]
    for v in numbers:
        out.append(b"persistent_keepalive_interval=" + v.encode())
        out.append(b"DEV:listen_port=" + v.encode())
        out.append(b"DEV:fwmark=" + v.encode())
    for v in ["true", "True", "1", "", "true ", "false"]:
        out += [f"{k}={v}".encode() for k in ("update_only", "remove", "replace_allowed_ips")]
        out.append(f"DEV:replace_peers={v}".encode())
    out += [f"protocol_version={v}".encode() for v in ["1", "01", "2", "", " 1", "+1"]]
    for v in ["ab" * 32, "AB" * 32, "00" * 32, "ab" * 31, "ab" * 33, "ab" * 31 + "ag",
              " " + "ab" * 32, "0x" + "ab" * 31, ""]:
        out += [f"preshared_key={v}".encode(), f"DEV:private_key={v}".encode(),
                f"public_key={v}".encode()]
    for line in ["listen_port=1", "fwmark=1", "private_key=" + "00" * 32, "replace_peers=true",
                 "endpoint", "=", "=1", "foo=1", "endpoint =1.2.3.4:5", "endpoint=1.2.3.4:5\r"]:
        out += [line.encode(), b"DEV:" + line.encode()]
    return out


def test_set_lines_match_the_reference(reference: tuple[str, dict[str, int]]) -> None:
    path, names = reference
    mismatches: list[tuple[bytes, object, object]] = []
    for case in cases():
        body = case[4:] + b"\n" if case.startswith(b"DEV:") else PEER + case + b"\n"
        mine, ops = ours(body, names)
        errno, get = theirs(path, body)
        if mine != errno:
            mismatches.append((case, mine, errno))
            continue
        for op in ops if errno == 0 else []:
            if isinstance(op, PeerAllowedIP):
                want = b"allowed_ip=" + format_network(op.network).encode() + b"\n"
            elif isinstance(op, PeerEndpoint):
                want = b"endpoint=" + format_endpoint(op.host, op.port).encode() + b"\n"
            else:
                continue
            if want not in get:
                mismatches.append((case, want, get))
    assert mismatches == []


def test_get_framing_matches_the_reference(reference: tuple[str, dict[str, int]]) -> None:
    path, _ = reference
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        # The byte after "get=1\n" is consumed; the rest of the line is the next request.
        reply = exchange(sock, b"get=1\nxget=1\n\n")
        assert reply.startswith(b"errno=-22\n\n")
        if reply == b"errno=-22\n\n":
            reply += exchange(sock, b"")
        assert reply.endswith(b"errno=0\n\n")
        conn = ServerConnection()
        conn.receive_data(b"get=1\nxget=1\n\n")
        assert [type(e).__name__ for e in conn.events()] == ["GetRequestError", "GetRequest"]


def test_stock_wg_drives_the_sans_io_server(tmp_path: Path) -> None:
    """Debian's `wg` (1.0.20210914) configures and reads the in-test server of
    test_uapi_client (ServerConnection + format_get) at /var/run/wireguard."""
    require_root()
    if shutil.which("wg") is None:
        pytest.skip("needs wg on PATH")
    from tests.test_uapi_client import FakeDevice, Server, serve_connection

    def wg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True,
                              timeout=10)

    name = f"wgut{os.getpid() % 100000}"
    path = f"/var/run/wireguard/{name}.sock"
    os.makedirs("/var/run/wireguard", mode=0o755, exist_ok=True)
    device = FakeDevice()
    server = Server(path, lambda s: serve_connection(s, device))
    try:
        private = wg("genkey").stdout.strip()
        peer = wg("pubkey", stdin=wg("genkey").stdout).stdout.strip()
        psk = wg("genpsk").stdout.strip()
        conf = tmp_path / "wg.conf"
        conf.write_text(
            f"[Interface]\nPrivateKey = {private}\nListenPort = 51999\nFwMark = 0x10\n"
            f"[Peer]\nPublicKey = {peer}\nPresharedKey = {psk}\nEndpoint = [fe80::1%lo]:5\n"
            "PersistentKeepalive = 25\nAllowedIPs = 10.0.0.0/8, fd00::1/64, 192.168.1.7/32\n"
        )
        assert wg("setconf", name, str(conf)).returncode == 0
        dump = wg("show", name, "dump")
        assert dump.returncode == 0, dump.stderr
        iface, peer_line = dump.stdout.splitlines()
        assert iface.split("\t")[0] == private and iface.split("\t")[2:] == ["51999", "0x10"]
        assert peer_line.split("\t") == [peer, psk, "[fe80::1]:5",
                                         "10.0.0.0/8,fd00::/64,192.168.1.7/32",
                                         "0", "0", "0", "25"]
        busy = wg("set", name, "listen-port", "1")  # the fake device's busy port
        assert busy.returncode != 0 and "Address already in use" in busy.stderr
        assert wg("set", name, "peer", peer, "remove").returncode == 0
        assert wg("show", name, "peers").stdout.strip() == ""
    finally:
        server.stop()
        os.unlink(path)

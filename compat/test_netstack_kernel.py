"""The userspace TCP/IP stack (wgpy/netstack/) against Linux's own TCP, as root.

A TUN device is created here, moved into a fresh namespace and given the kernel's address
there; this process holds its fd and runs a `Stack` for the other address on it. So every
segment our stack sends is judged by the kernel's TCP, and every segment it receives is
one the kernel wrote: connecting to a kernel listener (IPv4 and IPv6), a kernel client
connecting to our listener, a closed port, and a kernel peer whose link is cut.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import select
import struct
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest

from compat.lab import Lab, Namespace
from wgpy.netstack import Connection, Stack, State

pytestmark = pytest.mark.root

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
MTU = 1420
KERNEL4, OURS4 = "10.213.0.1", "10.213.0.2"
KERNEL6, OURS6 = "fd00:213::1", "fd00:213::2"

_SERVER = """
import hashlib, random, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family); srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print("READY", flush=True)
conn, _ = srv.accept()
h = hashlib.sha256()
while data := conn.recv(65536):
    h.update(data)
conn.sendall(h.hexdigest().encode() + b"\\n" + random.Random(9).randbytes(int(sys.argv[3])))
conn.close()
"""

_CLIENT = """
import hashlib, random, socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
conn.sendall(random.Random(10).randbytes(int(sys.argv[3])))
conn.shutdown(socket.SHUT_WR)
h = hashlib.sha256()
while data := conn.recv(65536):
    h.update(data)
print(h.hexdigest(), flush=True)
"""


class TunHost:
    """Our stack on one end of a TUN whose other end is a namespace's kernel."""

    def __init__(self, ns: Namespace, name: str) -> None:
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        subprocess.run(["ip", "link", "set", name, "netns", ns.name], check=True)
        ns.run("ip", "link", "set", name, "mtu", str(MTU), "up")
        ns.run("ip", "addr", "add", f"{KERNEL4}/24", "dev", name)
        ns.run("ip", "addr", "add", f"{KERNEL6}/64", "dev", name, "nodad")
        self.stack = Stack([OURS4, OURS6], MTU)
        self.cut = False  # drop everything both ways

    def pump(self, until: Callable[[], bool], timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not until():
            now = time.monotonic()
            assert now < end, "not done in time"
            for packet in self.stack.output(now):
                if not self.cut:
                    os.write(self.fd, packet)
            due = self.stack.next_deadline()
            wait = min(0.05, end - now, max(due - now, 0.0) if due is not None else 0.05)
            if select.select([self.fd], [], [], wait)[0]:
                for _ in range(512):
                    try:
                        packet = os.read(self.fd, 65536)
                    except BlockingIOError:
                        break
                    if not self.cut:
                        self.stack.receive(packet, time.monotonic())
            self.stack.tick(time.monotonic())

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def host() -> Iterator[tuple[TunHost, Namespace]]:
    with Lab() as lab:
        ns = lab.namespace("nstk")
        tun = TunHost(ns, f"nstk{os.getpid() % 100000}")
        try:
            yield tun, ns
        finally:
            tun.close()


def _transfer(tun: TunHost, conn: Connection, data: bytes) -> bytes:
    """Send `data`, close our side, read until the peer closes: what it sent."""
    pos, got = 0, bytearray()

    def done() -> bool:
        nonlocal pos
        if pos < len(data):
            pos += conn.write(data[pos:pos + 65536])
            if pos == len(data):
                conn.close()
        got.extend(conn.read(1 << 20))
        assert conn.error is None, os.strerror(conn.error)
        return pos == len(data) and conn.peer_closed and not conn.recv_buffer

    tun.pump(done, timeout=120)
    return bytes(got)


@pytest.mark.parametrize("server", [KERNEL4, KERNEL6])
def test_our_client_against_a_kernel_server(host: tuple[TunHost, Namespace],
                                            server: str) -> None:
    tun, ns = host
    proc = ns.popen(sys.executable, "-c", _SERVER, server, "8080", str(3_000_000),
                    stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        conn = tun.stack.connect(server, 8080, time.monotonic())
        sent = random.Random(11).randbytes(4_000_000)
        started = time.monotonic()
        got = _transfer(tun, conn, sent)
        elapsed = time.monotonic() - started
        digest, _, rest = got.partition(b"\n")
        assert digest.decode() == hashlib.sha256(sent).hexdigest()
        assert rest == random.Random(9).randbytes(3_000_000)
        print(f"\n{server}: 7 MB both ways in {elapsed:.2f} s; "
              f"retransmitted {conn.retransmitted}")
        tun.pump(lambda: conn.state in (State.TIME_WAIT, State.CLOSED), timeout=10)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_kernel_client_against_our_listener(host: tuple[TunHost, Namespace]) -> None:
    tun, ns = host
    listener = tun.stack.listen(9000)
    proc = ns.popen(sys.executable, "-c", _CLIENT, OURS4, "9000", str(2_000_000),
                    stdout=subprocess.PIPE)
    try:
        tun.pump(lambda: bool(listener.ready), timeout=20)
        conn = listener.ready.popleft()
        got = bytearray()
        tun.pump(lambda: bool(got.extend(conn.read(1 << 20))) or conn.peer_closed)
        got.extend(conn.read(1 << 20))
        assert bytes(got) == random.Random(10).randbytes(2_000_000)
        _transfer(tun, conn, bytes(got))  # echo it back, then close
        tun.pump(lambda: proc.poll() is not None, timeout=60)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == hashlib.sha256(bytes(got)).hexdigest()
        tun.pump(lambda: conn.state == State.CLOSED, timeout=10)  # LAST-ACK, then CLOSED
    finally:
        proc.kill()
        proc.wait()


def test_a_closed_kernel_port_refuses(host: tuple[TunHost, Namespace]) -> None:
    tun, _ = host
    conn = tun.stack.connect(KERNEL4, 1, time.monotonic())
    tun.pump(lambda: conn.state == State.CLOSED, timeout=10)
    assert conn.error == errno.ECONNREFUSED


def test_a_kernel_peer_behind_a_cut_link_times_out(host: tuple[TunHost, Namespace],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry limit, shortened: the connection ends with ETIMEDOUT, not silently."""
    from wgpy.netstack import tcp  # noqa: PLC0415
    monkeypatch.setattr(tcp, "TCP_RETRIES", 3)
    monkeypatch.setattr(tcp, "TCP_MIN_RTO", 0.05)
    tun, ns = host
    proc = ns.popen(sys.executable, "-c", _SERVER, KERNEL4, "8081", "10",
                    stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        conn = tun.stack.connect(KERNEL4, 8081, time.monotonic())
        tun.pump(lambda: conn.state == State.ESTABLISHED, timeout=10)
        tun.cut = True
        conn.write(b"lost" * 100)
        tun.pump(lambda: conn.state == State.CLOSED, timeout=60)
        assert conn.error == errno.ETIMEDOUT
    finally:
        proc.kill()
        proc.wait()

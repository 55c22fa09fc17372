"""Two devices in one process over in-memory TUNs and loopback UDP, configured through
their UAPI sockets in a temporary directory: the daemon's threads, its UAPI server and
its config semantics without root."""

from __future__ import annotations

import io
import os
import stat
import ipaddress
import threading
from pathlib import Path
from typing import Iterator

import pytest

from fakes import FakeTun
from helpers import ipv4
from uapi.client import Client
from uapi.errors import UapiError
from wgpy import crypto, fastpath
from wgpy.device.device import Device
from wgpy.ipc.listener import listen
from wgpy.ipc.server import UapiServer
from wgpy.device.log import VERBOSE, Logger


class Node:
    """A started device, up, with its UAPI server as a device thread (`uapi_accept`), as
    the daemon runs it."""

    def __init__(self, name: str, directory: Path, crypto_workers: int = 1) -> None:
        self.tun = FakeTun(name)
        self.log = io.StringIO()
        self.device = Device(self.tun, Logger(name, VERBOSE, self.log),
                             crypto_workers=crypto_workers)
        self.server = UapiServer(self.device, listen(name, str(directory)))
        self.path = directory / f"{name}.sock"
        self.device.start()
        self.device.spawn("uapi_accept", self.server.serve)
        self.device.set_up(True)
        self.client = Client.from_path(str(self.path))
        self.private = crypto.generate_private_key()
        self.public = crypto.public_key(self.private)

    def close(self) -> None:
        self.device.stop("test over")
        self.server.close()
        self.device.close()  # joins its threads, uapi_accept too


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a, b = Node("wgfa", tmp_path), Node("wgfb", tmp_path)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def configure(a: Node, b: Node) -> None:
    pa, pb = a.client.get().listen_port, b.client.get().listen_port
    a.client.set([f"private_key={a.private.hex()}", "public_key=" + b.public.hex(),
                  f"endpoint=127.0.0.1:{pb}", "allowed_ip=10.0.0.2/32"])
    b.client.set([f"private_key={b.private.hex()}", "public_key=" + a.public.hex(),
                  f"endpoint=127.0.0.1:{pa}", "allowed_ip=10.0.0.1/32"])


def test_packets_cross_both_ways(pair: tuple[Node, Node]) -> None:
    a, b = pair
    configure(a, b)
    out = ipv4("10.0.0.1", "10.0.0.2", b"over the tunnel")
    a.tun.app.send(out)
    assert b.tun.app.recv(2000) == out  # handshake, then the staged packet
    back = ipv4("10.0.0.2", "10.0.0.1", b"and back")
    b.tun.app.send(back)
    assert a.tun.app.recv(2000) == back
    for _ in range(50):
        a.tun.app.send(out)
    assert all(b.tun.app.recv(2000) == out for _ in range(50))
    info = a.client.get()
    (peer,) = info.peers
    assert peer.public_key == b.public and peer.last_handshake_time_sec > 1_600_000_000
    assert peer.tx_bytes > 50 * 32 and peer.rx_bytes > 0
    assert peer.allowed_ips == [ipaddress.ip_network("10.0.0.2/32")]


@pytest.mark.skipif(not fastpath.NATIVE, reason="crypto workers need the compiled batch path")
def test_crypto_workers_deliver_every_packet_in_order(tmp_path: Path) -> None:
    """Two crypto workers decrypt B's batches while its UDP reader reads on; the TUN still
    gets every packet, in the order A sent them."""
    a, b = Node("wgwa", tmp_path), Node("wgwb", tmp_path, crypto_workers=2)
    try:
        assert b.device.crypto_workers == 2
        assert {t.name for t in threading.enumerate()} >= {"decrypt_1", "decrypt_2"}
        configure(a, b)
        a.tun.app.send(ipv4("10.0.0.1", "10.0.0.2", b"first"))
        assert b.tun.app.recv(2000) == ipv4("10.0.0.1", "10.0.0.2", b"first")
        got: list[bytes] = []
        for burst in range(40):
            sent = [ipv4("10.0.0.1", "10.0.0.2", b"%06d" % (burst * 50 + i) + bytes(900))
                    for i in range(50)]
            for packet in sent:
                a.tun.app.send(packet)
            got += [b.tun.app.recv(2000) for _ in sent]
        assert [p[20:26] for p in got] == [b"%06d" % i for i in range(2000)]
    finally:
        a.close()
        b.close()
    assert not any(t.name.startswith("decrypt_") and t.is_alive()
                   for t in threading.enumerate())


def test_set_semantics(pair: tuple[Node, Node]) -> None:
    a, b = pair
    configure(a, b)
    client = a.client
    # A peer with our own public key is ignored; update_only never creates.
    client.set([f"public_key={a.public.hex()}", "allowed_ip=10.9.9.9/32"])
    client.set(["public_key=" + "11" * 32, "update_only=true", "allowed_ip=10.7.0.0/16"])
    assert [p.public_key for p in client.get().peers] == [b.public]
    # Not atomic: what came before the error stays.
    with pytest.raises(UapiError) as err:
        client.set(["public_key=" + "22" * 32, "allowed_ip=10.6.0.0/16", "bogus=1"])
    assert err.value.errno == -22
    keys = {p.public_key for p in client.get().peers}
    assert keys == {b.public, bytes.fromhex("22" * 32)}
    # Removing one prefix, replacing them all, removing the peer.
    client.set(["public_key=" + "22" * 32, "allowed_ip=10.5.0.0/16", "allowed_ip=-10.6.0.0/16"])
    (p22,) = [p for p in client.get().peers if p.public_key == bytes.fromhex("22" * 32)]
    assert p22.allowed_ips == [ipaddress.ip_network("10.5.0.0/16")]
    client.set(["public_key=" + "22" * 32, "remove=true"])
    assert [p.public_key for p in client.get().peers] == [b.public]
    # A new private key whose public key is a peer's removes that peer.
    client.set([f"private_key={b.private.hex()}"])
    assert client.get().peers == []
    # replace_peers, and the private key's removal.
    client.set(["public_key=" + "33" * 32, "replace_allowed_ips=true"])
    client.set(["replace_peers=true", "private_key=" + "00" * 32])
    info = client.get()
    assert info.peers == [] and info.private_key is None


def test_listen_port_in_use_is_eaddrinuse_and_leaves_the_device_unbound(
        pair: tuple[Node, Node]) -> None:
    a, b = pair
    taken = b.client.get().listen_port
    before = a.client.get().listen_port
    a.client.set([f"listen_port={before}"])  # the port we hold: fine
    with pytest.raises(UapiError) as err:
        a.client.set([f"listen_port={taken}"])
    assert err.value.errno == -98
    assert a.client.get().listen_port == 0  # as wireguard-go: unbound, no listen_port line
    a.client.set(["listen_port=0"])
    assert a.client.get().listen_port > 0
    a.client.set(["fwmark=0"])  # unchanged: a no-op even without CAP_NET_ADMIN


def test_garbage_on_the_socket_does_not_hurt(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    impatient = Client.from_path(a.client.path, timeout=0.3)
    for raw in (b"hello\n", b"set=1\n" + b"x" * 70000 + b"\n\n", b"get=1\nZ", b"\0" * 1000):
        try:
            impatient.request(raw)
        except Exception:
            pass
    assert a.client.get().listen_port > 0
    assert not a.device.stopped.is_set()


def test_uapi_server_closed_before_its_thread_runs_stops_quietly(tmp_path: Path) -> None:
    """A device started and stopped at once (wgpy.Device in a short `with`): the listener
    may be closed before the `uapi_accept` thread first touches it. That is a stop, not a
    thread failure (which would mark the device failed: exit status 2)."""
    tun = FakeTun("wgfq")
    device = Device(tun, Logger("wgfq", VERBOSE, io.StringIO()))
    server = UapiServer(device, listen("wgfq", str(tmp_path)))
    server.close()
    try:
        server.serve()  # raised OSError(EBADF) before
        assert not device.failed
    finally:
        device.close()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_uapi_socket_is_0700_and_the_process_umask_is_left_alone(tmp_path: Path,
                                                                  umask: int) -> None:
    """The socket file is srwx------ (wireguard-go's umask 077 on 0777) whatever the
    process umask, and `listen` never changes the umask: another thread of a program
    embedding wgpy could create a file in that instant (it did set 077 around bind)."""
    seen: list[int] = []
    real_umask = os.umask

    def spy(mask: int) -> int:
        seen.append(mask)
        return real_umask(mask)

    old = real_umask(umask)
    try:
        os.umask = spy  # type: ignore[assignment]
        sock = listen("wgum", str(tmp_path))
        os.umask = real_umask  # type: ignore[assignment]
        try:
            mode = stat.S_IMODE(os.stat(tmp_path / "wgum.sock").st_mode)
            assert mode == 0o700 & ~umask, oct(mode)
            assert seen == []
            assert real_umask(umask) == umask
        finally:
            sock.close()
    finally:
        os.umask = real_umask  # type: ignore[assignment]
        real_umask(old)


def test_counters_lose_nothing_when_threads_count_at_once() -> None:
    """Drops and handshake messages are counted by the reader, handshake, timer and UAPI
    threads; a `+=` on a Counter interrupted by a thread switch lost counts before."""
    import sys

    from wgpy.constants import MESSAGE_INITIATION
    from wgpy.noise.actions import DropReason

    device = Device(FakeTun("wgct"), Logger("wgct", VERBOSE, io.StringIO()))
    threads, per_thread = 4, 20_000
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch as often as the interpreter can

    def count() -> None:
        for _ in range(per_thread):
            device._drop(DropReason.NO_ROUTE)
            device.count_sent(MESSAGE_INITIATION)

    try:
        workers = [threading.Thread(target=count) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
        device.close()
    assert device.drops[DropReason.NO_ROUTE] == threads * per_thread
    assert device.handshakes_sent[MESSAGE_INITIATION] == threads * per_thread


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_failed_constructor_closes_what_it_opened(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of file descriptors at the second wake-up pipe: the first pipe is closed again
    (it stayed open before). A key log is the caller's (wgpy.api.embedded closes it)."""
    real_pipe2, calls = os.pipe2, []

    def pipe2(flags: int) -> tuple[int, int]:
        calls.append(flags)
        if len(calls) == 2:
            raise OSError(24, "Too many open files")
        return real_pipe2(flags)

    tun = FakeTun("wgfd")
    before = _open_fds()
    monkeypatch.setattr(os, "pipe2", pipe2)
    try:
        with pytest.raises(OSError):
            Device(tun, Logger("wgfd", VERBOSE, io.StringIO()), keylog=None)
        monkeypatch.undo()
        assert len(calls) == 2
        assert _open_fds() == before
    finally:
        tun.close()


def test_a_metrics_server_that_cannot_be_built_closes_the_socket_it_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from wgpy.observe import metrics_http

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    device = Device(FakeTun("wgfm"), Logger("wgfm", VERBOSE, io.StringIO()))
    try:
        before = _open_fds()
        monkeypatch.setattr(metrics_http, "_HTTPServer", refuse)
        with pytest.raises(OSError):
            metrics_http.serve_metrics(device, "127.0.0.1:0")
        monkeypatch.undo()
        assert _open_fds() == before
    finally:
        device.close()


def test_a_flood_of_drops_is_logged_in_sums_not_a_line_each(tmp_path: Path) -> None:
    """At verbose, drops of one reason within DROP_LOG_INTERVAL go into one "Dropped N"
    line: a junk flood once cost the UDP reader a log line per batch (a quarter of its
    time, and 13-17 % ping loss in compat/test_hostile.py's garbage flood). The counter
    stays exact, and a drop after a quiet interval is logged at once."""
    import re  # noqa: PLC0415

    from wgpy.noise.actions import DropReason  # noqa: PLC0415
    node = Node("wgdl", tmp_path)
    try:
        for _ in range(1000):
            node.device._drop(DropReason.INVALID_MESSAGE)
        node.device._drop(DropReason.NO_ROUTE, 2)
        lines = [m.groups() for m in re.finditer(r"Dropped (\d+): (.+)", node.log.getvalue())]
        assert node.device.drops[DropReason.INVALID_MESSAGE] == 1000
        assert lines.count(("1", DropReason.INVALID_MESSAGE.value)) == 1  # the first at once
        assert len(lines) <= 3, lines
        assert ("2", DropReason.NO_ROUTE.value) in lines  # another reason: its own line
    finally:
        node.close()

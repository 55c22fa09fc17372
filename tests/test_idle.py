"""An idle device sleeps: its threads wait without timeouts and are woken by whoever needs
them (stop, a packet, a UAPI client, a timer). Here without root: a device on an in-memory
TUN with its UAPI server in a temporary directory, its threads' context switches read from
/proc/self/task/TID/status. Also: the deletion of the socket file is still noticed at once
(inotify, else lstat polling), a stop still ends every thread at once, and a handshake
initiation is dated by the wall clock of its moment."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from helpers import ipv4
from test_device import Node

from wgpy.observe.metrics_http import serve_metrics
from wgpy import crypto
from wgpy.constants import MESSAGE_INITIATION, TAI64N_BASE
from wgpy.device import clock
from wgpy.device.device import Device
from wgpy.ipc import server as ipc
from wgpy.ipc.inotify import FileWatch
from wgpy.noise.actions import Action, Schedule
from wgpy.noise.interface import Interface
from wgpy.noise.timers import ZERO_KEY_MATERIAL

STOP_TIMEOUT = 1.0  # what "at once" is allowed here (a loaded CI machine)


class Idle(Node):
    """test_device's node, with one peer configured on demand."""

    def configure(self, peer_public: bytes, endpoint: tuple[str, int]) -> None:
        self.client.set([f"private_key={self.private.hex()}",
                         f"public_key={peer_public.hex()}",
                         f"endpoint={endpoint[0]}:{endpoint[1]}", "allowed_ip=10.0.0.2/32"])


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[Idle]:
    node = Idle("wgid", tmp_path)
    try:
        yield node
    finally:
        node.close()


def switches(thread: threading.Thread) -> int:
    """Voluntary and involuntary context switches of `thread` so far."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return sum(int(line.split()[1]) for line in status.splitlines()
               if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))


def test_an_idle_device_does_not_wake_up(idle: Idle) -> None:
    """Configured (key, port, one peer with an endpoint), up, metrics served, no traffic:
    over 2 s its threads switched about 25 times before (readers, handshake worker and
    timers every second, metrics every second, the UAPI selector 7 times a second)."""
    idle.configure(crypto.public_key(crypto.generate_private_key()), ("127.0.0.1", 9))
    serve_metrics(idle.device, "127.0.0.1:0")
    threads = list(idle.device._threads)
    names = sorted(t.name for t in threads)
    assert names == ["datapath", "handshake", "metrics", "timers", "uapi_accept"]
    time.sleep(0.5)  # the configuration's work done, every thread asleep
    before = {t.name: switches(t) for t in threads}
    time.sleep(2.0)
    woke = {t.name: switches(t) - before[t.name] for t in threads}
    assert all(t.is_alive() for t in threads)
    assert sum(woke.values()) <= 2, woke


def test_every_thread_ends_at_once_when_the_device_stops(idle: Idle) -> None:
    """No thread waits on a timeout to see the stop: each one is woken."""
    idle.configure(crypto.public_key(crypto.generate_private_key()), ("127.0.0.1", 9))
    serve_metrics(idle.device, "127.0.0.1:0")
    threads = list(idle.device._threads)
    time.sleep(0.3)  # all asleep
    started = time.monotonic()
    idle.device.stop("test")
    for thread in threads:
        thread.join(STOP_TIMEOUT)
    took = time.monotonic() - started
    assert [t.name for t in threads if t.is_alive()] == []
    assert took < STOP_TIMEOUT


def test_a_full_handshake_queue_does_not_hide_the_stop(idle: Idle) -> None:
    """`stop` cannot put its None into a full queue: the worker, busy with the queue, sees
    the stop flag after the item in hand."""
    device = idle.device
    with device.lock:  # the worker blocks on the lock with its item; the queue fills up
        device._handshake_q.put_nowait((b"\1" + bytes(147), ("127.0.0.1", 9), None))
        time.sleep(0.1)
        while not device._handshake_q.full():
            device._handshake_q.put_nowait((b"\1" + bytes(147), ("127.0.0.1", 9), None))
        device.stop("test")
    worker = next(t for t in device._threads if t.name == "handshake")
    worker.join(STOP_TIMEOUT)
    assert not worker.is_alive()


def wait_stopped(device: Device, timeout: float = STOP_TIMEOUT) -> float | None:
    started = time.monotonic()
    if device.stopped.wait(timeout):
        return time.monotonic() - started
    return None


def test_deleting_the_socket_file_stops_the_device_at_once(
        idle: Idle, monkeypatch: pytest.MonkeyPatch) -> None:
    """inotify tells the selector thread: with the lstat poll made hourly, the deletion is
    still seen at once (before, only that poll saw it)."""
    monkeypatch.setattr(ipc, "WATCH_INTERVAL", 3600.0)
    time.sleep(0.3)  # the selector thread waits, its first look done
    idle.path.unlink()
    assert wait_stopped(idle.device) is not None, idle.log.getvalue()
    assert idle.device.stop_reason == "UAPI socket deleted"


@pytest.mark.parametrize("how", ["renamed away", "replaced", "directory moved"])
def test_losing_the_socket_file_otherwise_stops_the_device_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(ipc, "WATCH_INTERVAL", 3600.0)
    directory = tmp_path / "run"
    directory.mkdir()
    node = Idle("wgmv", directory)
    try:
        time.sleep(0.3)
        if how == "renamed away":
            node.path.rename(directory / "other.sock")
        elif how == "replaced":
            (directory / "new").write_text("")
            (directory / "new").rename(node.path)
        else:
            directory.rename(tmp_path / "moved")
        assert wait_stopped(node.device) is not None, node.log.getvalue()
    finally:
        node.close()


def test_other_names_in_the_directory_change_nothing(idle: Idle, tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"wgid{i}.sock").write_text("")
        (tmp_path / f"wgid{i}.sock").rename(tmp_path / f"x{i}")
        (tmp_path / f"x{i}").unlink()
    assert wait_stopped(idle.device, 0.3) is None
    assert idle.client.get().listen_port > 0


def test_without_inotify_the_socket_file_is_polled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No inotify (no ctypes, ENOSYS, EMFILE): lstat every WATCH_INTERVAL, as before."""
    def unavailable(path: str) -> FileWatch:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(ipc, "FileWatch", unavailable)
    monkeypatch.setattr(ipc, "WATCH_INTERVAL", 0.1)
    node = Idle("wgpl", tmp_path)
    try:
        time.sleep(0.3)
        assert not node.device.stopped.is_set()
        node.path.unlink()
        assert wait_stopped(node.device) is not None
        assert "cannot watch" in node.log.getvalue()
    finally:
        node.close()


def test_the_watch_reports_what_may_take_the_path_and_nothing_else(tmp_path: Path) -> None:
    mine = tmp_path / "mine.sock"
    mine.write_text("")
    watch = FileWatch(str(mine))
    try:
        assert not watch.changed()  # nothing yet
        for i in range(5):  # other sockets of the directory come and go: no event at all
            (tmp_path / f"theirs{i}.sock").write_text("")
            (tmp_path / f"theirs{i}.sock").rename(tmp_path / f"moved{i}")
            (tmp_path / f"moved{i}").unlink()
        assert not watch.changed()
        (tmp_path / "new").write_text("")
        (tmp_path / "new").rename(mine)  # replaced: the old inode lost its link
        assert watch.changed()
    finally:
        watch.close()
    watch = FileWatch(str(mine))
    try:
        mine.rename(tmp_path / "elsewhere.sock")
        assert watch.changed() and not watch.lost
        (tmp_path / "elsewhere.sock").rename(mine)
        assert watch.changed()
        mine.unlink()
        assert watch.changed()
    finally:
        watch.close()
    with pytest.raises(FileNotFoundError):
        FileWatch(str(mine))


def test_an_initiation_is_dated_by_the_wall_clock_of_its_moment(
        idle: Idle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock stepped (NTP at boot, `date -s`) just before the first packet: its
    initiation carries the new time. Before, the offset was refreshed by the timers thread
    once a second, and the initiation went out with the old one: a peer that had seen a
    later timestamp from us took it for a replay."""
    peer_private = crypto.generate_private_key()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5.0)
    try:
        idle.configure(crypto.public_key(peer_private), udp.getsockname())
        time.sleep(0.2)  # the timers thread asleep
        stepped = clock.wall_offset() + 1_000_000.0  # about 11.6 days ahead
        monkeypatch.setattr(clock, "wall_offset", lambda: stepped)
        idle.tun.app.send(ipv4("10.0.0.1", "10.0.0.2", b"needs a session"))
        data, src = udp.recvfrom(2048)
        assert data[0] == MESSAGE_INITIATION
        responder = Interface(peer_private)
        peer = responder.add_peer(crypto.public_key(idle.private))
        responder.receive(data, src, clock.now())
        seconds = int.from_bytes(peer.handshake.latest_timestamp[:8], "big") - TAI64N_BASE
        assert abs(seconds - (clock.now() + stepped)) < 5
    finally:
        udp.close()


def test_after_a_suspend_a_new_timer_wakes_the_sleeping_timers_thread(
        idle: Idle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timers thread sleeps on the monotonic clock, which stops during a suspend, while
    `now` (CLOCK_BOOTTIME) goes on. After an hour asleep with its next look planned 540 s
    ahead, a timer armed 1 s ahead must still wake it: its plan is in the past."""
    device = idle.device
    peer_key = crypto.public_key(crypto.generate_private_key())
    idle.configure(peer_key, ("127.0.0.1", 9))
    ticks: list[float] = []
    real_tick = device.iface.tick

    def tick(now: float) -> list[Action]:
        ticks.append(now)
        return real_tick(now)

    monkeypatch.setattr(device.iface, "tick", tick)
    with device.lock:  # one timer, far ahead: the thread sleeps for it
        far = clock.now() + 540.0
        device.iface.peers[peer_key].timers.mod(ZERO_KEY_MATERIAL, far)
    device.execute([Schedule(far)])
    time.sleep(0.2)
    ticks.clear()
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + 3600.0)  # a suspend of an hour
    device.execute([Schedule(clock.now() + 1.0)])
    deadline = time.monotonic() + 1.0
    while not ticks and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ticks, "the timers thread slept on"


def test_each_thread_carries_its_role_as_its_os_name(idle: Idle) -> None:
    """`ps -L` and `top -H` show a thread's comm: every one was the creator's name before
    (here the test runner's), now each is its role (datapath, handshake, ...)."""
    idle.configure(crypto.public_key(crypto.generate_private_key()), ("127.0.0.1", 9))
    serve_metrics(idle.device, "127.0.0.1:0")
    def comms() -> dict[str, str]:
        named = {}
        for t in idle.device._threads:
            with open(f"/proc/self/task/{t.native_id}/comm") as f:
                named[t.name] = f.read().strip()
        return named

    deadline = time.monotonic() + 2.0  # a thread names itself first thing when it runs
    while any(c != n for n, c in comms().items()) and time.monotonic() < deadline:
        time.sleep(0.01)
    named = comms()
    assert len(named) == 5 and all(comm == name for name, comm in named.items()), named

"""The device: one WireGuard interface's threads around the sans-IO core.

One thread, `datapath`, waits on the TUN and the UDP sockets together and serves
whichever is readable (`_datapath`).

Outbound, from each TUN batch (up to MAX_BATCH packets, drained until EAGAIN) it runs the
seed's pipeline: route by allowed IPs -> per-peer staged queue (oldest dropped when full)
-> sequential nonce assignment -> encryption -> in-order send (runs of equal-sized
datagrams in one UDP GSO call). All of it is the core's `Peer.send_batch`, called once per
peer per batch.

Inbound (wgpy/device/inbound.py), it reads a batch from a socket (UDP GRO split) and
classifies it: runs of transport data with one receiver index go through
`Peer.consume_data_batch` (decryption, replay check, key confirmation, allowed-IPs source
check) and on to the TUN in order; handshake messages go to the bounded handshake queue,
whose fill level turns cookies on, and the `handshake` thread answers them. The `timers`
thread runs the core's timers when they are due.

Why one thread for both directions, and the crypto stages on it: only one thread runs
Python at a time (the GIL), so a thread per direction does not run the two directions'
Python side by side; it makes them take turns through the GIL, each turn a futex
wake-up. One TCP stream shows it, because its ACKs come back the other way: with a
`tun_reader` and a `udp_reader` thread each daemon's data thread waited on the GIL for
about a tenth of its time (perf trace: 1,400 futex waits a second, 71 us each, while the
other thread handled ACKs), and one thread for both carried 1.37x as much (wgpy to wgpy,
compat/bench_throughput.py, 1,771 -> 2,422 Mbit/s in one run; Mbit/s per core 1.28x;
ping under that load 0.48x). Separate encryptor/decryptor threads fed by queues cost
the same way on the pure-Python path (240 Mbit/s against 480-530 inline). The compiled
batch path (wgpy.fastpath) releases the GIL for a whole batch's AEAD, so there decryption
may also run on crypto workers (`crypto_workers`, WGPY_CRYPTO_WORKERS) beside the
datapath thread. Batching (one core call, one lock hold and one GSO send per batch) is
what the hand-offs keep from the seed's design.

`lock` is the one lock of the sans-IO core (peers, keypairs, allowed IPs, index table);
every thread takes it once per batch, never per packet.

No thread wakes up to look: each sleeps until its fds, its queue or its next timer need
it (the timers thread without a timeout while no timer is armed), and `stop` wakes every
one (the datapath thread's wake-up pipe, None in the handshake queue, the timers' event, and
`stop_fd` for the threads around the device: netlink, metrics, the daemon's main thread).
So an idle device costs no CPU, as the kernel's, and still stops at once. The core reads
no clock, so its wall clock offset, which dates our handshake initiations, is brought up
to date where it may create one (`core_now`), instead of every second by the timers.

While the link is down nothing is answered, decrypted, written to the TUN or sent (kernel
`wg_stop`, wireguard-go `Down`); the sockets stay bound, as Debian's wireguard-go keeps
them, and what arrives is dropped and counted (INTERFACE_DOWN). Packets the TUN gives us
before we learn that the link came up are staged, and go out at `set_up(True)`.
"""

from __future__ import annotations

import errno
import os
import queue
import select
import socket
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from wgpy import fastpath
from wgpy.constants import (
    DROP_LOG_INTERVAL, INLINE_HANDSHAKE_BURST, INLINE_HANDSHAKES_PER_SECOND, MAX_BATCH,
    MAX_QUEUED_INCOMING_HANDSHAKES, MAX_QUEUED_PROVEN_HANDSHAKES, MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RX_JOBS_PER_WORKER,
)
from wgpy.crypto import b64
from wgpy.device import clock, threads
from wgpy.device.bind import Bind, Endpoint, Local, SendError
from wgpy.device.inbound import Inbound, _RxJob
from wgpy.device.log import VERBOSE, Logger
from wgpy.device.tun import Tun
from wgpy.noise.actions import (
    Action, ClearEndpointSource, Drop, DropReason, Schedule, SendBatch, SendDatagram, WriteToTun,
    send_failure_reason,
)
from wgpy.noise.cookie import MacState
from wgpy.noise.interface import Interface
from wgpy.noise.keylog import HandshakeSecrets
from wgpy.noise.peer import Peer
from wgpy.noise.warmup import rehearse
from wgpy.routemtu import Route, RouteMTUs

__all__ = ["Device"]



@dataclass(frozen=True, slots=True)
class _Reply:
    """A cookie reply, to leave from the local address the message it answers arrived on
    (kernel `wg_packet_send_handshake_cookie` -> `wg_socket_send_buffer_as_reply_to_skb`)."""

    data: bytes
    endpoint: Endpoint
    source: Local | None


class _Waker:
    """A self-pipe that interrupts one thread's select."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self.w, b"!")
        except OSError:
            pass  # already full (so already awake) or closed

    def drain(self) -> None:
        try:
            os.read(self.r, 4096)
        except OSError:
            pass

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class KeyLogSink(Protocol):
    """Where the secrets of each handshake go (wgpy.observe.keylog.KeyLog): `write` is
    called under the core's lock and never raises."""

    def write(self, secrets: HandshakeSecrets) -> None: ...

    def close(self) -> None: ...


class Device(Inbound):
    """Owns the TUN, the UDP sockets, the core and the threads that join them (the receive
    path's methods are in wgpy/device/inbound.py)."""

    def __init__(self, tun: Tun, log: Logger, keylog: KeyLogSink | None = None,
                 crypto_workers: int = 1) -> None:
        """`keylog`: an open key log for Wireshark (wgpy.observe.keylog.KeyLog), written at
        each handshake and closed with the device.
        `crypto_workers`: threads that decrypt received batches (see `_decrypt_batch`);
        on the pure-Python path always one, the datapath thread itself."""
        self.tun = tun
        self.log = log
        # The sans-IO core and everything in it (peers, keypairs, allowed IPs, index).
        self.lock = threading.Lock()
        # One UAPI `set`, from its first line to its blank line, or one `get` snapshot at a
        # time (wireguard-go's ipcMutex): no set sees another half applied. Taken before
        # `lock`, never by the data path.
        self.config_lock = threading.Lock()
        self.iface = Interface()
        self.iface.mtu = tun.mtu()
        self.iface.wall_offset = clock.wall_offset()
        self.keylog = keylog
        if keylog is not None:
            self.iface.keylog = keylog.write
        self.bind = Bind()
        self.is_up = False
        # Counters that several threads add to (`+=` on a Counter is a read and a write:
        # without the lock a thread switch between them loses counts).
        self.counters_lock = threading.Lock()
        self.drops: Counter[DropReason] = Counter()
        # Drops not yet logged (verbose), and when the last "Dropped" line was written:
        # under a flood the lines are summed, at most one a DROP_LOG_INTERVAL per reason.
        self._drops_unlogged: Counter[DropReason] = Counter()
        self._drops_logged_at: dict[DropReason, float] = {}
        # Handshake messages by type (wgpy.observe.metrics): handed to the socket, arrived.
        self.handshakes_sent: Counter[int] = Counter()
        self.handshakes_received: Counter[int] = Counter()
        self.stopped = threading.Event()  # set when the device must go (TUN gone, close)
        self.stop_reason = ""
        self.failed = False  # a thread died of an exception: the process exits non-zero (cli)
        self._threads: list[threading.Thread] = []
        # Handshake messages whose mac2 proved the sender's address while under load: the
        # worker serves them before the main queue (see _queue_handshake).
        self._proven_q: queue.Queue[tuple[bytes, Endpoint, Local | None]] = \
            queue.Queue(MAX_QUEUED_PROVEN_HANDSHAKES)
        self._handshake_q: queue.Queue[tuple[bytes, Endpoint, Local | None] | None] = \
            queue.Queue(MAX_QUEUED_INCOMING_HANDSHAKES)
        self._inline_tokens = float(INLINE_HANDSHAKE_BURST)
        self._inline_at = 0.0
        self._timer_wake = threading.Event()
        self._timer_due = 0.0  # when the timers thread will look next (clock.now() seconds)
        # Bumped by each rebind: the datapath thread then looks up the sockets again.
        self._bind_generation = 0
        # The datapath thread's wake-up pipe (stop, a rebind), and one that `stop` makes
        # readable for good (`stop_fd`), never drained.
        # If a pipe cannot be made (EMFILE), what this constructor opened is closed again.
        wakers: list[_Waker] = []
        try:
            for _ in range(2):
                wakers.append(_Waker())
        except BaseException:
            for waker in wakers:
                waker.close()
            raise
        self._wake_data, self._stopping = wakers
        # Received batches in arrival order, each decrypted by a crypto worker and then
        # delivered (replay check, TUN write) in that order by whichever worker finds it
        # first in line and done; `_rx_order_lock` guards the deque, `_rx_deliver_lock`
        # makes one worker at a time deliver.
        self.crypto_workers = crypto_workers if fastpath.NATIVE else 1
        self._rx_jobs: queue.Queue[_RxJob | None] = queue.Queue(
            RX_JOBS_PER_WORKER * self.crypto_workers)
        self._rx_order: deque[_RxJob] = deque()
        self._rx_order_lock = threading.Lock()
        self._rx_deliver_lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind a random port at once (as Debian's wireguard-go does) and start the threads."""
        rehearse()  # the first handshake would otherwise pay for cold code paths
        self.bind.open(0)
        for name, body in (("datapath", self._datapath), ("handshake", self._handshake_worker),
                           ("timers", self._timers)):
            self.spawn(name, body)
        if self.crypto_workers > 1:
            for i in range(self.crypto_workers):
                self.spawn(f"decrypt_{i + 1}", self._crypto_worker)

    def spawn(self, name: str, body: Callable[[], None]) -> None:
        """Run `body` in a thread named `name`; if it fails, the device stops, loudly."""
        def run() -> None:
            try:
                body()
            except Exception as exc:  # a bug must stop the device loudly, not hang it
                self.log.error("thread %s failed: %r", name, exc)
                self.failed = True
                self.stop(f"thread {name} failed")
        self._threads.append(threads.start(name, run))

    @property
    def stop_fd(self) -> int:
        """A file descriptor that is readable once the device stops: threads that wait on
        fds of their own (netlink, metrics, the daemon's main thread) select on it too."""
        return self._stopping.r

    def stop(self, reason: str) -> None:
        """Ask every thread to end; each one is woken, none waits on a timeout for it."""
        if not self.stopped.is_set():
            self.stop_reason = reason
            self.stopped.set()
            self._stopping.wake()
            self._wake_data.wake()
            self._timer_wake.set()
            try:
                self._handshake_q.put_nowait(None)  # wakes the handshake worker
            except queue.Full:
                pass  # then it is busy: it sees the stop flag after the item in hand
            if self.crypto_workers > 1:
                for _ in range(self.crypto_workers):
                    try:
                        self._rx_jobs.put_nowait(None)  # wakes a crypto worker
                    except queue.Full:
                        break  # then they are busy and see the stop flag next

    def close(self) -> None:
        """Stop and drain the threads, then release the sockets and the TUN."""
        self.stop(self.stop_reason or "closed")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        with self.lock:
            for peer in self.iface.peers.values():
                peer.stop()
        self.bind.close()
        self.tun.close()
        if self.keylog is not None:
            with self.lock:  # the core writes key blocks under it: none is in flight after
                self.iface.keylog = None
            self.keylog.close()
        for waker in (self._wake_data, self._stopping):
            waker.close()

    def core_now(self) -> float:
        """`clock.now()` for the core, with its wall clock offset brought up to date: call
        it under the lock wherever the core may create a handshake initiation (its TAI64N
        timestamp is now + wall_offset: one from a stale offset after a wall clock step,
        NTP at boot or `date -s`, looks like a replay to the peer, which then ignores us
        until the clock catches up) or complete a handshake (`wg show`'s latest handshake
        is now + wall_offset). Three clock reads, once per batch."""
        now = clock.now()
        self.iface.wall_offset = clock.wall_offset()
        return now

    def set_up(self, up: bool) -> None:
        """The link went up or down (kernel `wg_open` / `wg_stop`, per peer in the core:
        `Peer.link_up` / `Peer.link_down`). Timers run only while up (`mod_peer_timer`)."""
        actions: list[Action] = []
        with self.lock:
            if up == self.is_up:
                return
            self.is_up = up
            now = self.core_now()
            for peer in self.iface.peers.values():
                actions += peer.link_up(now) if up else peer.link_down()
        self.log.verbose("Interface %s", "up" if up else "down")
        self.execute(actions)

    def set_peer_endpoint(self, peer: Peer, endpoint: Endpoint) -> None:
        """An endpoint set over UAPI comes without a source address, so none is remembered
        for it (the kernel's `set_peer` sets an endpoint whose src is zero; wireguard-go's
        parsed endpoint has none). The caller holds the device lock."""
        if peer.endpoint is not None:
            self.bind.clear_source(peer.endpoint)
        self.bind.clear_source(endpoint)
        peer.endpoint = endpoint

    def set_routes(self, routes: list[Route]) -> None:
        """The routes into the interface changed: their MTUs bound padding (wgpy.routemtu)."""
        table = RouteMTUs.build(routes)
        with self.lock:
            self.iface.route_mtus = table

    def set_mtu(self, mtu: int) -> None:
        with self.lock:
            changed, self.iface.mtu = mtu != self.iface.mtu, mtu
        if changed:
            self.log.verbose("MTU updated: %d", mtu)

    def bind_update(self, port: int) -> None:
        """Rebind to `port` (0: a random one), as wireguard-go's BindUpdate: on failure
        (OSError, EADDRINUSE for the caller) the device is left unbound, port 0. The port
        we already hold is kept as it is: closing a socket the datapath thread is selecting on
        would not free the port in time to bind it again."""
        if port and port == self.bind.port and self.bind.sockets:
            return
        self.bind.close()
        self.bind.port = 0
        try:
            self.bind.open(port)
        finally:
            self._bind_generation += 1  # one writer: the UAPI/API caller under its lock
            self._wake_data.wake()

    def queue_lengths(self) -> dict[str, int]:
        """Handshake messages waiting for the handshake worker (wgpy.observe.metrics): the
        main queue, and those whose mac2 proved their address while under load."""
        return {"handshake": self._handshake_q.qsize(), "proven_handshake": self._proven_q.qsize()}

    def peer_name(self, peer: Peer) -> str:
        key = b64(peer.public_key)
        return f"peer({key[:4]}…{key[-5:-1]})"

    # --- carrying out what the core asks -------------------------------------------------------

    def execute(self, actions: Sequence[Action | _Reply]) -> None:
        for action in actions:
            kind = type(action)
            if kind is SendBatch:
                self._send(action.datagrams, action.endpoint,  # type: ignore[union-attr]
                           action.peer)  # type: ignore[union-attr]
            elif kind is SendDatagram:
                if action.data[0] != MESSAGE_TRANSPORT:  # type: ignore[union-attr]
                    self.count_sent(action.data[0])  # type: ignore[union-attr]
                self._send([action.data], action.endpoint,  # type: ignore[union-attr]
                           action.peer)  # type: ignore[union-attr]
            elif kind is WriteToTun:
                self._write_tun([action.packet])  # type: ignore[union-attr]
            elif kind is Drop:
                self._drop(action.reason, action.count)  # type: ignore[union-attr]
            elif kind is Schedule:
                at = action.at  # type: ignore[union-attr]
                # Wake the timers thread only when it must look earlier than planned, or
                # when its plan is already past: it sleeps on the monotonic clock, which
                # stops during a suspend while `now` (CLOCK_BOOTTIME) goes on, so after a
                # resume it may sleep on, past a new timer, for what it had left to sleep.
                if at is not None and (at < self._timer_due or self._timer_due <= clock.now()):
                    self._timer_due = at
                    self._timer_wake.set()
            elif kind is ClearEndpointSource:
                self.bind.clear_source(action.endpoint)  # type: ignore[union-attr]
            elif kind is _Reply:
                self.count_sent(MESSAGE_COOKIE_REPLY)
                self._send([action.data], action.endpoint, None,  # type: ignore[union-attr]
                           action.source)  # type: ignore[union-attr]

    def count_sent(self, message_type: int) -> None:
        with self.counters_lock:
            self.handshakes_sent[message_type] += 1

    def _drop(self, reason: DropReason, count: int = 1) -> None:
        """Count a drop; at verbose, log it: at once when the last line for its reason is
        older than DROP_LOG_INTERVAL, else summed into the next line (a flood of junk must
        not cost the data path a log line per batch: measured under compat/test_hostile.py's
        garbage flood, the lines took over a quarter of the UDP receive path's time)."""
        with self.counters_lock:
            self.drops[reason] += count
            if self.log.level < VERBOSE:
                return
            now = clock.now()
            if now - self._drops_logged_at.get(reason, -DROP_LOG_INTERVAL) < DROP_LOG_INTERVAL:
                self._drops_unlogged[reason] += count
                return
            self._drops_logged_at[reason] = now
            count += self._drops_unlogged.pop(reason, 0)
        self.log.verbose("Dropped %d: %s", count, reason.value)

    def _send(self, datagrams: list[bytes], endpoint: Endpoint, peer: Peer | None,
              source: Local | None = None) -> None:
        """Send; what could not be sent is dropped, counted, and taken out of the peer's
        tx_bytes (the core counted it: the kernel counts only what was sent)."""
        if not self.is_up:  # computed before the link went down
            unsent, reason, why = datagrams, DropReason.INTERFACE_DOWN, "interface down"
        else:
            try:
                self.bind.send(datagrams, endpoint, source)
                return
            except SendError as exc:
                unsent, why = datagrams[exc.sent:], exc.strerror or "send failed"
                reason = send_failure_reason(exc.errno)
        self._drop(reason, len(unsent))
        if peer is not None:
            with self.lock:
                peer.send_failed(sum(map(len, unsent)))
        self.log.verbose("Failed to send %d datagrams to %s: %s", len(unsent), endpoint[0], why)

    def _write_tun(self, packets: list[bytes]) -> None:
        if self.tun.deliver is not None:  # an in-memory interface
            dropped = self.tun.deliver(packets)
            if dropped:
                self._drop(DropReason.TUN_WRITE_FAILED, dropped)
            return
        writev, fd = os.writev, self.tun.fd
        for iov in self.tun.writes(packets):
            try:
                writev(fd, iov)
            except OSError as exc:
                if exc.errno == errno.EBADFD:
                    self.stop("TUN deleted")
                    return
                # EIO: link down (IPv6 chatter arrives before it is up); EAGAIN: the
                # kernel's queue is full. The packet is lost, the daemon goes on.
                self._drop(DropReason.TUN_WRITE_FAILED, 1)

    def _datapath(self) -> None:
        """Wait until the TUN or a UDP socket is readable and serve it; when both are, the
        TUN first, then each socket (select keeps the order it is given). No timeout unless
        a socket rests: whoever needs the thread (stop, a rebind) writes to its waker. The
        sockets are looked up again after a rebind, and a socket resting after receive
        errors is left out of the wait until it may be read again
        (`Inbound._receive_failed`)."""
        tun, waker = self.tun, self._wake_data
        failing: dict[object, tuple[int, float]] = {}  # socket -> (errors in a row, resume at)
        generation = -1
        bound: dict[int, socket.socket] = {}  # the sockets by fd, as of rebind `generation`
        while not self.stopped.is_set():
            if generation != self._bind_generation:
                generation = self._bind_generation
                bound = {s.fileno(): s for s in self.bind.sockets}
            socks, timeout = self._not_resting(bound, failing) if failing else (bound, None)
            try:
                ready, _, _ = select.select([tun.fd, *socks, waker.r], [], [], timeout)
            except (OSError, ValueError):
                continue  # an fd was closed under us (rebind, stop): look again
            for fd in ready:
                if fd == tun.fd:
                    if not self._read_tun():
                        return
                elif fd == waker.r:
                    waker.drain()
                elif generation != self._bind_generation:
                    break  # the sockets in `socks` may be closed: look them up again
                else:
                    self._receive_udp(socks[fd], failing, generation)

    def _read_tun(self) -> bool:
        """The TUN is readable: read a batch and send it. False if the TUN died."""
        tun = self.tun
        try:
            reads = tun.read_batch(MAX_BATCH)
        except OSError as exc:
            self.stop(f"TUN read failed: {exc.strerror}")
            return False
        if tun.malformed:  # TSO reads whose virtio-net header was unusable
            self._drop(DropReason.INVALID_INNER_PACKET, tun.malformed)
            tun.malformed = 0
        if reads:
            self._encrypt_batch(reads)
        return True

    def _encrypt_batch(self, reads: list[list[bytes]]) -> None:
        """Route, stage, assign nonces, encrypt and send, in order per peer (`reads`: the
        packets of each TUN read, see `Tun.read_batch`)."""
        actions: list[Action] = []
        with self.lock:
            now = self.core_now()  # sending may start a handshake
            up = self.is_up
            by_peer, no_route = self.iface.route_batch(reads)
            for peer, group in by_peer.items():
                # Not up yet as far as netlink told us: stage, sent by `set_up(True)`.
                actions += peer.send_batch(group, now) if up else peer.stage_batch(group)
        if no_route:
            self._drop(DropReason.NO_ROUTE, no_route)
        self.execute(actions)

    def _queue_handshake(self, data: bytes, src: Endpoint, here: Local | None,
                         now: float, actions: list[Action | _Reply]) -> None:
        """Queue a handshake message for the handshake worker (under the lock).

        Under load, the datapath thread screens it first (two BLAKE2s, a few microseconds): a bad
        mac1 never takes a queue slot; a good mac1 without our cookie is answered with a
        cookie reply at once (no DH: about 10 us), which is all the worker would do with
        it; and a message whose mac2 proves the sender's address goes to a queue of its
        own that the worker serves first. Without this, a flood of messages without
        cookies kept the one queue full: a legitimate peer's initiation, and its retry
        with the cookie, mostly found no room, and the peer waited for the flood to end.
        With it, the cookie mechanism does what it is for."""
        q = self._handshake_q
        if data[0] != MESSAGE_COOKIE_REPLY and self.iface.under_load(q.qsize(), now):
            state, reply = self.iface.screen_under_load(data, src, now)
            if state is MacState.INVALID_MAC:
                self._drop(DropReason.INVALID_MAC, 1)
                return
            if reply is not None:
                actions.append(_Reply(reply.data, src, here))  # from where it arrived
                return
            if state is MacState.VALID_MAC_WITH_COOKIE:
                try:
                    self._proven_q.put_nowait((data, src, here))
                except queue.Full:
                    self._drop(DropReason.RATE_LIMITED, 1)
                    return
                try:
                    q.put_nowait(None)  # wakes the worker if it waits on the main queue
                except queue.Full:
                    pass  # then it is busy and looks at the proven queue next
                return
        try:
            q.put_nowait((data, src, here))
        except queue.Full:
            self._drop(DropReason.RATE_LIMITED, 1)

    def _handshake_worker(self) -> None:
        """Blocks on the queue without a timeout: `stop` puts None in it, or finds it full,
        and then this thread is busy and sees the stop flag after the item it takes."""
        q = self._handshake_q
        while not self.stopped.is_set():
            item: tuple[bytes, Endpoint, Local | None] | None
            try:
                item = self._proven_q.get_nowait()
            except queue.Empty:
                item = q.get()
            if item is None:
                continue  # the stop signal: the loop condition ends it
            data, src, local = item
            with self.lock:
                if not self.is_up:  # queued before the link went down (kernel wg_stop)
                    self._drop(DropReason.INTERFACE_DOWN, 1)
                    continue
                now = self.core_now()
                actions = self._handshake(data, src, local, now,
                                          self.iface.under_load(q.qsize(), now))
            self.execute(actions)

    def _may_answer_inline(self, now: float) -> bool:
        """Whether the datapath thread may answer a handshake message itself (under the lock):
        only with the queue empty, not under load, and within a token bucket of
        INLINE_HANDSHAKES_PER_SECOND, so that a flood still meets the queue's defences."""
        if not self._handshake_q.empty() or self.iface.under_load(0, now):
            return False
        tokens = min(float(INLINE_HANDSHAKE_BURST),
                     self._inline_tokens + (now - self._inline_at) * INLINE_HANDSHAKES_PER_SECOND)
        self._inline_at = now
        if tokens < 1.0:
            self._inline_tokens = tokens
            return False
        self._inline_tokens = tokens - 1.0
        return True

    def _handshake(self, data: bytes, src: Endpoint, local: Local | None, now: float,
                   under_load: bool) -> list[Action | _Reply]:
        """A handshake message or cookie reply through the core (under the lock)."""
        actions: list[Action | _Reply] = list(self.iface.receive(data, src, now, under_load))
        if data[0] not in (MESSAGE_INITIATION, MESSAGE_RESPONSE):
            return actions
        authenticated = True
        for i, a in enumerate(actions):
            kind = type(a)
            if kind is Drop:
                authenticated = False
            elif (kind is SendDatagram
                  and a.data[0] == MESSAGE_COOKIE_REPLY):  # type: ignore[union-attr]
                authenticated = False
                actions[i] = _Reply(a.data, a.endpoint, local)  # type: ignore[union-attr]
        if authenticated:
            self.bind.remember_source(src, local)
        return actions

    def _timers(self) -> None:
        """Run the core's timers when due, then sleep until the next deadline, without a
        timeout while no timer is armed. Every periodic duty of the core is a timer (the
        zeroing of key material too); the rest is done when it is next used: the cookie
        secret is renewed, and the rate limiter's idle entries forgotten, as messages come."""
        while not self.stopped.is_set():
            self._timer_wake.clear()  # a Schedule from now on wakes the wait below
            with self.lock:
                now = self.core_now()
                actions = self.iface.tick(now)
                deadline = self.iface.next_deadline()
                sleep = None if deadline is None else min(max(deadline - now, 0.0),
                                                          threading.TIMEOUT_MAX)
                # Under the lock: the core makes its Schedules under it too.
                self._timer_due = float("inf") if sleep is None else now + sleep
            self.execute(actions)
            self._timer_wake.wait(sleep)

"""The device's receive path: what the `datapath` thread does with a readable UDP socket,
and the crypto workers.

The datapath thread reads a batch (UDP GRO split) and classifies it under the device lock:
runs of transport data with one receiver index and source go to `Peer.consume_data_batch`
(decryption, replay check, key confirmation, allowed-IPs source check) and on to the TUN
in order; handshake messages go to the bounded handshake queue, whose fill level turns
cookies on, or are answered at once while the queue is empty (`Device._may_answer_inline`).

With crypto workers (WGPY_CRYPTO_WORKERS > 1, compiled batch path only) the datapath
thread only looks up each run's keypair and hands the batch on (`_RxJob`): a worker
decrypts its runs with the GIL released (`fastpath.open`), so several batches decrypt at
once while the datapath thread reads the next; then the batches are delivered strictly in
arrival order (replay check and the rest under the lock, `fastpath.accept`, then the TUN
write) by whichever worker finds the oldest one done. This is the seed's parallel
decryption with in-order delivery; wireguard-go's RoutineDecryption and
RoutineSequentialReceiver do the same.
"""

from __future__ import annotations

import errno
import queue
import socket
import threading
from collections import Counter, deque
from typing import TYPE_CHECKING, Callable

from wgpy import fastpath
from wgpy.constants import (
    MAX_BATCH,
    UDP_RECEIVE_RETRIES,
    UDP_RECEIVE_RETRY_PAUSE,
)
from wgpy.device import clock
from wgpy.device.bind import Bind, Endpoint, Local
from wgpy.messages import classify
from wgpy.noise.actions import Action, DropReason
from wgpy.noise.keypair import Keypair
from wgpy.noise.peer import Peer

if TYPE_CHECKING:
    from wgpy.device.device import _Reply
    from wgpy.device.log import Logger
    from wgpy.noise.interface import Interface

__all__ = ["Inbound"]

# Receive errors worth retrying: what Go's net.Error calls Temporary() (syscall.Errno:
# EINTR, EMFILE, ENFILE and the timeouts; net.OpError adds ECONNRESET, ECONNABORTED).
_TRANSIENT = frozenset((errno.EINTR, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ETIMEDOUT,
                        errno.ECONNRESET, errno.ECONNABORTED))
_FAMILY = {"AF_INET": "v4", "AF_INET6": "v6"}


class _RxJob:
    """Received runs of transport data for the crypto workers: (peer, keypair, datagrams,
    source endpoint, local address) each; their plaintexts once decrypted."""

    __slots__ = ("runs", "plains", "done")

    def __init__(self) -> None:
        self.runs: list[tuple[Peer, Keypair, list[bytes], Endpoint, Local | None]] = []
        self.plains: list[list[bytes | None]] = []
        self.done = False



class Inbound:
    """The receive path's methods; `Device` is the one class that mixes them in and holds
    the state they use (declared here for the type checker)."""

    if TYPE_CHECKING:
        bind: Bind
        iface: Interface
        log: Logger
        lock: threading.Lock
        counters_lock: threading.Lock
        stopped: threading.Event
        is_up: bool
        crypto_workers: int
        handshakes_received: Counter[int]
        _bind_generation: int
        _rx_jobs: queue.Queue[_RxJob | None]
        _rx_order: deque[_RxJob]
        _rx_order_lock: threading.Lock
        _rx_deliver_lock: threading.Lock
        _drop: Callable[..., None]
        core_now: Callable[[], float]
        execute: Callable[..., None]
        _write_tun: Callable[[list[bytes]], None]
        _may_answer_inline: Callable[[float], bool]
        _handshake: Callable[..., list[Action | _Reply]]
        _queue_handshake: Callable[..., None]

    def _receive_udp(self, sock: socket.socket, failing: dict[object, tuple[int, float]],
                     generation: int) -> None:
        """`sock` is readable: read a batch (UDP GRO split) and consume it. A receive error
        rests the socket (`_receive_failed`); reading it again clears its record."""
        try:
            batch = self.bind.recv_runs(sock, MAX_BATCH)  # type: ignore[arg-type]
        except OSError as exc:
            if generation != self._bind_generation or exc.errno == errno.EBADF:
                return
            self._receive_failed(sock, exc, failing)
            return
        if failing:
            failing.pop(sock, None)
        if batch:
            self._decrypt_batch(batch)

    @staticmethod
    def _not_resting(socks: dict[int, socket.socket],
                     failing: dict[object, tuple[int, float]]
                     ) -> tuple[dict[int, socket.socket], float | None]:
        """The sockets to read now (not pausing after an error, not given up on) and how long
        to wait before one resumes (None: none will); forgets the sockets a rebind replaced."""
        for sock in [s for s in failing if s not in socks.values()]:
            del failing[sock]
        now = clock.now()
        resume_at = float("inf")
        live = {}
        for fd, sock in socks.items():
            resume = failing.get(sock, (0, 0.0))[1]
            if resume <= now:
                live[fd] = sock
            else:
                resume_at = min(resume_at, resume)
        return live, None if resume_at == float("inf") else resume_at - now

    def _receive_failed(self, sock: object, exc: OSError,
                        failing: dict[object, tuple[int, float]]) -> None:
        """wireguard-go's receive routine: a transient error pauses that socket for
        UDP_RECEIVE_RETRY_PAUSE, up to UDP_RECEIVE_RETRIES times in a row (a datagram read
        resets the count); after that, or at once for any other error, the socket is not read
        again until the next rebind. The device goes on (sending, the other family)."""
        family = _FAMILY.get(getattr(getattr(sock, "family", None), "name", ""), "?")
        errors = failing.get(sock, (0, 0.0))[0]
        self.log.verbose("Failed to receive %s packet: %s", family, exc.strerror or exc)
        if exc.errno in _TRANSIENT and errors < UDP_RECEIVE_RETRIES:
            failing[sock] = (errors + 1, clock.now() + UDP_RECEIVE_RETRY_PAUSE)
            return
        failing[sock] = (errors + 1, float("inf"))
        self.log.error("UDP receive %s stopped after %d errors in a row (%s) until the next "
                       "rebind", family, errors + 1, exc.strerror or exc)

    def _decrypt_batch(self, batch: list[tuple[int, list[bytes], Endpoint, Local | None]]
                       ) -> None:
        """Classify; decrypt transport data in runs per (receiver index, source) and write
        it to the TUN in order; queue handshake messages for the handshake worker. `batch`
        holds `Bind.recv_runs`'s runs: consecutive ones of one index and source join."""
        packets: list[bytes] = []
        actions: list[Action | _Reply] = []
        run: list[bytes] = []
        run_key: tuple[int, Endpoint] | None = None
        local: Local | None = None
        invalid = 0
        # With crypto workers, the runs' decryption and delivery are theirs (`job`).
        job = _RxJob() if self.crypto_workers > 1 else None
        with self.lock:
            if not self.is_up:  # kernel wg_stop closed its sockets: nothing gets in
                self._drop(DropReason.INTERFACE_DOWN, sum(len(r[1]) for r in batch))
                return
            now = self.core_now()  # handshakes complete here, and a rekey may start
            for index, datagrams, src, here in batch:
                if index >= 0:  # transport data
                    key = (index, src)
                    if key == run_key:
                        run += datagrams
                        continue
                    if run_key is not None:
                        self._consume_run(run_key, run, local, now, packets, actions, job)
                    run, run_key, local = datagrams, key, here
                    continue
                data = datagrams[0]
                if classify(data) is None:
                    invalid += 1  # junk never takes a handshake queue slot
                    continue
                with self.counters_lock:
                    self.handshakes_received[data[0]] += 1
                if self._may_answer_inline(now):
                    if run_key is not None:  # in arrival order: data before it first
                        self._consume_run(run_key, run, local, now, packets, actions, job)
                        run, run_key = [], None
                    actions += self._handshake(data, src, here, now, False)
                    continue
                self._queue_handshake(data, src, here, now, actions)
            if run_key is not None:
                self._consume_run(run_key, run, local, now, packets, actions, job)
        if job is not None and job.runs:
            with self._rx_order_lock:
                self._rx_order.append(job)
            self._rx_jobs.put(job)  # waits while the workers are that far behind
        if invalid:
            self._drop(DropReason.INVALID_MESSAGE, invalid)
        if packets:
            self._write_tun(packets)
        self.execute(actions)

    def _consume_run(self, run_key: tuple[int, Endpoint], run: list[bytes],
                     local: Local | None, now: float, packets: list[bytes],
                     actions: list[Action | _Reply], job: _RxJob | None = None) -> None:
        """Transport data with one receiver index from one source, in arrival order; with
        crypto workers (`job` given) only its keypair is looked up here, the rest is theirs."""
        entry = self.iface.index.get(run_key[0])
        if entry is None or entry[1] is None:
            self._drop(DropReason.UNKNOWN_INDEX, len(run))
            return
        peer, src = entry[0], run_key[1]
        if job is not None:
            job.runs.append((peer, entry[1], run, src, local))
            return
        got, more, authenticated = peer.consume_data_batch(entry[1], run, src, now)
        packets += got
        actions += more
        if authenticated:  # kernel: wg_socket_set_peer_endpoint only after counter_validate
            self.bind.remember_source(src, local)

    def _crypto_worker(self) -> None:
        """Decrypt a batch's runs (the GIL released), then deliver every batch that is
        done and first in line: so the TUN sees them in arrival order."""
        while not self.stopped.is_set():
            job = self._rx_jobs.get()
            if job is None:
                continue  # the stop signal: the loop condition ends it
            job.plains = [fastpath.open(keypair.recv_key, run)
                          for _peer, keypair, run, _src, _local in job.runs]
            job.done = True
            with self._rx_deliver_lock:
                while True:
                    with self._rx_order_lock:
                        if not self._rx_order or not self._rx_order[0].done:
                            break
                        ready = self._rx_order.popleft()
                    self._deliver(ready)

    def _deliver(self, job: _RxJob) -> None:
        """The second half of a worker's batch, under the lock: replay check, inner packet
        checks and bookkeeping (`Peer.consume_data_batch` with the plaintexts), then the
        TUN write."""
        packets: list[bytes] = []
        actions: list[Action] = []
        with self.lock:
            if not self.is_up:
                self._drop(DropReason.INTERFACE_DOWN, sum(len(r[2]) for r in job.runs))
                return
            now = self.core_now()  # a confirmed keypair completes its handshake here
            for (peer, keypair, run, src, local), plains in zip(job.runs, job.plains):
                got, more, authenticated = peer.consume_data_batch(keypair, run, src, now,
                                                                   plains)
                packets += got
                actions += more
                if authenticated:
                    self.bind.remember_source(src, local)
        if packets:
            self._write_tun(packets)
        self.execute(actions)


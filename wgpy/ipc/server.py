"""The UAPI socket: /var/run/wireguard/IFNAME.sock, served as wireguard-go serves it.

- The socket file is made by wgpy.ipc.listener (`listen`), with the kernel's largest listen
  queue; the server drains that queue at each wake-up.
- `UapiServer.serve` is one selector thread that holds every connection that is idle, is
  sending a request or is being sent a reply: it accepts, reads into the connection's
  sans-IO `uapi.protocol.ServerConnection`, writes replies as the client takes them, and
  hands a connection whose parser has an event (a complete `get`, the first line of a
  `set`, an error) to a worker thread (at most MAX_WORKERS; a connection waits its turn in
  arrival order). So an idle or trickling client costs a parser and a socket, not a
  thread, and a client that never reads its reply holds no thread and no lock.
- Limits, all enforced by the selector: at most MAX_CLIENTS connections (and never so many
  that the daemon runs out of file descriptors); when full, the connection that has been
  quiet longest (idle, or trickling a request) is closed to make room for the new one, as
  wireguard-go serves every connection. A connection with no request in progress is closed
  after CLIENT_IDLE_TIMEOUT of silence; a request must be whole within REQUEST_DEADLINE of
  its first byte, however slowly it trickles; a reply must be taken within REPLY_DEADLINE.
  Memory: a connection holds at most one line of input (the parser refuses lines over
  64 KiB) plus one read, and at most one reply; unparsed input of all connections is kept
  under INPUT_BUDGET and unsent replies under REPLY_BUDGET by closing the quietest
  connections first.
- A worker applies `set` operations to the device as they arrive (a `set` is not atomic in
  wireguard-go either: what came before an error stays), each under the device lock:
  parsing happens outside it, and a run of allowed IPs is one operation of about a
  thousand prefixes, so the data path never waits long. A `set` holds the device's
  `config_lock` from its first line to its end (wireguard-go's ipcMutex), so two clients'
  sets never interleave: a `replace_peers` from one cannot remove a peer that the other is
  still giving allowed IPs, which would leave a peer that routes and sends but that `get`
  does not list. The lock is granted in arrival order (wgpy.ipc.sharing; a set waits
  for it at most REQUEST_DEADLINE from its first byte), and a set must end within
  SET_DEADLINE of getting it, else the connection is closed and the lock freed, so stalled
  clients cannot lock the configuration, and a `get` waits for the sets before it, not for
  those after it.
  Several requests may share a connection; they are answered one at a time, in order;
  an unknown operation closes it with no reply.
- `get` copies the interface and then a few peers at a time under the device lock (all of
  it under `config_lock`, so it never sees half a set), and formats outside both, into
  pieces of about SEND_SIZE bytes that the selector sends.
- The server watches its socket file: deleting it stops the daemon, and a clean exit
  unlinks it. Like wireguard-go, it learns of the deletion from inotify (the socket file
  and its directory are watched: wgpy.ipc.inotify), then checks with lstat that the
  path no longer names the socket it bound; where inotify is missing, it lstats every
  WATCH_INTERVAL instead.
- The selector thread sleeps until a socket or the watch needs it, or the nearest
  deadline of a connection comes: with no connection held, it has no timeout at all, so an
  idle daemon's UAPI costs no wake-ups.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import socket
import stat
import threading
from collections import deque
from typing import TYPE_CHECKING

from uapi.errors import UapiError
from uapi.protocol import (
    NEED_DATA, CloseConnection, Event, GetRequest, RequestError, ServerConnection, SetRequestEnd,
    SetRequestStart, format_errno,
)
from uapi.responses import format_interface, iter_peer
from wgpy.constants import (
    ACCEPT_PAUSE, CLIENT_IDLE_TIMEOUT, FD_RESERVE, INPUT_BUDGET, MAX_CLIENTS, MAX_WORKERS,
    RECV_SIZE, REPLY_BUDGET, REPLY_DEADLINE, REQUEST_DEADLINE, SEND_SIZE, SET_DEADLINE,
    WATCH_INTERVAL, WORKER_IDLE,
)
from wgpy.device import clock, threads
from wgpy.device.config import SetTransaction, snapshot
from wgpy.ipc.inotify import FileWatch
from wgpy.ipc.listener import listen_backlog
from wgpy.ipc.sharing import FifoLock, ShortSwitchInterval

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["UapiServer"]

_READING, _QUEUED, _WORKING, _WRITING = range(4)


class _Conn:
    """One connection. The selector owns it while READING or WRITING, one worker while
    WORKING; while QUEUED (waiting for a worker) the selector may still close it."""

    __slots__ = ("sock", "parser", "state", "registered", "last_active", "request_start",
                 "pending_in", "event", "out", "out_size", "reply_deadline", "replied",
                 "dead")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.parser = ServerConnection()
        self.state = _READING
        self.registered = 0  # selector events it is registered for
        self.last_active = now  # last byte read or written (or accepted)
        self.request_start: float | None = None  # first byte of the request in progress
        self.pending_in = 0  # bytes read since the selector last saw the parser idle
        self.event: Event | None = None  # the event a worker is to handle
        self.out: deque[memoryview] = deque()  # the reply being sent
        self.out_size = 0
        self.reply_deadline = 0.0
        self.replied = False  # a reply went out since the parser last needed data
        self.dead = False  # a worker wants it closed


def _fd_limit() -> int:
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return MAX_CLIENTS
    if soft == resource.RLIM_INFINITY:
        return MAX_CLIENTS
    return max(min(MAX_CLIENTS, soft - FD_RESERVE), 1)


class UapiServer:
    def __init__(self, device: Device, listener: socket.socket) -> None:
        self.device = device
        self.listener = listener
        self.path = listener.getsockname()
        self._identity = self._stat()
        self.closed = False
        self._conns: dict[int, _Conn] = {}  # by file descriptor
        self._sel: selectors.BaseSelector | None = None
        self._input_total = 0
        self._reply_total = 0
        self._accept_paused_until = 0.0
        self._backlog = listen_backlog()
        self._next_sweep: float | None = None  # the nearest deadline: none, no sweep
        self._turn = FifoLock()  # UAPI's way to config_lock, in arrival order
        # Workers and the hand-back of their connections.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._work_lock = threading.Lock()
        self._work_ready = threading.Condition(self._work_lock)
        self._queue: deque[_Conn] = deque()
        self._workers = 0
        self._idle_workers = 0
        self._returns: deque[_Conn] = deque()
        self._serving = False

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_dev) if stat.S_ISSOCK(st.st_mode) else None

    @property
    def connections(self) -> int:  # held now, for tests
        return len(self._conns)

    # --- the selector thread -----------------------------------------------------------------

    def serve(self) -> None:
        """Thread body of `uapi_accept`: runs until the device stops or the file goes. It
        sleeps until a socket, the socket file's watch or the nearest deadline needs it."""
        device = self.device
        if self._identity is None:
            device.stop("UAPI socket deleted")  # before we even started
            return
        sel = self._sel = selectors.DefaultSelector()
        watch = self._open_watch()
        with self._work_lock:
            self._serving = True
        try:
            try:
                self.listener.setblocking(False)
                sel.register(self.listener, selectors.EVENT_READ)
                sel.register(device.stop_fd, selectors.EVENT_READ)  # readable: the loop ends
            except (OSError, ValueError):  # closed before this thread ran: start, quick stop
                return
            sel.register(self._wake_r, selectors.EVENT_READ)
            if watch is not None:
                sel.register(watch, selectors.EVENT_READ)
            # When to lstat the socket file: once now (the file may have gone before the
            # watch began), then after each event the watch reports, or every WATCH_INTERVAL
            # without a watch. After `close` (which unlinks it) the loop ends first.
            next_look: float | None = 0.0
            while not device.stopped.is_set() and not self.closed:
                now = clock.now()
                if next_look is not None and now >= next_look:
                    if self._stat() != self._identity:
                        device.stop("UAPI socket deleted")
                        return
                    next_look = None if watch is not None else now + WATCH_INTERVAL
                if self._next_sweep is not None and now >= self._next_sweep:
                    self._sweep(now)
                due = min((t for t in (next_look, self._next_sweep) if t is not None),
                          default=None)
                timeout = None if due is None else max(due - clock.now(), 0.0)
                for key, mask in sel.select(timeout):
                    fileobj = key.fileobj
                    if fileobj is self.listener:
                        self._accept()
                    elif fileobj is self._wake_r:
                        self._take_returns()
                    elif fileobj == device.stop_fd:
                        continue
                    elif fileobj is watch:
                        assert watch is not None
                        if watch.changed():
                            next_look = 0.0
                        if watch.lost:  # a watched inode went: events may stop; poll
                            sel.unregister(watch)
                            watch.close()
                            watch, next_look = None, 0.0
                    else:
                        conn: _Conn = key.data
                        if conn.sock.fileno() < 0 or conn.state == _WORKING:
                            continue
                        if mask & selectors.EVENT_WRITE and conn.state == _WRITING:
                            self._write(conn)
                        elif mask & selectors.EVENT_READ and conn.state == _READING:
                            self._read(conn)
        finally:
            with self._work_lock:
                self._serving = False
                self._work_ready.notify_all()
            for conn in list(self._conns.values()):
                if conn.state != _WORKING:
                    self._close(conn)
            while self._returns:
                self._close(self._returns.popleft())
            if watch is not None:
                watch.close()
            sel.close()

    def _open_watch(self) -> FileWatch | None:
        """An inotify watch on the socket file, or None (then lstat polls)."""
        try:
            return FileWatch(self.path)
        except OSError as exc:
            self.device.log.uapi.verbose("UAPI: cannot watch %s (%s): checking it every %g s",
                                         self.path, exc.strerror or exc, WATCH_INTERVAL)
            return None

    def close(self) -> None:
        """Stop listening and unlink the socket, if it is still ours."""
        self.closed = True
        if self._identity is not None and self._stat() == self._identity:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.listener.close()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full: the selector is awake already

    def _watch(self, conn: _Conn, events: int) -> None:
        sel = self._sel
        assert sel is not None
        if events == conn.registered:
            return
        if not events:
            sel.unregister(conn.sock)
        elif not conn.registered:
            sel.register(conn.sock, events, conn)
        else:
            sel.modify(conn.sock, events, conn)
        conn.registered = events

    def _close(self, conn: _Conn) -> None:
        if conn.registered and self._sel is not None:
            try:
                self._sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.registered = 0
        fd = conn.sock.fileno()
        if fd >= 0 and self._conns.get(fd) is conn:
            del self._conns[fd]
        self._input_total -= conn.pending_in
        self._reply_total -= conn.out_size
        conn.pending_in = conn.out_size = 0
        conn.out.clear()
        conn.sock.close()

    def _accept(self) -> None:
        """Take every connection the listen queue holds (bounded by its size), so that a
        burst is drained in one wake-up; past the limit the quietest connection makes room."""
        limit = _fd_limit()
        for _ in range(self._backlog + 1):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self.closed:
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if self._evict("out of file descriptors", None):
                        continue
                    # Nothing to close: stop accepting for a moment instead of spinning.
                    assert self._sel is not None
                    self._sel.unregister(self.listener)
                    self._accept_paused_until = clock.now() + ACCEPT_PAUSE
                    self._due(self._accept_paused_until)
                self.device.log.uapi.error("UAPI accept failed: %s", exc)
                return
            if len(self._conns) >= limit and not self._evict("connections full", None):
                sock.close()  # every connection is being answered: nothing to close
                continue
            sock.setblocking(False)
            conn = _Conn(sock, clock.now())
            self._conns[sock.fileno()] = conn
            self._watch(conn, selectors.EVENT_READ)
            self._due(self._deadline(conn))

    def _evict(self, why: str, spare: _Conn | None, holding_input: bool = False) -> bool:
        """Close the connection quiet for longest: idle or reading a request first, then
        one waiting for a worker, then one whose reply stalls; never one a worker has.
        With `holding_input`, only one that holds unparsed input. False if there is none."""
        for state in (_READING, _QUEUED, _WRITING):
            victim = None
            for conn in self._conns.values():
                if conn.state == state and conn is not spare and (
                        victim is None or conn.last_active < victim.last_active) and (
                        conn.pending_in or not holding_input):
                    victim = conn
            if victim is None:
                continue
            if state == _QUEUED:
                with self._work_lock:
                    if victim.state != _QUEUED:
                        continue  # a worker took it just now
                    self._queue.remove(victim)
            break
        else:
            return False
        self.device.log.uapi.verbose("UAPI: %s, closing the connection quiet for %.1f s", why,
                                clock.now() - victim.last_active)
        self._close(victim)
        return True

    @staticmethod
    def _deadline(conn: _Conn) -> float | None:
        """When the selector must close `conn` if nothing happens first; None while a worker
        has it or it waits for one (the worker's set has its own deadline)."""
        if conn.state == _READING:
            if conn.request_start is not None:
                return conn.request_start + REQUEST_DEADLINE
            return conn.last_active + CLIENT_IDLE_TIMEOUT
        if conn.state == _WRITING:
            return conn.reply_deadline
        return None

    def _due(self, at: float | None) -> None:
        """Something must be looked at by `at` (a connection's deadline, accept's pause)."""
        if at is not None and (self._next_sweep is None or at < self._next_sweep):
            self._next_sweep = at

    def _sweep(self, now: float) -> None:
        """Close the connections past their deadline, resume accepting after a pause, and
        plan the next sweep for the nearest deadline left (none: no timeout at all)."""
        self._next_sweep = None
        if self._accept_paused_until:
            if now >= self._accept_paused_until:
                self._accept_paused_until = 0.0
                assert self._sel is not None
                self._sel.register(self.listener, selectors.EVENT_READ)
            else:
                self._due(self._accept_paused_until)
        for conn in list(self._conns.values()):
            deadline = self._deadline(conn)
            if deadline is None or now < deadline:
                self._due(deadline)
                continue
            if conn.state == _WRITING:
                self.device.log.uapi.verbose("UAPI: reply not taken within %g s", REPLY_DEADLINE)
            elif conn.request_start is not None:
                self.device.log.uapi.verbose("UAPI: request not complete within %g s",
                                             REQUEST_DEADLINE)
            self._close(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        now = clock.now()
        conn.last_active = now
        if data and conn.request_start is None:
            conn.request_start = now
            self._due(self._deadline(conn))
        conn.parser.receive_data(data)
        conn.pending_in += len(data)
        self._input_total += len(data)
        self._advance(conn)
        if not data and conn.state == _READING:
            self._close(conn)  # end of input and nothing left to answer
        while self._input_total > INPUT_BUDGET and self._evict("input budget", conn, True):
            pass

    def _advance(self, conn: _Conn) -> None:
        """The selector owns `conn` and has no reply for it: hand its next event to a
        worker, or wait for more input."""
        try:
            event = conn.parser.next_event()
        except Exception as exc:  # never let a client take the daemon down
            self.device.log.uapi.error("UAPI connection failed: %r", exc)
            self._close(conn)
            return
        if event is NEED_DATA:
            if conn.replied:
                conn.parser.end_skip()  # what comes after our reply is a new request
                conn.replied = False
            conn.state = _READING
            self._watch(conn, selectors.EVENT_READ)
            self._due(self._deadline(conn))
            return
        if isinstance(event, CloseConnection):
            self._close(conn)
            return
        conn.event = event  # type: ignore[assignment]
        if conn.request_start is None:  # pipelined after the previous request
            conn.request_start = clock.now()
        conn.state = _QUEUED
        self._watch(conn, 0)
        self._dispatch(conn)

    def _write(self, conn: _Conn) -> None:
        out = conn.out
        sent = 0
        try:
            while out:
                piece = out[0]
                n = conn.sock.send(piece)
                sent += n
                if n < len(piece):
                    out[0] = piece[n:]
                    break
                out.popleft()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)
            return
        finally:
            conn.out_size -= sent
            self._reply_total -= sent
        if sent:
            conn.last_active = clock.now()
        if not out:
            self._advance(conn)

    def _take_returns(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returns:
            conn = self._returns.popleft()
            conn.request_start = None
            self._input_total -= conn.pending_in  # what it had read was consumed
            conn.pending_in = 0
            if conn.dead or self.closed:
                self._close(conn)
                continue
            conn.sock.setblocking(False)
            now = clock.now()
            conn.last_active = now
            if conn.out:
                conn.state = _WRITING
                conn.reply_deadline = now + REPLY_DEADLINE
                self._due(conn.reply_deadline)
                self._reply_total += conn.out_size
                while self._reply_total > REPLY_BUDGET and self._evict("reply budget", conn):
                    pass
                self._write(conn)  # most replies fit the socket's buffer
                if conn.state == _WRITING and conn.sock.fileno() >= 0:
                    self._watch(conn, selectors.EVENT_WRITE)
            else:
                self._advance(conn)

    # --- workers -------------------------------------------------------------------------------

    def _dispatch(self, conn: _Conn) -> None:
        with self._work_lock:
            self._queue.append(conn)
            if self._idle_workers:
                self._work_ready.notify()
                return
            if self._workers >= MAX_WORKERS:
                return  # it waits its turn
            self._workers += 1
        threads.start("uapi_conn", self._work)

    def _give_back(self, conn: _Conn) -> None:
        with self._work_lock:
            if self._serving:
                self._returns.append(conn)
                conn = None  # type: ignore[assignment]
        if conn is None:
            self._wake()
        else:
            conn.sock.close()

    def _work(self) -> None:
        while True:
            with self._work_lock:
                self._idle_workers += 1
                while not self._queue and self._serving:
                    if not self._work_ready.wait(WORKER_IDLE) and not self._queue:
                        break
                self._idle_workers -= 1
                if not self._queue or not self._serving:
                    self._workers -= 1
                    return
                conn = self._queue.popleft()
                conn.state = _WORKING
            try:
                with ShortSwitchInterval():
                    self._serve_request(conn)
            except OSError:
                conn.dead = True
            except Exception as exc:  # never let a client take the daemon down
                self.device.log.uapi.error("UAPI connection failed: %r", exc)
                conn.dead = True
            self._give_back(conn)

    def _lock_config(self, timeout: float | None) -> bool:
        if not self._turn.acquire(timeout):
            return False
        self.device.config_lock.acquire()
        return True

    def _unlock_config(self) -> None:
        self.device.config_lock.release()
        self._turn.release()

    def _serve_request(self, conn: _Conn) -> None:
        """One request whose first event the parser gave: leaves its reply in `conn.out`,
        or sets `conn.dead`."""
        event, conn.event = conn.event, None
        device = self.device
        reply: list[bytes]
        if isinstance(event, GetRequest):
            reply = self._answer_get()
        elif isinstance(event, SetRequestStart):
            assert conn.request_start is not None
            wait = conn.request_start + REQUEST_DEADLINE - clock.now()
            if wait <= 0 or not self._lock_config(wait):
                device.log.uapi.verbose("UAPI: set not started within %g s", REQUEST_DEADLINE)
                conn.dead = True
                return
            reply = self._apply_set(conn)
            if not reply:
                conn.dead = True
                return
        elif isinstance(event, RequestError):
            device.log.uapi.verbose("UAPI: %s", event.message)
            reply = [format_errno(event.errno)]
        else:  # an operation outside a set cannot come from the parser
            conn.dead = True
            return
        conn.replied = True
        conn.out.extend(memoryview(piece) for piece in reply)
        conn.out_size = sum(len(piece) for piece in reply)

    def _apply_set(self, conn: _Conn) -> list[bytes]:
        """The rest of a set, holding config_lock (taken by the caller, released here);
        [] if the client stalled or left in the middle of it."""
        device = self.device
        parser = conn.parser
        txn = SetTransaction(device)
        txn.deadline = clock.now() + SET_DEADLINE
        held = True
        try:
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    remaining = txn.deadline - clock.now()
                    if remaining <= 0:
                        device.log.uapi.verbose("UAPI: set not ended within %g s", SET_DEADLINE)
                        return []
                    conn.sock.settimeout(remaining)
                    try:
                        data = conn.sock.recv(RECV_SIZE)
                    except TimeoutError:
                        device.log.uapi.verbose("UAPI: set not ended within %g s", SET_DEADLINE)
                        return []
                    parser.receive_data(data)
                    continue
                if isinstance(event, SetRequestEnd):
                    try:
                        with device.lock:
                            txn.finish(device.core_now())
                    finally:
                        held = False
                        self._unlock_config()
                    device.execute(txn.actions)
                    return [format_errno(0)]
                if isinstance(event, RequestError):
                    device.log.uapi.verbose("UAPI: %s", event.message)
                    held = False
                    self._unlock_config()
                    device.execute(txn.actions)
                    return [format_errno(event.errno)]
                if isinstance(event, (CloseConnection, GetRequest, SetRequestStart)):
                    return []  # not from a parser in a set
                try:
                    with device.lock:
                        txn.apply(event, device.core_now())  # type: ignore[arg-type]
                except UapiError as exc:
                    device.log.uapi.verbose("UAPI: %s", exc)
                    parser.abort_set()  # the parser skips the rest of this set
                    held = False
                    self._unlock_config()
                    device.execute(txn.actions)
                    return [format_errno(exc.errno)]
        finally:
            if held:  # the client left or stalled in the middle of a set
                self._unlock_config()
                device.execute(txn.actions)

    def _answer_get(self) -> list[bytes]:
        """The reply to one `get`: copied under `config_lock` (never half a set), with the
        device lock held only to copy a few peers at a time; formatted outside both, into
        pieces of about SEND_SIZE bytes that the selector sends as the client reads."""
        device = self.device
        self._lock_config(None)
        try:
            info = snapshot(device)
        finally:
            self._unlock_config()
        head = format_interface(info)
        pieces: list[bytes] = []
        out, size = [head], len(head)
        for peer in info.peers:
            for piece in iter_peer(peer):
                out.append(piece)
                size += len(piece)
                if size >= SEND_SIZE:
                    pieces.append(b"".join(out))
                    out, size = [], 0
        out.append(format_errno(0))
        pieces.append(b"".join(out))
        return pieces

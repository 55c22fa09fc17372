"""The UAPI socket: /var/run/wireguard/IFNAME.sock, served as wireguard-go serves it.

- `listen(name)` makes the directory (0755) and binds the socket under umask 077, so only
  root may connect. If the path is taken, it dials it: an answer means another daemon owns
  the name (an error for the caller), silence means a stale file, removed and replaced.
- `UapiServer.serve` accepts connections, each in its own thread (at most MAX_CLIENTS at
  once), runs the sans-IO `uapi.protocol.ServerConnection` over it and applies `set`
  operations to the device as they arrive (a `set` is not atomic in wireguard-go either:
  what came before an error stays), each under the device lock: parsing happens outside
  it, and a run of allowed IPs is one operation of about a thousand prefixes, so the data
  path never waits long. A `set` holds the device's `config_lock` from its first line to
  its end (wireguard-go's ipcMutex), so two clients' sets never interleave: a
  `replace_peers` from one cannot remove a peer that the other is still giving allowed IPs,
  which would leave a peer that routes and sends but that `get` does not list. A set must
  end within SET_DEADLINE of its first line, else the connection is closed and the lock
  freed, so a stalled client cannot lock the configuration.
  Several requests may share a connection; they are answered one at a time, in order;
  an unknown operation closes it with no reply.
- `get` copies the interface and then a few peers at a time under the device lock (all of
  it under `config_lock`, so it never sees half a set), and formats and sends outside
  both, in writes of about SEND_SIZE bytes.
  Input is bounded: the parser refuses lines over 64 KiB and an idle client is dropped.
- The server watches its socket file: deleting it stops the daemon (wireguard-go uses
  inotify; a 0.5 s lstat poll does the same here), and a clean exit unlinks it.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
import threading
from typing import TYPE_CHECKING

from uapi.errors import UapiError
from uapi.protocol import (
    NEED_DATA, CloseConnection, GetRequest, RequestError, ServerConnection, SetRequestEnd,
    SetRequestStart, format_errno,
)
from uapi.responses import format_interface, iter_peer
from wgpy.device import clock
from wgpy.device.config import SetTransaction, interface_info, peer_info

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["SOCKET_DIR", "listen", "UapiServer", "SocketInUse"]

SOCKET_DIR = "/var/run/wireguard"
MAX_CLIENTS = 64
CLIENT_IDLE_TIMEOUT = 30.0
SET_DEADLINE = 30.0  # a set holding config_lock must end within this time of its start
WATCH_INTERVAL = 0.5
# Larger reads gain nothing measurable, and what a read takes in decides how much of a
# failed set is dropped (wireguard-go drops what it had buffered; compat tests compare).
RECV_SIZE = 1 << 16
SEND_SIZE = 1 << 18  # a get reply goes out in writes of about this size
PEERS_PER_HOLD = 64  # peers a get copies per hold of the device lock


# While a UAPI thread works, the GIL changes hands at least this often: a data-path thread
# that wakes for a packet waits at most about this long behind a big get or set (the
# interpreter's default, 5 ms, added up to 10 ms to a ping through the tunnel per round
# trip). Only while UAPI work runs, so that the data path's own threads keep the default.
UAPI_SWITCH_INTERVAL = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


class _ShortSwitchInterval:
    """A context in which `sys.getswitchinterval()` is at most UAPI_SWITCH_INTERVAL."""

    def __enter__(self) -> None:
        global _switch_users, _switch_saved
        with _switch_lock:
            if _switch_users == 0:
                _switch_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_switch_saved, UAPI_SWITCH_INTERVAL))
            _switch_users += 1

    def __exit__(self, *exc: object) -> None:
        global _switch_users
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


class SocketInUse(Exception):
    """Another daemon answers on the socket path."""


def socket_path(name: str, directory: str = SOCKET_DIR) -> str:
    return os.path.join(directory, f"{name}.sock")


def listen(name: str, directory: str = SOCKET_DIR) -> socket.socket:
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = socket_path(name, directory)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: nobody answers
                sock.bind(path)
            else:
                raise SocketInUse(f"unix socket in use: {path}") from exc
            finally:
                probe.close()
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen(128)
    return sock


class UapiServer:
    def __init__(self, device: Device, listener: socket.socket) -> None:
        self.device = device
        self.listener = listener
        self.path = listener.getsockname()
        self._identity = self._stat()
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self.closed = False

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_dev) if stat.S_ISSOCK(st.st_mode) else None

    def serve(self) -> None:
        """Thread body of `uapi_accept`: runs until the device stops or the file goes."""
        self.listener.settimeout(WATCH_INTERVAL)
        device = self.device
        if self._identity is None:
            device.stop("UAPI socket deleted")  # before we even started
            return
        while not device.stopped.is_set():
            if self._stat() != self._identity:
                device.stop("UAPI socket deleted")
                return
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self.closed:
                    return
                device.log.error("UAPI accept failed: %s", exc)
                continue
            if not self._clients.acquire(blocking=False):
                conn.close()  # too many at once
                continue
            threading.Thread(target=self._serve_client, args=(conn,), name="uapi_conn",
                             daemon=True).start()

    def close(self) -> None:
        """Stop listening and unlink the socket, if it is still ours."""
        self.closed = True
        if self._identity is not None and self._stat() == self._identity:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.listener.close()

    def _serve_client(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(CLIENT_IDLE_TIMEOUT)
            self._converse(conn)
        except OSError:
            pass
        except Exception as exc:  # never let a client take the daemon down
            self.device.log.error("UAPI connection failed: %r", exc)
        finally:
            conn.close()
            self._clients.release()

    def _converse(self, conn: socket.socket) -> None:
        parser = ServerConnection()
        txn: SetTransaction | None = None
        config_lock = self.device.config_lock
        try:
            while True:
                if txn is not None:  # bounded: the set holds config_lock
                    conn.settimeout(max(txn.deadline - clock.now(), 0.001))
                data = conn.recv(RECV_SIZE)
                with _ShortSwitchInterval():
                    txn = self._handle(conn, parser, data, txn)
                if txn is None:
                    conn.settimeout(CLIENT_IDLE_TIMEOUT)
                if parser.closed or not data:
                    return
        finally:
            if txn is not None:  # the client left or stalled in the middle of a set
                self.device.execute(txn.actions)
                config_lock.release()

    def _handle(self, conn: socket.socket, parser: ServerConnection, data: bytes,
                txn: SetTransaction | None) -> SetTransaction | None:
        """Every request that `data` completes, answered one at a time, in order; returns
        the set still open, if any."""
        device = self.device
        parser.receive_data(data)
        replied = False
        while True:
            event = parser.next_event()
            if event is NEED_DATA or isinstance(event, CloseConnection):
                break
            if isinstance(event, GetRequest):
                self._answer_get(conn)
                replied = True
            elif isinstance(event, SetRequestStart):
                device.config_lock.acquire()  # released where txn ends
                txn = SetTransaction(device)
                txn.deadline = clock.now() + SET_DEADLINE
            elif isinstance(event, SetRequestEnd):
                if txn is not None:
                    try:
                        with device.lock:
                            txn.finish(clock.now())
                    finally:
                        device.config_lock.release()
                    device.execute(txn.actions)
                txn = None
                conn.sendall(format_errno(0))
                replied = True
            elif isinstance(event, RequestError):
                device.log.verbose("UAPI: %s", event.message)
                if txn is not None:
                    device.config_lock.release()
                    device.execute(txn.actions)
                txn = None
                conn.sendall(format_errno(event.errno))
                replied = True
            elif txn is not None:
                try:
                    with device.lock:
                        txn.apply(event, clock.now())  # type: ignore[arg-type]
                except UapiError as exc:
                    device.log.verbose("UAPI: %s", exc)
                    parser.abort_set()  # the parser skips the rest of this set
                    device.config_lock.release()
                    device.execute(txn.actions)
                    txn = None
                    conn.sendall(format_errno(exc.errno))
                    replied = True
        if replied:
            parser.end_skip()  # what comes after our reply is a new request
        return txn

    def _answer_get(self, conn: socket.socket) -> None:
        """The reply to one `get`: copied under `config_lock` (never half a set), with the
        device lock held only to copy a few peers at a time; formatted and sent outside
        both, so neither the data path nor other clients wait for a slow reader."""
        device = self.device
        with device.config_lock:
            with device.lock:
                head = format_interface(interface_info(device))
                peers = list(device.iface.peers.values())
            infos = []
            for i in range(0, len(peers), PEERS_PER_HOLD):
                with device.lock:
                    infos += [peer_info(device, peer) for peer in peers[i:i + PEERS_PER_HOLD]]
        out, size = [head], len(head)
        for info in infos:
            for piece in iter_peer(info):
                out.append(piece)
                size += len(piece)
                if size >= SEND_SIZE:
                    conn.sendall(b"".join(out))
                    out, size = [], 0
        out.append(format_errno(0))
        conn.sendall(b"".join(out))

"""Sockets through a `wgpy.Tunnel`: TCP and UDP over the userspace stack, without root.

Theory of operation: a `Network` runs a `wgpy.netstack.Stack` for the tunnel's address on
the tunnel's packets. One thread, `netstack`, reads what the tunnel delivers
(`Tunnel.receive`, so that `Tunnel.ping` goes on working beside it), feeds the stack, runs
its timers, sends what the stack owes and wakes whoever waits on what changed. The
program's calls take the same lock, change the stack (connect, write, read, close) and send
what that made due at once, in their own thread, so a write never waits for the
`netstack` thread.

Two faces: blocking sockets (`create_connection`, `listen`, `udp`), whose waits are one
condition variable, and asyncio streams (`open_connection`, `start_server`), whose
transports the `netstack` thread wakes with `call_soon_threadsafe`. Errors are the socket
module's: ConnectionRefusedError, ConnectionResetError, TimeoutError (ETIMEDOUT),
BrokenPipeError. `close()` resets what is still open, stops the thread and leaves the
tunnel to its owner.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import threading
import time
from typing import Any, Callable, Sequence

from wgpy.api.tunnel import Tunnel
from wgpy.netstack import Connection, Listener, Stack, State, UdpEndpoint

__all__ = ["Network", "TcpSocket", "TcpListener", "UdpSocket"]

_IDLE_WAIT = 1.0  # the thread's longest sleep with no connection
_BUSY_WAIT = 0.2  # with connections: a timer armed meanwhile is late by at most this
_READ_CHUNK = 1 << 16
_BATCH = 64  # packets taken from the tunnel per wake-up: one ACK answers them
_HIGH_WATER = 1 << 20  # asyncio: pause the writer above this many bytes not yet taken


def _error(conn: Connection) -> OSError:
    code = conn.error or errno.ECONNRESET
    kind = {errno.ECONNREFUSED: ConnectionRefusedError, errno.ECONNRESET: ConnectionResetError,
            errno.ETIMEDOUT: TimeoutError}.get(code, OSError)
    peer = f"{ipaddress.ip_address(conn.remote)} port {conn.remote_port}"
    return kind(code, f"{os.strerror(code)} ({peer})")


class Network:
    """A host on the tunnel's address: TCP and UDP sockets through `tunnel`."""

    def __init__(self, tunnel: Tunnel, addresses: Sequence[str] | None = None,
                 mtu: int | None = None) -> None:
        self.tunnel = tunnel
        self.stack = Stack(addresses or [str(tunnel.address)], mtu or tunnel.mtu)
        self.lock = threading.Condition()
        self._transports: dict[Connection, _Transport] = {}
        self._servers: dict[Listener, Callable[[Connection], None]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="netstack", daemon=True)
        self._thread.start()

    # --- blocking sockets -------------------------------------------------------------------

    def create_connection(self, address: tuple[str, int],
                          timeout: float | None = None) -> TcpSocket:
        """Connect to (host, port); host an address (names: resolve them through the
        tunnel's DNS first, see wgpy.api.proxy)."""
        with self.lock:
            self._check_open()
            conn = self.stack.connect(address[0], address[1], time.monotonic())
            self._flush()
        sock = TcpSocket(self, conn, timeout)
        try:
            sock._wait(lambda: conn.state != State.SYN_SENT, "connect")
        except BaseException:
            sock.abort()
            raise
        if conn.state == State.CLOSED:
            raise _error(conn)
        return sock

    def listen(self, port: int) -> TcpListener:
        with self.lock:
            self._check_open()
            return TcpListener(self, self.stack.listen(port))

    def udp(self, port: int = 0) -> UdpSocket:
        with self.lock:
            self._check_open()
            return UdpSocket(self, self.stack.udp_open(port))

    # --- asyncio ----------------------------------------------------------------------------

    async def open_connection(self, host: str, port: int, limit: int = 1 << 16
                              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """`asyncio.open_connection` through the tunnel."""
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = loop.create_future()
        with self.lock:
            self._check_open()
            conn = self.stack.connect(host, port, time.monotonic())
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport = _Transport(self, conn, loop, protocol, connected)
            self._transports[conn] = transport
            self._flush()
        try:
            await connected
        except BaseException:
            transport.abort()
            raise
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def start_server(self, client_connected: Callable[..., Any], port: int
                           ) -> TcpListener:
        """Serve `client_connected(reader, writer)` (a coroutine function or a function)
        for each connection to `port`, as `asyncio.start_server`; close the returned
        listener to stop."""
        loop = asyncio.get_running_loop()

        def accepted(conn: Connection) -> None:  # in the netstack thread, under the lock
            loop.call_soon_threadsafe(self._serve, loop, conn, client_connected)

        with self.lock:
            self._check_open()
            listener = TcpListener(self, self.stack.listen(port))
            self._servers[listener.listener] = accepted
        return listener

    def _serve(self, loop: asyncio.AbstractEventLoop, conn: Connection,
               client_connected: Callable[..., Any]) -> None:
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        with self.lock:
            transport = _Transport(self, conn, loop, protocol, None)
            self._transports[conn] = transport
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        transport.schedule()  # what arrived before the transport existed
        result = client_connected(reader, writer)
        if asyncio.iscoroutine(result):
            # The transport holds the handler's task (and so its reader and writer): the
            # protocol holds the reader only weakly, the loop its tasks only weakly, and a
            # collected StreamWriter closes its transport (asyncio.start_server keeps the
            # task on its protocol for the same reason).
            transport.task = loop.create_task(result)

    # --- the netstack thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.lock:
                if self._closed:
                    return
                due = self.stack.next_deadline()
                idle = _BUSY_WAIT if self.stack.connections else _IDLE_WAIT
            wait = idle if due is None else min(max(due - time.monotonic(), 0.001), idle)
            try:
                packets = self.tunnel.receive_batch(timeout=wait, limit=_BATCH)
            except TimeoutError:
                packets = []
            except (EOFError, OSError, RuntimeError):
                with self.lock:
                    self._fail_all()
                return
            with self.lock:
                if self._closed:
                    return
                now = time.monotonic()
                touched: list[object] = [self.stack.receive(p, now) for p in packets]
                touched += self.stack.tick(now)
                self._flush()
                self._wake(touched)

    def _flush(self) -> None:
        """Send what the stack owes now (under the lock)."""
        for packet in self.stack.output(time.monotonic()):
            try:
                self.tunnel.send(packet)
            except (EOFError, OSError, RuntimeError):
                return  # the tunnel closed: the thread notices and fails the sockets

    def _wake(self, touched: list[object]) -> None:
        for thing in touched:
            if isinstance(thing, Listener):
                serve = self._servers.get(thing)
                while serve is not None and thing.ready:
                    serve(thing.ready.popleft())
            elif isinstance(thing, Connection):
                transport = self._transports.get(thing)
                if transport is not None:
                    transport.schedule()
        self.lock.notify_all()

    def _fail_all(self) -> None:
        for conn in list(self.stack.connections.values()):
            if conn.state != State.CLOSED:
                conn.abort()
                conn.error = conn.error or errno.ENETDOWN
        for transport in list(self._transports.values()):
            transport.schedule()
        self._closed = True
        self.lock.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.ENETDOWN, "the network is closed")

    def close(self) -> None:
        """Reset every connection still open and stop the thread (the tunnel stays)."""
        with self.lock:
            if self._closed:
                return
            for conn in list(self.stack.connections.values()):
                conn.abort()
            self._flush()
            self._fail_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpSocket:
    """A connected TCP socket: `send`/`sendall`, `recv`, `shutdown`, `close`."""

    def __init__(self, network: Network, conn: Connection, timeout: float | None) -> None:
        self.network, self.conn, self.timeout = network, conn, timeout

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        """Wait under the lock until `ready()`; TimeoutError after `self.timeout`."""
        lock = self.network.lock
        with lock:
            if not lock.wait_for(lambda: ready() or self.network._closed, self.timeout):
                raise TimeoutError(errno.ETIMEDOUT, f"{what} timed out")

    def send(self, data: bytes) -> int:
        conn, lock = self.conn, self.network.lock
        self._wait(lambda: conn.writable > 0 or conn.state == State.CLOSED, "send")
        with lock:
            if conn.error is not None:
                raise _error(conn)
            n = conn.write(data)  # BrokenPipeError after close/shutdown
            self.network._flush()
            return n

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(bytes(view[:_READ_CHUNK * 4])):]

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes; b"" once the peer closed and all was read."""
        conn, lock = self.conn, self.network.lock
        self._wait(lambda: bool(conn.recv_buffer) or conn.peer_closed
                   or conn.state == State.CLOSED, "recv")
        with lock:
            data = conn.read(size)
            if not data and conn.error is not None and not conn.peer_closed:
                raise _error(conn)
            self.network._flush()  # a window update, if reading opened the window
            return data

    def shutdown_write(self) -> None:
        """No more data from us (SHUT_WR): the peer reads to the end, then b""."""
        with self.network.lock:
            self.conn.close()
            self.network._flush()

    def close(self) -> None:
        self.shutdown_write()

    def abort(self) -> None:
        with self.network.lock:
            self.conn.abort()
            self.network._flush()

    def __enter__(self) -> TcpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpListener:
    def __init__(self, network: Network, listener: Listener) -> None:
        self.network, self.listener = network, listener
        self.port = listener.port

    def accept(self, timeout: float | None = None) -> TcpSocket:
        lock = self.network.lock
        with lock:
            if not lock.wait_for(lambda: bool(self.listener.ready) or self.listener.closed
                                 or self.network._closed, timeout):
                raise TimeoutError(errno.ETIMEDOUT, "accept timed out")
            if not self.listener.ready:
                raise OSError(errno.EBADF, "the listener is closed")
            return TcpSocket(self.network, self.listener.ready.popleft(), None)

    def close(self) -> None:
        with self.network.lock:
            self.network.stack.close_listener(self.listener)
            self.network._servers.pop(self.listener, None)
            self.network._flush()
            self.network.lock.notify_all()


class UdpSocket:
    def __init__(self, network: Network, endpoint: UdpEndpoint) -> None:
        self.network, self.endpoint = network, endpoint
        self.port = endpoint.port

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        with self.network.lock:
            self.network.stack.udp_send(self.endpoint, address[0], address[1], data)
            self.network._flush()

    def recvfrom(self, timeout: float | None = None) -> tuple[bytes, tuple[str, int]]:
        lock = self.network.lock
        with lock:
            if not lock.wait_for(lambda: bool(self.endpoint.queue) or self.network._closed,
                                 timeout):
                raise TimeoutError(errno.ETIMEDOUT, "recvfrom timed out")
            if not self.endpoint.queue:
                raise OSError(errno.ENETDOWN, "the network is closed")
            host, port, data = self.endpoint.queue.popleft()
            return data, (host, port)

    def close(self) -> None:
        with self.network.lock:
            self.network.stack.udp_close(self.endpoint)


class _Transport(asyncio.Transport):
    """An asyncio transport over one connection; its methods run in the loop's thread,
    `schedule` in the netstack thread."""

    def __init__(self, network: Network, conn: Connection, loop: asyncio.AbstractEventLoop,
                 protocol: asyncio.BaseProtocol, connected: asyncio.Future[None] | None
                 ) -> None:
        super().__init__()
        self._network, self._conn, self._loop = network, conn, loop
        self._protocol: Any = protocol
        self._connected = connected
        self._pending = bytearray()  # written by the program, not yet in the send buffer
        self._paused = self._eof = self._lost = self._closing = self._started = False
        self._scheduled = False
        self._paused_reading = False
        self.task: asyncio.Task[Any] | None = None  # a server's handler, see Network._serve
        if connected is None:
            self._start()

    def _start(self) -> None:
        self._started = True
        self._protocol.connection_made(self)

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._on_event)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                self._network._transports.pop(self._conn, None)

    def _on_event(self) -> None:
        self._scheduled = False
        conn, lock = self._conn, self._network.lock
        with lock:
            state = conn.state
            data = conn.read(1 << 20) if self._started and not self._paused_reading else b""
            self._push()
            self._network._flush()
            eof = conn.peer_closed and not conn.recv_buffer
            error = conn.error
        if self._connected is not None and not self._connected.done():
            if state == State.SYN_SENT:
                return
            if state == State.CLOSED and error is not None:
                self._connected.set_exception(_error(conn))
                self._lost = True
                return
            self._connected.set_result(None)
            self._start()
            self.schedule()  # data that came with the handshake
            return
        if data:
            self._protocol.data_received(data)
        if self._paused and len(self._pending) < _HIGH_WATER // 2:
            self._paused = False
            self._protocol.resume_writing()
        if eof and not self._eof:
            self._eof = True
            self._protocol.eof_received()
        # TIME-WAIT is the end for the program: both FINs are acknowledged, only the
        # four-tuple stays reserved (for 2 MSL) in the stack.
        if state in (State.CLOSED, State.TIME_WAIT) and not self._lost:
            self._lost = True
            self._network._transports.pop(conn, None)
            exc = _error(conn) if error is not None and not conn.peer_closed else None
            self._protocol.connection_lost(exc)

    def pause_reading(self) -> None:
        self._paused_reading = True

    def resume_reading(self) -> None:
        self._paused_reading = False
        self.schedule()

    def is_reading(self) -> bool:
        return not self._paused_reading

    def _push(self) -> None:
        """Move what waits into the connection's send buffer (under the lock)."""
        if self._pending and self._conn.state not in (State.CLOSED,) and self._conn.writable:
            try:
                taken = self._conn.write(bytes(self._pending[:self._conn.writable]))
            except BrokenPipeError:
                self._pending.clear()
                return
            del self._pending[:taken]
        if self._closing and not self._pending:
            self._conn.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            return
        self._pending += data
        with self._network.lock:
            self._push()
            self._network._flush()
        if not self._paused and len(self._pending) > _HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        self._closing = True
        with self._network.lock:
            self._push()
            self._network._flush()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.write_eof()

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def abort(self) -> None:
        with self._network.lock:
            self._conn.abort()
            self._network._flush()
        self.schedule()

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self._conn
        if name == "peername":
            return (str(ipaddress.ip_address(conn.remote)), conn.remote_port)
        if name == "sockname":
            return (str(ipaddress.ip_address(conn.local)), conn.local_port)
        return default

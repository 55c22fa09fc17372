"""The HTTP side of the metrics (wgpy.observe.metrics has what they say): `GET /metrics`
served by the standard library's HTTP handler.

Theory of operation: the device thread `metrics` accepts (asleep until a client connects or
the device stops: `Device.stop_fd`), and each connection gets a thread of its own
(`metrics_client`), at most METRICS_MAX_CLIENTS at once (more are closed at once), and a
deadline for the whole exchange (METRICS_CLIENT_DEADLINE, then its socket is shut down), so
a slow or stuck client delays neither other scrapes nor the device's close. Only a device
asked to serve metrics imports this module (`serve_metrics`).
"""

from __future__ import annotations

import http.server
import select
import socket
import threading
from typing import TYPE_CHECKING, Any

from uapi.values import format_endpoint
from wgpy.constants import METRICS_CLIENT_DEADLINE, METRICS_MAX_CLIENTS
from wgpy.device import threads
from wgpy.observe.metrics import CONTENT_TYPE, bind, collect, render

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["MetricsServer", "serve_metrics"]


def serve_metrics(device: Device, listener: socket.socket | str) -> tuple[str, int]:
    """Serve Prometheus metrics for `device` at http://HOST:PORT/metrics until it stops, in
    its thread `metrics`; `listener` is a listening socket or its `HOST:PORT` (MetricsError
    if unusable). Returns the address served."""
    server = MetricsServer(device, listener)
    device.spawn("metrics", server.serve)
    return server.address


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = METRICS_CLIENT_DEADLINE  # per read; the server cuts the whole exchange too
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "Not Found: try /metrics")
            return
        body = render(collect(self.server.device)).encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not worth a log line


class _HTTPServer(http.server.HTTPServer):
    device: Device
    _active = 0
    _active_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            if self._active >= METRICS_MAX_CLIENTS:
                self.shutdown_request(request)
                return
            self._active += 1
        threads.start("metrics_client", self._serve_client, request, client_address)

    def _serve_client(self, request: Any, client_address: Any) -> None:
        cut = threading.Timer(METRICS_CLIENT_DEADLINE, _shut, (request,))
        cut.name, cut.daemon = "metrics_deadline", True
        cut.start()
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            cut.cancel()
            self.shutdown_request(request)
            with self._active_lock:
                self._active -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-reply, or a bug in rendering: the next scrape retries.
        self.device.log.metrics.error("Metrics request from %s failed",
                                      client_address[0] if client_address else "?")


def _shut(request: socket.socket) -> None:
    """The client's time is up: its reads and writes fail, its thread ends."""
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class MetricsServer:
    """Serves `/metrics` for `device` on a listening socket (from `bind`, or an address
    for it) until the device stops; `serve` is the body of the device thread `metrics`."""

    def __init__(self, device: Device, listener: socket.socket | str) -> None:
        sock = bind(listener) if isinstance(listener, str) else listener
        self.device = device
        try:
            self.httpd = _HTTPServer(sock.getsockname()[:2], _Handler,
                                     bind_and_activate=False)
        except BaseException:  # EMFILE for the server's own socket: ours is not kept
            if sock is not listener:
                sock.close()
            raise
        self.httpd.socket.close()  # the one it made for itself: ours replaces it
        self.httpd.socket = sock
        self.httpd.timeout = 0  # `serve` calls handle_request once a client waits
        self.httpd.device = device

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.socket.getsockname()[:2]
        return host, port

    def serve(self) -> None:
        log = self.device.log.metrics
        host, port = self.address
        log.verbose("Metrics at http://%s/metrics", format_endpoint(host, port))
        listener = self.httpd.socket.fileno()
        try:
            while not self.device.stopped.is_set():
                # Asleep until a client connects or the device stops.
                ready, _, _ = select.select([listener, self.device.stop_fd], [], [])
                if listener in ready:
                    self.httpd.handle_request()
        finally:
            self.httpd.server_close()

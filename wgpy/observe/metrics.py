"""Prometheus metrics: `GET /metrics` in the text exposition format (version 0.0.4).

Theory of operation: a scrape copies what it reports under the device lock (per peer: the
public key, byte counters, last handshake, endpoint, allowed-IPs prefixes and staged queue
length; a handful of ints, as a UAPI `get` copies them) and formats outside it; the drop
and handshake counters and the handshake queues' lengths are read without the lock (a
dict copy and `qsize` are atomic under the GIL). The copy takes the lock for a few peers
at a time, as a UAPI `get` does, so the data path never waits long on a scrape. The
HTTP server is wgpy.observe.metrics_http, imported only by a device that serves metrics
(the standard library's http.server costs a daemon 3 MiB and 25 ms of start-up).

Names: the per-peer series are named and labelled as the common WireGuard exporter
(mdlayher/wireguard_exporter) names them, so its dashboards and alerts work unchanged:

    wireguard_device_info{device,public_key}                                 gauge, 1
    wireguard_peer_info{device,public_key,allowed_ips,endpoint}              gauge, 1
    wireguard_peer_receive_bytes_total{device,public_key}                    counter
    wireguard_peer_transmit_bytes_total{device,public_key}                   counter
    wireguard_peer_last_handshake_seconds{device,public_key}                 gauge, 0: never

`public_key` is the peer's (the device's on `wireguard_device_info`), base64 as `wg`
shows it. wgpy's own series carry the `wgpy_` prefix:

    wgpy_dropped_packets_total{device,reason}       counter, every DropReason (lowercase)
    wgpy_handshakes_sent_total{device,type}         counter, type: initiation, response,
    wgpy_handshakes_received_total{device,type}     counter        cookie_reply
    wgpy_queue_length{device,queue}                 gauge, queue: handshake, proven_handshake
    wgpy_peer_staged_packets{device,public_key}     gauge, packets waiting for a session

Sent handshake messages are those handed to the UDP socket (a failed send is also a
drop); received ones are those that arrived with a handshake type and length, valid or
not (what the device then dropped is in the drop counter, by reason).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uapi.prefix import Prefix, format_prefix
from uapi.values import format_endpoint
from wgpy.constants import (
    MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION, MESSAGE_RESPONSE, METRICS_DEFAULT_PORT,
)
from wgpy.crypto import b64
from wgpy.device.config import copy_peers, endpoint_text
from wgpy.noise.actions import DropReason, Endpoint

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["MetricsError", "bind", "collect", "render", "parse_address"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MESSAGE_TYPES = {MESSAGE_INITIATION: "initiation", MESSAGE_RESPONSE: "response",
                 MESSAGE_COOKIE_REPLY: "cookie_reply"}


class MetricsError(Exception):
    """WGPY_METRICS_ADDRESS is not an address we can serve on; the message says why."""


# --- the address --------------------------------------------------------------------------------

def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPV6]:PORT` -> (host, port). HOST is an IP address or a name that
    resolves; PORT 0 lets the kernel pick one (for tests)."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise MetricsError(f"WGPY_METRICS_ADDRESS={text[:64]!r} is not HOST:PORT (e.g. "
                           f"127.0.0.1:{METRICS_DEFAULT_PORT} or [::1]:{METRICS_DEFAULT_PORT})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsError(f"WGPY_METRICS_ADDRESS={text[:64]!r}: an IPv6 address goes in "
                           f"brackets, as [::1]:{METRICS_DEFAULT_PORT}")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise MetricsError(f"WGPY_METRICS_ADDRESS={text[:64]!r}: the port is not a number "
                           "from 0 to 65535")
    return host, int(port_text)


def bind(text: str) -> socket.socket:
    """A listening TCP socket on the address in `text`; MetricsError, for a person, if the
    address is malformed, does not resolve, is not ours or is in use."""
    host, port = parse_address(text)
    try:
        v6 = ipaddress.ip_address(host).version == 6
        addresses: list[tuple[int, Any]] = [(socket.AF_INET6 if v6 else socket.AF_INET,
                                             (host, port))]
    except ValueError:  # a name: the first address it resolves to that we can bind
        try:
            addresses = [(info[0], info[4]) for info in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)]
        except (socket.gaierror, UnicodeError) as exc:
            raise MetricsError(f"WGPY_METRICS_ADDRESS={text[:64]!r}: cannot resolve "
                               f"{host[:64]!r}: {exc}") from None
    error: OSError | None = None
    for af, address in addresses:
        sock = socket.socket(af, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(16)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    reason = error.strerror if error is not None and error.strerror else error
    raise MetricsError(f"WGPY_METRICS_ADDRESS={text[:64]!r}: cannot listen: {reason}")


# --- what a scrape reports ----------------------------------------------------------------------

@dataclass(slots=True)
class PeerSample:
    public_key: bytes
    rx_bytes: int
    tx_bytes: int
    last_handshake: float  # epoch seconds, 0.0 for never
    endpoint: Endpoint | None
    prefixes: list[Prefix]
    staged: int


@dataclass(slots=True)
class Sample:
    device: str
    public_key: bytes | None
    peers: list[PeerSample]
    drops: dict[DropReason, int]
    sent: dict[int, int]
    received: dict[int, int]
    queues: dict[str, int]


def collect(device: Device) -> Sample:
    """Copy what the exposition reports; the device lock only for the peers."""
    with device.lock:
        identity = device.iface.identity
        public = identity.public if identity.private is not None else None
    table = device.iface.allowed_ips
    peers = copy_peers(device, lambda p: PeerSample(
        p.public_key, p.rx_bytes, p.tx_bytes, p.last_handshake_wall or 0.0, p.endpoint,
        table.prefixes_for_peer(p), len(p.staged)))
    return Sample(
        device=device.tun.name, public_key=public, peers=peers,
        drops=dict(device.drops),  # one C call: atomic against the threads that count
        sent=dict(device.handshakes_sent), received=dict(device.handshakes_received),
        queues=device.queue_lengths())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(s: Sample) -> str:
    """The text exposition of one sample: HELP and TYPE, then the series, per family."""
    lines: list[str] = []

    def family(name: str, kind: str, text: str, series: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in series)

    dev = s.device
    keys = [(p, b64(p.public_key)) for p in s.peers]
    family("wireguard_device_info", "gauge", "Metadata about a device.",
           [(_labels(device=dev, public_key=b64(s.public_key) if s.public_key else ""), 1)])
    family("wireguard_peer_info", "gauge",
           "Metadata about a peer. The public_key label on peer metrics refers to the "
           "peer's public key; not the device's public key.",
           [(_labels(device=dev, public_key=k,
                     allowed_ips=",".join(format_prefix(x) for x in p.prefixes),
                     endpoint=_endpoint(p.endpoint)), 1) for p, k in keys])
    family("wireguard_peer_receive_bytes_total", "counter",
           "Number of bytes received from a given peer.",
           [(_labels(device=dev, public_key=k), p.rx_bytes) for p, k in keys])
    family("wireguard_peer_transmit_bytes_total", "counter",
           "Number of bytes transmitted to a given peer.",
           [(_labels(device=dev, public_key=k), p.tx_bytes) for p, k in keys])
    family("wireguard_peer_last_handshake_seconds", "gauge",
           "UNIX timestamp for the last handshake with a given peer.",
           [(_labels(device=dev, public_key=k), int(p.last_handshake)) for p, k in keys])
    family("wgpy_peer_staged_packets", "gauge",
           "Packets staged for a peer, waiting for a session.",
           [(_labels(device=dev, public_key=k), p.staged) for p, k in keys])
    family("wgpy_dropped_packets_total", "counter",
           "Packets and messages the device dropped, by reason.",
           [(_labels(device=dev, reason=r.name.lower()), s.drops.get(r, 0))
            for r in DropReason])
    for way, counts in (("sent", s.sent), ("received", s.received)):
        family(f"wgpy_handshakes_{way}_total", "counter",
               f"Handshake messages {way}, by type.",
               [(_labels(device=dev, type=t), counts.get(n, 0))
                for n, t in MESSAGE_TYPES.items()])
    family("wgpy_queue_length", "gauge", "Handshake messages waiting for the handshake worker.",
           [(_labels(device=dev, queue=q), n) for q, n in s.queues.items()])
    return "\n".join(lines) + "\n"


def _endpoint(endpoint: Endpoint | None) -> str:
    if endpoint is None:
        return ""
    return format_endpoint(*endpoint_text(endpoint))  # as `wg show` prints it

"""A WireGuard device inside a Python program: `wgpy.Device`.

Theory of operation: the daemon (`wgpy.cli`) is this object plus daemonization. A `Device`
owns the same engine the daemon runs (`wgpy.device.device.Device`: the TUN reader, the UDP
reader, the handshake worker and the timers threads around the sans-IO core) on either

- a real TUN (`Device.create("wg0")`, root or CAP_NET_ADMIN), whose link state and MTU are
  followed through netlink as the daemon follows them; or
- an in-memory packet interface (`Device.in_memory()`, no privileges), whose IP packets
  the program writes and reads itself (`write_packet`, `read_packet`).

It is configured with what the UAPI takes, through the same path a `wg set` takes (the
UAPI line parser, then `SetTransaction` under the configuration lock), so every rule of
wireguard-go's `set` holds: `configure(private_key=..., peers=[PeerConfig(...)])` with
typed values, or `set("...")` with UAPI lines. `state()` is what `get` answers, typed
(`uapi.responses.DeviceInfo`, allowed IPs as `ipaddress` networks). With `uapi_dir`, the
device also serves a UAPI socket there, so `wg` and `uapi.Client` can drive it.
Its log lines are records of the `wgpy.device`, `wgpy.uapi` and `wgpy.netlink` loggers
(`logging`), with the interface name as their `interface` attribute; nothing is printed
unless the program configures logging. `serve_metrics` serves Prometheus text, as
WGPY_METRICS_ADDRESS does for the daemon. Errors in configuration raise
`uapi.errors.UapiError` with wireguard-go's errno; a failed `set` keeps what it applied
before the bad line, as wireguard-go does.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
from dataclasses import dataclass, field
from hmac import compare_digest
from types import TracebackType
from typing import Iterable, Sequence, Union

from uapi.errors import UapiError
from uapi.prefix import prefix_network
from uapi.protocol import SetRequestError, parse_set_line
from uapi.responses import DeviceInfo
from uapi.values import format_endpoint
from wgpy.constants import DEFAULT_MTU, KEY_SIZE
from wgpy.crypto import ZERO_KEY
from wgpy.device import clock
from wgpy.device.config import SetTransaction, snapshot
from wgpy.device.device import Device as Engine
from wgpy.device.log import Logger
from wgpy.device.memtun import MemoryTun
from wgpy.device.tun import Tun
from wgpy.ipc.listener import listen
from wgpy.ipc.server import UapiServer
from wgpy.noise.actions import SendDatagram
from wgpy.observe.keylog import KeyLog

__all__ = ["Device", "PeerConfig", "Key", "key_bytes"]

#: A key as raw 32 bytes, base64 (as `wg` prints it) or hex (as UAPI carries it).
Key = Union[bytes, str]
_HANDSHAKE_POLL = 0.005  # seconds between looks at a handshake being completed
_NAMES = itertools.count()  # in-memory devices without a name of their own: wgpy0, wgpy1...


def key_bytes(key: Key) -> bytes:
    """A key given as 32 raw bytes, base64 or hex, as 32 raw bytes (ValueError otherwise)."""
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
    else:
        text = key.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 2 * KEY_SIZE else \
                base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raw = b""
    if len(raw) != KEY_SIZE:
        raise ValueError("a key is 32 bytes: raw, base64 (44 characters) or hex (64)")
    return raw


@dataclass
class PeerConfig:
    """One peer's part of a `set`, in UAPI's terms (see `Device.configure`); what is None
    is left as it is, as `wg set` leaves what it is not given.

    `endpoint` is ``"host:port"`` (``"[v6]:port"``) or ``(host, port)``. `allowed_ips`, when
    given, are prefixes (``"10.0.0.2/32"`` or `ipaddress` networks) that replace the
    peer's (as `wg set ... allowed-ips` does), or are added to them when
    `replace_allowed_ips` is false."""

    public_key: Key
    preshared_key: Key | None = field(default=None, repr=False)
    endpoint: str | tuple[str, int] | None = None
    allowed_ips: Sequence[str | ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None
    replace_allowed_ips: bool = True
    persistent_keepalive: int | None = None
    remove: bool = False
    update_only: bool = False

    def lines(self) -> list[str]:
        out = [f"public_key={key_bytes(self.public_key).hex()}"]
        if self.remove:
            return out + ["remove=true"]
        if self.update_only:
            out.append("update_only=true")
        if self.preshared_key is not None:
            out.append(f"preshared_key={key_bytes(self.preshared_key).hex()}")
        endpoint = self.endpoint
        if isinstance(endpoint, tuple):
            endpoint = format_endpoint(*endpoint, keep_zone=True)
        if endpoint is not None:
            out.append(f"endpoint={endpoint}")
        if self.persistent_keepalive is not None:
            out.append(f"persistent_keepalive_interval={self.persistent_keepalive}")
        if self.allowed_ips is not None:
            if self.replace_allowed_ips:
                out.append("replace_allowed_ips=true")
            out += [f"allowed_ip={ip}" for ip in self.allowed_ips]
        return out


class Device:
    """A WireGuard interface run by this process. Use `create` or `in_memory`, then
    `configure`; `close` (or the ``with`` block's end) stops it and frees its port."""

    def __init__(self, tun: Tun, *, uapi_dir: str | None = None, netlink: bool = False,
                 keylog: str | None = None) -> None:
        log = Logger(tun.name)
        try:
            sink = None
            if keylog is not None:
                sink = KeyLog.open(keylog, log)
                sink.report_open(log)
            try:
                self._engine = Engine(tun, log, keylog=sink)
            except BaseException:
                if sink is not None:
                    sink.close()
                raise
        except BaseException:
            tun.close()
            raise
        self._server: UapiServer | None = None
        self._closed = False
        engine = self._engine
        try:
            engine.start()
            if netlink:  # the link's state known before a UAPI client may change it
                from wgpy.link.netlink import start_watching  # noqa: PLC0415
                start_watching(engine)
            else:
                engine.set_up(True)
            if uapi_dir is not None:
                listener = listen(tun.name, uapi_dir)
                try:
                    self._server = UapiServer(engine, listener)
                except BaseException:
                    listener.close()
                    raise
                engine.spawn("uapi_accept", self._server.serve)
        except BaseException:
            self.close()
            raise

    @classmethod
    def in_memory(cls, name: str | None = None, *, mtu: int = DEFAULT_MTU,
                  uapi_dir: str | None = None, keylog: str | None = None) -> Device:
        """A device on an in-memory packet interface: no TUN, no root. Its link is up.
        `name` (default wgpy0, wgpy1, ...) names its UAPI socket, log records and metrics;
        `keylog`: a file to append Wireshark's key log to (as WGPY_KEYLOG_FILE)."""
        name = name if name is not None else f"wgpy{next(_NAMES)}"
        return cls(MemoryTun(name, mtu), uapi_dir=uapi_dir, keylog=keylog)

    @classmethod
    def create(cls, name: str, *, mtu: int = DEFAULT_MTU,
               uapi_dir: str | None = "/var/run/wireguard", keylog: str | None = None
               ) -> Device:
        """A device on a new TUN named `name` (needs CAP_NET_ADMIN), serving the UAPI socket
        `wg` looks for (`uapi_dir=None`: none). Bring the link up with `ip link set up`."""
        return cls(Tun.create(name, mtu), uapi_dir=uapi_dir, netlink=True, keylog=keylog)

    # --- what the program sees -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._engine.tun.name

    @property
    def stopped(self) -> str | None:
        """None while the device runs; else why it stopped ("closed", "TUN device gone",
        "thread datapath failed", ...), after which it sends and receives nothing."""
        engine = self._engine
        return (engine.stop_reason or "stopped") if engine.stopped.is_set() else None

    @property
    def listen_port(self) -> int:
        """The UDP port bound now (a random one until `listen_port` is configured)."""
        return self._engine.bind.port

    @property
    def public_key(self) -> bytes | None:
        with self._engine.lock:
            key = self._engine.iface.identity.public
        return None if compare_digest(key, ZERO_KEY) else key

    def state(self) -> DeviceInfo:
        """What UAPI `get` reports: keys, port, fwmark, and each peer's endpoint, counters,
        last handshake and allowed IPs (as `ipaddress` networks)."""
        engine = self._engine
        with engine.config_lock:  # never half a set; the data path waits a few peers at most
            info = snapshot(engine)
        for peer in info.peers:
            peer.allowed_ips = [prefix_network(p) if isinstance(p, int) else p
                                for p in peer.allowed_ips]
            if peer.preshared_key is not None and compare_digest(peer.preshared_key, ZERO_KEY):
                # none, as uapi.Client reports it (a secret: compared in constant time)
                peer.preshared_key = None
        return info

    # --- configuration ---------------------------------------------------------------------

    def configure(self, *, private_key: Key | None = None, listen_port: int | None = None,
                  fwmark: int | None = None, replace_peers: bool = False,
                  peers: Iterable[PeerConfig] = ()) -> None:
        """One UAPI `set` from typed values: what is None is left as it is."""
        lines = []
        if private_key is not None:
            lines.append(f"private_key={key_bytes(private_key).hex()}")
        if listen_port is not None:
            lines.append(f"listen_port={listen_port}")
        if fwmark is not None:
            lines.append(f"fwmark={fwmark}")
        if replace_peers:
            lines.append("replace_peers=true")
        for peer in peers:
            lines += peer.lines()
        self.set(lines)

    def set(self, lines: str | Iterable[str]) -> None:
        """One UAPI `set` from its lines (without `set=1` and the blank line), applied as
        the UAPI server applies them; UapiError(errno) at the first bad line."""
        if isinstance(lines, str):
            lines = lines.splitlines()
        engine = self._engine
        txn = SetTransaction(engine)
        in_peer = False
        with engine.config_lock:
            self._check_open()
            try:
                for line in lines:
                    if not line.strip():
                        continue
                    op = parse_set_line(line.encode(), in_peer)
                    if isinstance(op, SetRequestError):
                        raise UapiError(op.errno, op.message)
                    in_peer = in_peer or line.startswith("public_key=")
                    with engine.lock:
                        txn.apply(op, engine.core_now())
                with engine.lock:
                    txn.finish(engine.core_now())
            finally:
                engine.execute(txn.actions)

    def handshake(self, public_key: Key, timeout: float = 5.0) -> bool:
        """Start a handshake with this peer now (at most one per REKEY_TIMEOUT, as timers
        allow) and wait up to `timeout` seconds for it to complete; True if it did."""
        key = key_bytes(public_key)
        self._check_open()
        engine = self._engine
        with engine.lock:
            peer = engine.iface.peers.get(key)
            if peer is None:
                raise KeyError("no such peer")
            before = peer.last_handshake_wall
            now = engine.core_now()
            actions = peer.initiate(now)
            current = peer.keypairs.current
            sent = any(type(action) is SendDatagram for action in actions)
            if not sent and current is not None and current.can_send(now):
                return True  # one completed less than REKEY_TIMEOUT ago: the session is up
        engine.execute(actions)
        deadline = clock.now() + timeout
        while True:
            done = peer.last_handshake_wall not in (None, before)  # one attribute: no lock
            if done or clock.now() >= deadline or engine.stopped.is_set():
                return done
            engine.stopped.wait(_HANDSHAKE_POLL)

    def serve_metrics(self, address: str = "127.0.0.1:0") -> tuple[str, int]:
        """Serve Prometheus metrics at http://HOST:PORT/metrics (a thread of the device,
        stopped with it); returns the address served (port 0: a free one)."""
        self._check_open()
        from wgpy.observe.metrics_http import serve_metrics  # noqa: PLC0415 - 3 MiB, if asked
        return serve_metrics(self._engine, address)

    def set_up(self, up: bool) -> None:
        """Link up or down, as `ip link set` would (in memory; a TUN follows its link)."""
        self._engine.set_up(up)

    # --- packets (in-memory interface only) ------------------------------------------------

    def _memory(self) -> MemoryTun:
        tun = self._engine.tun
        if not isinstance(tun, MemoryTun):
            raise TypeError("packets are read and written by the kernel on a TUN device")
        return tun

    def write_packet(self, packet: bytes) -> None:
        """Send one IP packet into the tunnel, to the peer whose allowed IPs hold its
        destination (dropped and counted if none does); EOFError once closed."""
        self._memory().write(packet)

    def read_packet(self, timeout: float | None = 5.0) -> bytes:
        """The next IP packet that came out of the tunnel: TimeoutError if none came within
        `timeout` seconds (None: no limit), EOFError once the device is closed (also for a
        reader waiting in another thread)."""
        return self._memory().read(timeout)

    @property
    def drops(self) -> dict[str, int]:
        """Packets dropped so far, by reason (`wgpy.noise.actions.DropReason` names)."""
        return {reason.name: count for reason, count in list(self._engine.drops.items())}

    # --- lifecycle -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"device {self.name} is closed")

    def close(self) -> None:
        """Stop the device's threads and free its port, TUN and UAPI socket. A `set` in
        progress ends first; later calls to configure it raise RuntimeError."""
        engine = self._engine
        with engine.config_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._server is not None:
                self._server.close()
        finally:
            engine.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

"""Applying a UAPI `set` to the device, with wireguard-go's semantics (device/uapi.go).

`SetTransaction` takes the typed operations of one `set` request in order. A `set` is not
atomic: what was applied before an error stays applied. Rules carried over:

- `private_key`: a peer whose public key equals the new public key is removed, every
  peer's static-static DH recomputed and its current keypairs expired; zeros remove the key;
- `listen_port` rebinds (EADDRINUSE on failure); `fwmark` unchanged is a no-op, otherwise
  SO_MARK on both sockets (EADDRINUSE on failure, as wireguard-go says);
- `public_key` creates or selects a peer; our own public key selects a dummy peer whose
  lines are checked but change nothing; `update_only` turns a creation into a dummy;
  `remove` removes the peer and makes the rest of its lines dummy;
- when a peer's lines end, a newly enabled persistent keepalive sends one at once and any
  staged packets are sent (`handlePostConfig`).

The caller holds the device lock around `apply` and `finish`. For `get`, `interface_info`
and `peer_info` copy what the reply needs under that lock; formatting happens after.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Callable, TypeVar, cast

from uapi import errors
from uapi.errors import UapiError
from uapi.operations import (
    PeerAllowedIP, PeerAllowedIPs, PeerEndpoint, PeerPersistentKeepalive, PeerPresharedKey,
    PeerProtocolVersion, PeerPublicKey, PeerRemove, PeerReplaceAllowedIPs, PeerUpdateOnly,
    ReplacePeers, SetFwmark, SetListenPort, SetOperation, SetPrivateKey,
)
from uapi.prefix import Prefix
from uapi.responses import DeviceInfo, PeerInfo
from uapi.values import IPNetwork, resolve_zone
from wgpy.constants import MAX_PEERS, PEERS_PER_HOLD
from wgpy.noise.actions import Action, Endpoint
from wgpy.noise.peer import Peer

if TYPE_CHECKING:
    from wgpy.device.device import Device

__all__ = ["SetTransaction", "copy_peers", "interface_info", "peer_info", "snapshot"]

T = TypeVar("T")


def _zone_index(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def endpoint_tuple(op: PeerEndpoint) -> Endpoint:
    """A socket address for the endpoint line: (host, port) or (host, port, 0, scope id).

    A ``%zone`` that names no interface and is no number is EINVAL, as the reference's
    Linux bind answers (``zoneToUint32`` fails, ``IpcErrorInvalid``); the connection goes on.
    """
    if ":" not in op.host:
        return (op.host, op.port)
    try:
        scope = resolve_zone(op.scope, _zone_index) if op.scope else 0
    except ValueError as exc:
        raise UapiError(errors.EINVAL, f"failed to set endpoint: {exc}") from None
    return (op.host, op.port, 0, scope)


def endpoint_text(endpoint: Endpoint) -> tuple[str, int]:
    """(host, port) as `get` reports it; an IPv6 host keeps its %zone."""
    host = str(endpoint[0])
    if len(endpoint) == 4 and endpoint[3] and "%" not in host:
        try:
            host = f"{host}%{socket.if_indextoname(endpoint[3])}"
        except OSError:
            host = f"{host}%{endpoint[3]}"
    return host, int(endpoint[1])


class SetTransaction:
    """One `set` request being applied."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.iface = device.iface
        self.peer: Peer | None = None
        self.dummy = False
        self.created = False
        self.pka_on = False
        self.in_peers = False  # device keys are accepted only before the first public_key
        self.actions: list[Action] = []
        self.deadline = 0.0  # clock.now() by which the set must end (it holds config_lock)

    def apply(self, op: SetOperation, now: float) -> None:
        """Apply one operation; raises UapiError with wireguard-go's errno."""
        if isinstance(op, PeerPublicKey):
            self.finish(now)
            self.in_peers = True
            self._select_peer(op.key)
        elif not self.in_peers:
            self._apply_device(op)
        else:
            self._apply_peer(op)

    def finish(self, now: float) -> None:
        """The current peer's lines are over (`handlePostConfig`)."""
        peer, self.peer = self.peer, None
        if peer is not None and not self.dummy and self.device.is_up:
            if self.pka_on:
                self.actions += peer.send_keepalive(now)
            self.actions += peer.send_batch([], now)
        self.dummy = self.created = self.pka_on = False

    def _apply_device(self, op: SetOperation) -> None:
        iface = self.iface
        if isinstance(op, SetPrivateKey):
            iface.set_private_key(op.key)
        elif isinstance(op, SetListenPort):
            try:
                self.device.bind_update(op.port)
            except OSError as exc:
                raise UapiError(errors.EADDRINUSE, f"failed to set listen_port: {exc}") from exc
        elif isinstance(op, SetFwmark):
            try:
                self.device.bind.set_fwmark(op.mark)
            except OSError as exc:
                raise UapiError(errors.EADDRINUSE, f"failed to update fwmark: {exc}") from exc
        elif isinstance(op, ReplacePeers):
            for key in list(iface.peers):
                iface.remove_peer(key)
        else:
            raise UapiError(errors.EINVAL, "invalid UAPI device key")

    def _select_peer(self, key: bytes) -> None:
        iface = self.iface
        self.dummy = key == iface.identity.public  # our own key (zeros when we have none)
        if self.dummy:
            return
        self.peer = iface.peers.get(key)
        self.created = self.peer is None
        if self.created:
            if len(iface.peers) >= MAX_PEERS:
                self.dummy = True
                raise UapiError(errors.EINVAL, "failed to create new peer: too many peers")
            self.peer = iface.add_peer(key)
            self.peer.timers.enabled = self.device.is_up
            self.device.log.uapi.verbose("%s - UAPI: Created", self.device.peer_name(self.peer))

    def _apply_peer(self, op: SetOperation) -> None:
        peer = self.peer
        if isinstance(op, (SetPrivateKey, SetListenPort, SetFwmark, ReplacePeers)):
            raise UapiError(errors.EINVAL, "invalid UAPI peer key")
        if isinstance(op, PeerProtocolVersion) or peer is None:
            return  # the parser checked the value; a dummy peer changes nothing
        if isinstance(op, PeerUpdateOnly):
            if self.created:
                self.iface.remove_peer(peer.public_key)
                self.peer, self.dummy = None, True
        elif isinstance(op, PeerRemove):
            self.device.log.uapi.verbose("%s - UAPI: Removing", self.device.peer_name(peer))
            self.iface.remove_peer(peer.public_key)
            self.peer, self.dummy = None, True
        elif isinstance(op, PeerPresharedKey):
            peer.preshared_key = op.key
        elif isinstance(op, PeerEndpoint):
            self.device.set_peer_endpoint(peer, endpoint_tuple(op))
        elif isinstance(op, PeerPersistentKeepalive):
            old = peer.timers.persistent_keepalive_interval
            peer.timers.persistent_keepalive_interval = op.seconds
            self.pka_on = old == 0 and op.seconds != 0
        elif isinstance(op, PeerReplaceAllowedIPs):
            self.iface.allowed_ips.remove_by_peer(peer)
        elif isinstance(op, PeerAllowedIPs):
            self.iface.allowed_ips.insert_many(op.prefixes, peer)
        elif isinstance(op, PeerAllowedIP):
            if op.remove:
                self.iface.allowed_ips.remove(op.network, peer)
            else:
                self.iface.allowed_ips.insert(op.network, peer)
        else:
            raise UapiError(errors.EINVAL, "invalid UAPI peer key")


def interface_info(device: Device) -> DeviceInfo:
    """The interface part of `get`, without peers (the caller holds the device lock)."""
    return DeviceInfo(private_key=device.iface.identity.private, listen_port=device.bind.port,
                      fwmark=device.bind.fwmark)


def peer_info(device: Device, peer: Peer) -> PeerInfo:
    """One peer as `get` reports it: a copy, formatted later without the lock (the caller
    holds the device lock)."""
    wall = peer.last_handshake_wall
    ns = int(round(wall * 1e9)) if wall is not None else 0
    return PeerInfo(
        public_key=peer.public_key,
        preshared_key=peer.preshared_key,
        endpoint=endpoint_text(peer.endpoint) if peer.endpoint is not None else None,
        last_handshake_time_sec=ns // 10**9,
        last_handshake_time_nsec=ns % 10**9,
        tx_bytes=peer.tx_bytes,
        rx_bytes=peer.rx_bytes,
        persistent_keepalive_interval=peer.timers.persistent_keepalive_interval,
        allowed_ips=cast("list[IPNetwork | Prefix]",
                         device.iface.allowed_ips.prefixes_for_peer(peer)),
    )


def copy_peers(device: Device, make: Callable[[Peer], T]) -> list[T]:
    """`make(peer)` for every peer, taking the device lock for PEERS_PER_HOLD peers at a
    time, so that a copy of many peers (a `get`, a scrape) never holds the data path up for
    long. The caller holds `config_lock` when the copy must not see half a set."""
    with device.lock:
        peers = list(device.iface.peers.values())
    copied: list[T] = []
    for i in range(0, len(peers), PEERS_PER_HOLD):
        with device.lock:
            copied += [make(peer) for peer in peers[i:i + PEERS_PER_HOLD]]
    return copied


def snapshot(device: Device) -> DeviceInfo:
    """What `get` reports, copied: the interface under the device lock, then the peers a
    few at a time (`copy_peers`). The caller holds `config_lock`, so no half set is seen."""
    with device.lock:
        info = interface_info(device)
    info.peers = copy_peers(device, lambda peer: peer_info(device, peer))
    return info

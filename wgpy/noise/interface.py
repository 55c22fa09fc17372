"""The interface: our static identity, the peers, and the demultiplexing of datagrams.

`receive(datagram, src, now, under_load)` is the whole inbound front door, in the order the
paper prescribes as a DoS defence:

1. classify by (type, exact length) - anything else is dropped before parsing;
2. transport data and cookie replies go to the peer that owns the receiver index;
3. handshake messages must carry a valid mac1. Under load they must also carry a valid
   mac2 (else we answer with a cookie reply and stop) and pass the per-source rate limiter;
4. an initiation is decrypted far enough (e, es, s) to learn the sender's static key, which
   selects the peer; a response is found by its receiver index.

`send(packet, now)` routes an IP packet from the TUN to a peer by the allowed-IPs table.
"""

from __future__ import annotations

import ipaddress
from hmac import compare_digest
from typing import Callable

from wgpy import crypto
from wgpy.allowedips import AllowedIPs
from wgpy.constants import (
    DEFAULT_MTU, IDENTIFIER, MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION, MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT, UNDER_LOAD_AFTER, UNDER_LOAD_THRESHOLD,
)
from wgpy.index import IndexTable
from wgpy.messages import TRANSPORT_HEADER, classify, parse
from wgpy.noise.actions import Action, Drop, DropReason, Endpoint, SendDatagram
from wgpy.noise.cookie import CookieChecker, MacState
from wgpy.noise.handshake import HandshakeError, StaticIdentity, initialize
from wgpy.noise.handshake import read_initiation_static
from wgpy.noise.keypair import Keypair
from wgpy.noise.keylog import HandshakeSecrets
from wgpy.noise.peer import Peer
from wgpy.ratelimiter import RateLimiter
from wgpy.routemtu import RouteMTUs

__all__ = ["Interface", "endpoint_address"]


_PACKED: dict[str, bytes] = {}  # host text -> raw address: a flood repeats its sources
_PACKED_MAX = 4096


def endpoint_address(endpoint: Endpoint) -> tuple[bytes, int]:
    """The raw IP bytes and port of a socket address (scope ids ignored)."""
    host = str(endpoint[0])
    packed = _PACKED.get(host)
    if packed is None:
        packed = ipaddress.ip_address(host.split("%", 1)[0]).packed
        if len(_PACKED) >= _PACKED_MAX:
            _PACKED.clear()
        _PACKED[host] = packed
    return packed, int(endpoint[1])


def _source(src: Endpoint) -> tuple[bytes, bytes] | None:
    """The raw IP of `src` and the bytes the cookie MACs bind (IP, then the port big-endian:
    kernel `make_cookie`: saddr, then the UDP source port); None for an unparsable address."""
    try:
        ip, port = endpoint_address(src)
    except ValueError:
        return None
    return ip, ip + port.to_bytes(2, "big")


class Interface:
    """Everything the sans-IO core knows about one WireGuard interface."""

    def __init__(self, private_key: bytes | None = None,
                 jitter: Callable[[], float] | None = None, *, wall_offset: float = 0.0) -> None:
        """`wall_offset` is Unix time minus `now` (``time.time() - time.monotonic()`` when
        `now` is `time.monotonic()`): initiations carry a TAI64N timestamp of the wall clock,
        and a peer drops any initiation not newer than the last it accepted from us, so a
        timestamp near 1970 works only once. The core never reads a clock itself."""
        self.identity = StaticIdentity.from_private(private_key)
        self.peers: dict[bytes, Peer] = {}
        self.index: IndexTable[tuple[Peer, Keypair | None]] = IndexTable()
        self.allowed_ips: AllowedIPs[Peer] = AllowedIPs()
        self.cookie_checker = CookieChecker(self.identity.public)
        self.rate_limiter = RateLimiter()
        self.mtu = DEFAULT_MTU
        self.route_mtus: RouteMTUs | None = None  # routes into us with an MTU (the device's)
        self.wall_offset = wall_offset  # epoch seconds minus `now`; the device keeps it current
        self.jitter = jitter
        # Given the secrets of every handshake message we create (the device's key log,
        # WGPY_KEYLOG_FILE); must not raise. None: nobody asked for them.
        self.keylog: Callable[[HandshakeSecrets], None] | None = None
        self._last_under_load: float | None = None

    # --- configuration -------------------------------------------------------------------------

    def set_private_key(self, private_key: bytes | None) -> None:
        """wireguard-go semantics: a peer with our new public key is removed, the static-static
        DH of every peer recomputed and current keypairs expired."""
        identity = StaticIdentity.from_private(private_key)
        new, old = identity.private, self.identity.private
        if new is None and old is None:
            return
        if new is not None and old is not None and compare_digest(new, old):
            return
        if identity.private is None:
            # As wireguard-go: removing the key makes "our" public key that of the zero
            # private key (X25519 clamps it), which then counts as our own.
            identity.public = crypto.public_key(crypto.ZERO_KEY)
        if identity.public in self.peers:
            self.remove_peer(identity.public)
        self.identity.private, self.identity.public = identity.private, identity.public
        self.cookie_checker.set_public(identity.public)
        for peer in self.peers.values():
            peer.handshake.precompute_static_static()
            peer.expire_current_keypairs()

    def add_peer(self, public_key: bytes) -> Peer:
        peer = self.peers.get(public_key)
        if peer is None:
            peer = self.peers[public_key] = Peer(self, public_key, self.jitter)
        return peer

    def remove_peer(self, public_key: bytes) -> None:
        peer = self.peers.pop(public_key, None)
        if peer is not None:
            peer.stop()
            self.allowed_ips.remove_by_peer(peer)

    def under_load(self, queued_handshakes: int, now: float) -> bool:
        """Under load from 1/8 of the handshake queue, and for a second after."""
        if queued_handshakes >= UNDER_LOAD_THRESHOLD:
            self._last_under_load = now
            return True
        return self._last_under_load is not None and now < self._last_under_load + UNDER_LOAD_AFTER

    # --- traffic -------------------------------------------------------------------------------

    def route(self, packet: bytes) -> Peer | None:
        """The peer whose allowed IPs hold the packet's destination (cryptokey routing)."""
        if len(packet) < 20:
            return None
        version = packet[0] >> 4
        dst = packet[16:20] if version == 4 else packet[24:40] if version == 6 else b""
        return self.allowed_ips.lookup(dst)

    def route_batch(self, reads: list[list[bytes]]) -> tuple[dict[Peer, list[bytes]], int]:
        """`route` for what the TUN reader read: the packets of each peer, in order, and how
        many have no peer. `reads` holds the packets of each read: one, or the segments of
        a TSO super-packet, which share their headers and are routed once. Consecutive
        reads to one destination (a stream's packets) are looked up once too."""
        by_peer: dict[Peer, list[bytes]] = {}
        lookup = self.allowed_ips.lookup
        last_dst: bytes | None = None
        peer: Peer | None = None
        no_route = 0
        for packets in reads:
            packet = packets[0]
            if len(packet) < 20:
                no_route += len(packets)
                continue
            version = packet[0] >> 4
            dst = packet[16:20] if version == 4 else packet[24:40] if version == 6 else b""
            if dst != last_dst:
                peer, last_dst = lookup(dst), dst
            if peer is None:
                no_route += len(packets)
                continue
            group = by_peer.get(peer)
            if group is None:
                by_peer[peer] = packets  # the reads' lists are the caller's to give
            else:
                group += packets
        return by_peer, no_route

    def send(self, packet: bytes, now: float) -> list[Action]:
        """Route an IP packet read from the TUN to its peer."""
        if len(packet) < 20:
            return [Drop(DropReason.INVALID_INNER_PACKET)]
        peer = self.route(packet)
        if peer is None:
            return [Drop(DropReason.NO_ROUTE)]
        return peer.send(packet, now)

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for peer in list(self.peers.values()):
            deadline = peer.timers.next_deadline()
            if deadline is not None and deadline <= now:
                out += peer.tick(now)
        return out

    def next_deadline(self) -> float | None:
        return min((d for p in self.peers.values()
                    if (d := p.timers.next_deadline()) is not None), default=None)

    def receive(self, data: bytes, src: Endpoint, now: float,
                under_load: bool = False) -> list[Action]:
        """Everything that arrives on the UDP socket comes through here."""
        kind = classify(data)
        if kind is None:
            return [Drop(DropReason.INVALID_MESSAGE)]
        if kind == MESSAGE_TRANSPORT:
            _, receiver, _ = TRANSPORT_HEADER.unpack_from(data)
            entry = self.index.get(receiver)
            if entry is None or entry[1] is None:
                return [Drop(DropReason.UNKNOWN_INDEX)]
            return entry[0].consume_data(entry[1], data, src, now)
        if kind == MESSAGE_COOKIE_REPLY:
            entry = self.index.get(parse(data).receiver)
            if entry is None:
                return [Drop(DropReason.UNKNOWN_INDEX)]
            return entry[0].consume_cookie_reply(data, now)
        return self._receive_handshake(kind, data, src, now, under_load)

    def screen_under_load(self, data: bytes, src: Endpoint, now: float
                          ) -> tuple[MacState, SendDatagram | None]:
        """What a classified handshake message from `src` gets under load, decided from
        its MACs alone (no DH): INVALID_MAC is dropped; VALID_MAC_BUT_NO_COOKIE gets the
        cookie reply returned here; VALID_MAC_WITH_COOKIE proved its address and goes on
        to `receive`. Lets the device answer a flood before it takes a queue slot."""
        found = _source(src)
        if found is None:
            return MacState.INVALID_MAC, None
        ip, source = found
        kind = data[0]
        state = self.cookie_checker.validate(data, kind, source, now, True)
        if state is not MacState.VALID_MAC_BUT_NO_COOKIE:
            return state, None
        sender = int.from_bytes(data[4:8], "little")  # both handshake messages: type, sender
        reply = self.cookie_checker.create_reply(data, kind, sender, source, now)
        return state, SendDatagram(reply, src)

    def _receive_handshake(self, kind: int, data: bytes, src: Endpoint, now: float,
                           under_load: bool) -> list[Action]:
        found = _source(src)
        if found is None:
            return [Drop(DropReason.INVALID_MESSAGE)]
        ip, source = found
        state = self.cookie_checker.validate(data, kind, source, now, under_load)
        if state is MacState.INVALID_MAC:
            return [Drop(DropReason.INVALID_MAC)]
        msg = parse(data)
        if under_load:
            if state is MacState.VALID_MAC_BUT_NO_COOKIE:
                reply = self.cookie_checker.create_reply(data, kind, msg.sender, source, now)
                return [SendDatagram(reply, src)]
            if not self.rate_limiter.allow(ip, now):
                return [Drop(DropReason.RATE_LIMITED)]
        if kind == MESSAGE_INITIATION:
            return self._receive_initiation(msg, data, src, now)
        assert kind == MESSAGE_RESPONSE
        entry = self.index.get(msg.receiver)
        if entry is None or entry[1] is not None:
            return [Drop(DropReason.UNKNOWN_INDEX)]
        return entry[0].consume_response(msg, data, src, now)

    def _receive_initiation(self, msg: object, data: bytes, src: Endpoint,
                            now: float) -> list[Action]:
        if self.identity.private is None:
            return [Drop(DropReason.NO_PRIVATE_KEY)]
        ck, h = initialize(IDENTIFIER, self.identity.public)
        try:
            ck, h, remote_static = read_initiation_static(
                ck, h, self.identity.private,
                msg.ephemeral, msg.static)  # type: ignore[attr-defined]
        except HandshakeError:
            return [Drop(DropReason.INVALID_HANDSHAKE)]
        peer = self.peers.get(remote_static)
        if peer is None:
            return [Drop(DropReason.UNKNOWN_PEER)]
        return peer.consume_initiation(ck, h, msg, data, src, now)



"""One peer: (bytes, now) in, actions out (kernel peer.c, send.c, receive.c; boringtun Tunn).

Outbound, `send` stages an IP packet and `_send_staged` encrypts everything staged with the
current keypair; without a usable keypair the packets stay staged (the oldest dropped when
the queue is full) and a handshake starts. Inbound, the interface hands the peer the
handshake messages and transport data addressed to it. `tick` runs the timers that are due.

Every method appends to a list of actions and returns it; nothing raises on bad input.
All timer hooks are called where the kernel calls them, in the same order.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from wgpy import crypto, fastpath
from wgpy.constants import (
    KEEPALIVE_TIMEOUT, MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES, MESSAGE_INITIATION, MESSAGE_PADDING_MULTIPLE, MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_ON_RECEIVE_AGE,
    REKEY_TIMEOUT, ZERO_KEY_MATERIAL_TIMEOUT,
)
from wgpy.messages import TRANSPORT_HEADER, build_initiation, build_response
from wgpy.noise import timers as T
from wgpy.noise.actions import Action, ClearEndpointSource, Drop, DropReason, Endpoint
from wgpy.noise.actions import Schedule, SendBatch, SendDatagram, WriteToTun
from wgpy.noise.cookie import CookieGenerator
from wgpy.noise.handshake import Handshake, HandshakeError, HandshakeState
from wgpy.noise.keylog import HandshakeSecrets
from wgpy.noise.keypair import Keypair, Keypairs
from wgpy.noise.timers import Timers
from wgpy.tai64n import timestamp as tai64n_timestamp

if TYPE_CHECKING:
    from wgpy.noise.interface import Interface

__all__ = ["Peer"]

_PAD = bytes(MESSAGE_PADDING_MULTIPLE)
_NONCE = crypto.NONCE


# The order of fastpath.receive's drop counts.
_RECEIVE_DROPS = (DropReason.DECRYPTION_FAILED, DropReason.REPLAYED_COUNTER,
                  DropReason.INVALID_INNER_PACKET, DropReason.DISALLOWED_SOURCE)


def padding_for(length: int, mtu: int) -> int:
    """Zero bytes to append so the plaintext is a multiple of 16, never beyond the MTU
    (kernel send.c `calculate_skb_padding`). A packet longer than the MTU is padded as its
    last MTU-sized unit would be, whatever its own length."""
    last_unit = length % mtu if mtu and length > mtu else length
    padded = -(-last_unit // MESSAGE_PADDING_MULTIPLE) * MESSAGE_PADDING_MULTIPLE
    if mtu:
        padded = min(padded, mtu)
    return max(padded - last_unit, 0)


class Peer:
    """A remote static key with its handshake, keypairs, timers, endpoint and counters."""

    def __init__(self, interface: Interface, public_key: bytes,
                 jitter: Callable[[], float] | None = None) -> None:
        self.interface = interface
        self.public_key = public_key
        self.handshake = Handshake(interface.identity, public_key)
        self.keypairs = Keypairs()
        self.timers = Timers(jitter) if jitter else Timers()
        self.cookie = CookieGenerator(public_key)
        self.endpoint: Endpoint | None = None
        self.staged: deque[bytes] = deque()
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_handshake_wall: float | None = None  # epoch seconds
        self.last_sent_handshake: float | None = None
        self._handshake_index: int | None = None

    # --- configuration -------------------------------------------------------------------------

    @property
    def preshared_key(self) -> bytes:
        return self.handshake.preshared_key

    @preshared_key.setter
    def preshared_key(self, key: bytes | None) -> None:
        self.handshake.preshared_key = key or crypto.ZERO_KEY

    @property
    def persistent_keepalive_interval(self) -> int:
        return self.timers.persistent_keepalive_interval

    def set_persistent_keepalive(self, interval: int, now: float) -> list[Action]:
        """Set the interval; turning it on from off sends a keepalive at once (wireguard-go)."""
        was = self.timers.persistent_keepalive_interval
        self.timers.persistent_keepalive_interval = interval
        out: list[Action] = []
        if interval and not was:
            self._send_keepalive(now, out)
        return self._done(out, None)

    # --- entry points --------------------------------------------------------------------------

    def send(self, packet: bytes, now: float) -> list[Action]:
        """Stage an IP packet read from the TUN and send whatever can be sent."""
        before = self.timers.next_deadline()
        out: list[Action] = []
        self._stage(packet, out)
        self._send_staged(now, out)
        return self._done(out, before)

    def send_batch(self, packets: list[bytes], now: float) -> list[Action]:
        """Stage many IP packets at once and send them in one pass (one set of timer hooks).
        A batch longer than the staged queue (a TSO read's segments) goes in passes of a
        queue's worth, so that a batch we can send is not cut by the queue's limit."""
        before = self.timers.next_deadline()
        out: list[Action] = []
        size = MAX_STAGED_PACKETS
        for start in range(0, len(packets), size):
            chunk = packets[start:start + size] if len(packets) > size else packets
            if self.staged:
                for packet in chunk:
                    self._stage(packet, out)  # the oldest go first when it is full
            else:
                self.staged.extend(chunk)  # fits: a chunk is at most the queue's size
            self._send_staged(now, out)
        return self._done(out, before)

    def send_keepalive(self, now: float) -> list[Action]:
        before = self.timers.next_deadline()
        out: list[Action] = []
        self._send_keepalive(now, out)
        return self._done(out, before)

    def initiate(self, now: float) -> list[Action]:
        """Start a handshake now (rate-limited to one per REKEY_TIMEOUT)."""
        before = self.timers.next_deadline()
        out: list[Action] = []
        self._send_handshake_initiation(now, False, out)
        return self._done(out, before)

    def tick(self, now: float) -> list[Action]:
        """Run every timer due at `now`."""
        before = self.timers.next_deadline()
        out: list[Action] = []
        timers = self.timers
        for name in timers.expired(now):
            if name == T.RETRANSMIT_HANDSHAKE:
                if timers.handshake_attempts > MAX_TIMER_HANDSHAKES:
                    timers.delete(T.SEND_KEEPALIVE)
                    if self.staged:
                        out.append(Drop(DropReason.HANDSHAKE_GAVE_UP, len(self.staged)))
                        self.staged.clear()
                    if not timers.pending(T.ZERO_KEY_MATERIAL):
                        timers.mod(T.ZERO_KEY_MATERIAL, now + ZERO_KEY_MATERIAL_TIMEOUT)
                else:
                    timers.handshake_attempts += 1
                    # kernel wg_expired_retransmit_handshake: the sticky source address may
                    # be the cause of the silence, so forget it before retrying.
                    self._clear_endpoint_source(out)
                    self._send_handshake_initiation(now, True, out)
            elif name == T.SEND_KEEPALIVE:
                # kernel wg_expired_send_keepalive sends the keepalive, then re-arms the timer
                # if data arrived while it was pending. But the kernel (and wireguard-go) only
                # queue the keepalive there: its any_authenticated_packet_sent hook runs later,
                # on the tx path, and deletes the timer just re-armed. So on the wire a second
                # keepalive follows only when the first never went out (no usable keypair and
                # the initiation rate-limited). We send synchronously, so we re-arm *before*
                # sending to get that same outcome, deterministically. Nothing is lost: the
                # keepalive we send follows every data packet received so far, which is all a
                # second one would have acknowledged.
                if timers.need_another_keepalive:
                    timers.need_another_keepalive = False
                    timers.mod(T.SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)
                self._send_keepalive(now, out)
            elif name == T.NEW_HANDSHAKE:
                # kernel wg_expired_new_handshake: forget the sticky source too.
                self._clear_endpoint_source(out)
                self._send_handshake_initiation(now, False, out)
            elif name == T.ZERO_KEY_MATERIAL:
                self.zero_key_material()
            elif name == T.PERSISTENT_KEEPALIVE:
                if timers.persistent_keepalive_interval:
                    self._send_keepalive(now, out)
        return self._done(out, before)

    def zero_key_material(self) -> None:
        """Forget the handshake and every keypair (and their receiver indices)."""
        self._forget_handshake_index()
        self.handshake.clear()
        self._forget(self.keypairs.clear())

    def expire_current_keypairs(self) -> None:
        """Our private key changed: drop the half-done handshake, stop sending with the
        current keys, and allow a new initiation at once (wireguard-go)."""
        self._forget_handshake_index()
        self.handshake.clear()
        self.last_sent_handshake = None
        self.keypairs.expire_current()

    def stop(self) -> None:
        """The peer is removed or the interface goes down: timers off, keys and queue gone."""
        self.timers.stop()
        self.zero_key_material()
        self.staged.clear()

    def link_down(self) -> list[Action]:
        """The interface went down (kernel `wg_stop`): staged packets purged, timers stopped
        and off until `link_up`, handshake and keypairs cleared, the initiation rate limit
        reset."""
        out: list[Action] = []
        if self.staged:
            out.append(Drop(DropReason.INTERFACE_DOWN, len(self.staged)))
        self.timers.enabled = False
        self.stop()
        self.last_sent_handshake = None
        return out

    def link_up(self, now: float) -> list[Action]:
        """The interface came up (kernel `wg_open`): timers on, the staged packets sent, and
        a keepalive if persistent keepalive is on.

        An initiation created while the timers were off has no retransmit timer, and the
        device did not send it (nothing leaves while down): send a fresh one now, so its
        retries run. Packets staged while down start a handshake the same way."""
        before = self.timers.next_deadline()
        out: list[Action] = []
        self.timers.enabled = True
        if self.handshake_in_progress and not self.timers.pending(T.RETRANSMIT_HANDSHAKE):
            self.last_sent_handshake = None
            self._send_handshake_initiation(now, False, out)
        self._send_staged(now, out)
        if self.timers.persistent_keepalive_interval:
            self._send_keepalive(now, out)
        return self._done(out, before)

    def stage_batch(self, packets: list[bytes]) -> list[Action]:
        """Stage packets without sending anything (the link is down as far as we know; they
        go out at `link_up`, or are purged by `link_down`)."""
        out: list[Action] = []
        for packet in packets:
            self._stage(packet, out)
        return out

    def send_failed(self, nbytes: int) -> None:
        """The device could not send `nbytes` of what the core counted: the kernel counts
        tx_bytes only for what it sent (`wg_socket_send_skb_to_peer`)."""
        self.tx_bytes -= nbytes

    # --- handshake messages from the interface -------------------------------------------------

    def consume_initiation(self, ck: bytes, h: bytes, msg: Any, raw: bytes, src: Endpoint,
                           now: float) -> list[Action]:
        """An initiation whose static key is ours to answer: finish it and respond."""
        before = self.timers.next_deadline()
        out: list[Action] = []
        try:
            self.handshake.consume_initiation(ck, h, msg.ephemeral, msg.timestamp, msg.sender,
                                              now)
        except HandshakeError:
            out.append(Drop(DropReason.INVALID_HANDSHAKE))
            return out
        self.endpoint = src
        self._send_handshake_response(now, out)
        self._authenticated_received(len(raw), now)
        return self._done(out, before)

    def consume_response(self, msg: Any, raw: bytes, src: Endpoint,
                         now: float) -> list[Action]:
        before = self.timers.next_deadline()
        out: list[Action] = []
        try:
            self.handshake.consume_response(msg.ephemeral, msg.empty, msg.sender)
        except HandshakeError:
            out.append(Drop(DropReason.INVALID_HANDSHAKE))
            return out
        self.endpoint = src
        if self._begin_session(now):
            self.timers.session_derived(now)
            self._handshake_complete(now)
            self._send_keepalive(now, out)
        self._authenticated_received(len(raw), now)
        return self._done(out, before)

    def consume_cookie_reply(self, raw: bytes, now: float) -> list[Action]:
        """Store the cookie for the next retry; a cookie reply never moves the endpoint."""
        if not self.cookie.consume_reply(raw, now):
            return [Drop(DropReason.INVALID_COOKIE)]
        return []

    # --- transport data ------------------------------------------------------------------------

    def consume_data(self, keypair: Keypair, data: bytes, src: Endpoint,
                     now: float) -> list[Action]:
        """Decrypt, check the counter, confirm keys, filter by allowed IPs, deliver."""
        packets, out, _ = self.consume_data_batch(keypair, [data], src, now)
        return [WriteToTun(packet) for packet in packets] + out

    def consume_data_batch(self, keypair: Keypair, datagrams: list[bytes], src: Endpoint,
                           now: float, plains: list[bytes | None] | None = None
                           ) -> tuple[list[bytes], list[Action], int]:
        """`consume_data` for many datagrams under one keypair from one source: the same
        checks per packet, the bookkeeping (roaming, key confirmation, timers) once.

        Returns (IP packets for the TUN, in order; other actions; how many datagrams
        authenticated and passed the replay check). Only a run with at least one such
        datagram may move the endpoint or its sticky source address: a forged or replayed
        datagram spoofed from the peer's address must move nothing. `plains`: the
        datagrams already decrypted (None where the tag failed), by a crypto worker.
        """
        if not keypair.can_receive(now):
            keypair.receiving_valid = False
            return [], [Drop(DropReason.EXPIRED_KEYPAIR, len(datagrams))], 0
        lookup = self.interface.allowed_ips.lookup
        # Decryption, the replay check and the inner packet's checks, per packet in the
        # kernel's order: one compiled call per run (GIL released while it decrypts), or
        # its pure-Python twin.
        if plains is not None:
            packets, authenticated, received, data_received, counts = fastpath.accept(
                plains, datagrams, keypair.replay, REJECT_AFTER_MESSAGES,
                lambda source: lookup(source) is self)
        elif fastpath.NATIVE:
            packets, authenticated, received, data_received, counts = fastpath.receive(
                keypair.recv_key, datagrams, keypair.replay, REJECT_AFTER_MESSAGES,
                lambda source: lookup(source) is self)
        else:
            packets, authenticated, received, data_received, counts = fastpath.py_receive(
                keypair.recv_key, datagrams, keypair.replay, REJECT_AFTER_MESSAGES,
                lambda source: lookup(source) is self, keypair.recv)
        out: list[Action] = ([Drop(reason, n) for reason, n in zip(_RECEIVE_DROPS, counts) if n]
                             if any(counts) else [])
        if not authenticated:
            return packets, out, 0
        before = self.timers.next_deadline()
        self.endpoint = src
        rotated, dropped = self.keypairs.received_with(keypair)
        if rotated:
            self._forget(dropped)
            self._handshake_complete(now)
            self._send_staged(now, out)
        self._keep_key_fresh_on_receive(now, out)
        self.rx_bytes += received
        self.timers.any_authenticated_packet_received(now)
        self.timers.any_authenticated_packet_traversal(now)
        if data_received:
            self.timers.data_received(now)
        return packets, self._done(out, before), authenticated

    # --- internals -----------------------------------------------------------------------------

    def _done(self, out: list[Action], before: float | None) -> list[Action]:
        after = self.timers.next_deadline()
        if after != before:
            out.append(Schedule(after))
        return out

    def _forget(self, keypairs: list[Keypair]) -> None:
        for kp in keypairs:
            self.interface.index.remove(kp.local_index)

    def _forget_handshake_index(self) -> None:
        if self._handshake_index is not None:
            self.interface.index.remove(self._handshake_index)
            self._handshake_index = None

    def _new_handshake_index(self) -> int:
        self._forget_handshake_index()
        self._handshake_index = self.interface.index.new((self, None))
        self.handshake.local_index = self._handshake_index
        return self._handshake_index

    def _transmit(self, data: bytes, out: list[Action]) -> None:
        if self.endpoint is None:
            out.append(Drop(DropReason.NO_ENDPOINT))
            return
        self.tx_bytes += len(data)
        out.append(SendDatagram(data, self.endpoint, self))

    def _clear_endpoint_source(self, out: list[Action]) -> None:
        if self.endpoint is not None:
            out.append(ClearEndpointSource(self.endpoint))

    def _authenticated_received(self, length: int, now: float) -> None:
        self.rx_bytes += length
        self.timers.any_authenticated_packet_received(now)
        self.timers.any_authenticated_packet_traversal(now)

    def _handshake_complete(self, now: float) -> None:
        self.timers.handshake_complete(now)
        self.last_handshake_wall = now + self.interface.wall_offset

    def _begin_session(self, now: float) -> bool:
        """Turn the finished handshake into a keypair that takes over its receiver index."""
        try:
            send_key, recv_key, initiator, remote_index = self.handshake.begin_session()
        except HandshakeError:
            return False
        assert self._handshake_index is not None
        keypair = Keypair(send_key, recv_key, initiator, self._handshake_index, remote_index,
                          now)
        self.interface.index.replace(self._handshake_index, (self, keypair))
        self._handshake_index = None
        self._forget(self.keypairs.add(keypair))
        return True

    def _send_handshake_initiation(self, now: float, is_retry: bool,
                                   out: list[Action]) -> None:
        if not is_retry:
            self.timers.handshake_attempts = 0
        if self.last_sent_handshake is not None and now < self.last_sent_handshake + REKEY_TIMEOUT:
            return
        wall_ns = int((now + self.interface.wall_offset) * 1e9)
        try:
            e_pub, static_ct, ts_ct = self.handshake.create_initiation(
                tai64n_timestamp(wall_ns))
        except HandshakeError:
            return  # no private key, or the peer's key is a low-order point: send nothing
        self._hand_over_secrets(initiator=True)
        msg = build_initiation(self._new_handshake_index(), e_pub, static_ct, ts_ct)
        self.cookie.add_macs(msg, MESSAGE_INITIATION, now)
        self.timers.any_authenticated_packet_traversal(now)
        self.timers.any_authenticated_packet_sent(now)
        self.last_sent_handshake = now
        self._transmit(bytes(msg), out)
        self.timers.handshake_initiated(now)

    def _send_handshake_response(self, now: float, out: list[Action]) -> None:
        try:
            e_pub, empty_ct = self.handshake.create_response()
        except HandshakeError:
            return
        self._hand_over_secrets(initiator=False)  # before _begin_session clears them
        msg = build_response(self._new_handshake_index(), self.handshake.remote_index, e_pub,
                             empty_ct)
        self.cookie.add_macs(msg, MESSAGE_RESPONSE, now)
        if self._begin_session(now):
            self.timers.session_derived(now)
            self.timers.any_authenticated_packet_traversal(now)
            self.timers.any_authenticated_packet_sent(now)
            self.last_sent_handshake = now
            self._transmit(bytes(msg), out)

    def _hand_over_secrets(self, initiator: bool) -> None:
        """Give the key log the keys of the handshake message just created: with them
        Wireshark decrypts the handshake and the session (`wgpy.noise.keylog`)."""
        keylog, hs = self.interface.keylog, self.handshake
        if keylog is not None and hs.identity.private is not None:
            keylog(HandshakeSecrets(hs.identity.private, hs.remote_static,
                                    hs.ephemeral_private, hs.preshared_key, initiator))

    def _stage(self, packet: bytes, out: list[Action]) -> None:
        if len(self.staged) >= MAX_STAGED_PACKETS:
            self.staged.popleft()  # latency over bufferbloat: drop the oldest
            out.append(Drop(DropReason.STAGED_QUEUE_FULL))
        self.staged.append(packet)

    def _send_keepalive(self, now: float, out: list[Action]) -> None:
        if not self.staged:
            self.staged.append(b"")
        self._send_staged(now, out)

    def _send_staged(self, now: float, out: list[Action]) -> None:
        if not self.staged:
            return
        keypair = self.keypairs.current
        if keypair is None or not keypair.can_send(now):
            if keypair is not None:
                keypair.sending_valid = False
            self._send_handshake_initiation(now, False, out)
            return
        packets = list(self.staged)
        self.staged.clear()
        if keypair.send_counter + len(packets) > REJECT_AFTER_MESSAGES:
            keypair.sending_valid = False
            self.staged.extend(packets)
            self._send_handshake_initiation(now, False, out)
            return
        self.timers.any_authenticated_packet_traversal(now)
        self.timers.any_authenticated_packet_sent(now)
        mtu = self.interface.mtu
        routes = self.interface.route_mtus
        if routes is None and fastpath.NATIVE:  # the whole batch in one call, GIL released
            counter = keypair.send_counter
            keypair.send_counter = counter + len(packets)
            datagrams = fastpath.seal(keypair.send_key, keypair.remote_index, counter, packets,
                                      mtu)
        elif routes is None:
            datagrams = [self._encrypt(keypair, packet, mtu) for packet in packets]
        else:  # routes with an MTU of their own lead here (wgpy.routemtu)
            datagrams = [self._encrypt(keypair, packet, routes.mtu_for(packet, mtu))
                         for packet in packets]
        if self.endpoint is None:
            out.append(Drop(DropReason.NO_ENDPOINT, len(datagrams)))
        else:
            self.tx_bytes += sum(map(len, datagrams))
            out.append(SendBatch(datagrams, self.endpoint, self))
            if any(packets):
                self.timers.data_sent(now)
        self._keep_key_fresh_on_send(now, out)

    def _encrypt(self, keypair: Keypair, packet: bytes, mtu: int) -> bytes:
        counter = keypair.next_counter()
        n = len(packet)
        pad = -n % MESSAGE_PADDING_MULTIPLE
        if n + pad > mtu:
            pad = padding_for(n, mtu)  # the rare cases near or over the MTU, even n % 16 == 0
        plain = packet + _PAD[:pad] if pad else packet
        return (TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, keypair.remote_index, counter)
                + keypair.send.encrypt(_NONCE.pack(counter), plain, None))

    def _keep_key_fresh_on_send(self, now: float, out: list[Action]) -> None:
        kp = self.keypairs.current
        if kp is not None and kp.sending_valid and (
                kp.send_counter > REKEY_AFTER_MESSAGES
                or (kp.initiator and now >= kp.created + REKEY_AFTER_TIME)):
            self._send_handshake_initiation(now, False, out)

    def _keep_key_fresh_on_receive(self, now: float, out: list[Action]) -> None:
        kp = self.keypairs.current
        if (kp is not None and kp.sending_valid and kp.initiator
                and now >= kp.created + REKEY_ON_RECEIVE_AGE
                and not self.timers.sent_lastminute_handshake):
            self.timers.sent_lastminute_handshake = True
            self._send_handshake_initiation(now, False, out)

    @property
    def handshake_in_progress(self) -> bool:
        return self.handshake.state is HandshakeState.CREATED_INITIATION

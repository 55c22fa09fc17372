"""Two in-memory peers through the sans-IO core: handshakes, data both ways, keypair
rotation, counters, padding, and bad input of every message type dropped, never raised."""

from __future__ import annotations

import random

import pytest

from helpers import EP_A, IP_A, IP_B, Pair, drops, ipv4, ipv6, sent, written
from wgpy.constants import (
    COOKIE_REPLY_SIZE, INITIATION_SIZE, MAX_STAGED_PACKETS, RESPONSE_SIZE, TRANSPORT_MIN_SIZE,
)
from wgpy.messages import TRANSPORT_HEADER
from wgpy.noise.actions import DropReason
from wgpy.noise.peer import padding_for


def test_handshake_then_data_both_ways() -> None:
    p = Pair()
    packet = ipv4(IP_A, IP_B, b"ping")
    init = p.a.send(packet, 0.0)
    assert [len(d) for d in sent(init)] == [INITIATION_SIZE]
    resp = p.to_b(sent(init), 0.0)
    assert [len(d) for d in sent(resp)] == [RESPONSE_SIZE]
    # B is responder: its keypair waits in `next` until A's first data packet confirms it.
    assert p.pb.keypairs.next is not None and p.pb.keypairs.current is None
    data = p.to_a(sent(resp), 0.0)
    assert p.pa.keypairs.current is not None
    delivered = p.to_b(sent(data), 0.0)
    assert written(delivered) == [packet]  # the staged packet went out instead of a keepalive
    assert p.pb.keypairs.current is not None and p.pb.keypairs.next is None
    assert p.pb.last_handshake_wall is not None and p.pa.last_handshake_wall is not None
    back = ipv6("fd00::2", "fd00::1", b"pong")
    assert written(p.to_a(sent(p.b.send(back, 1.0)), 1.0)) == [back]
    assert p.pa.tx_bytes == p.pb.rx_bytes > 0 and p.pb.tx_bytes == p.pa.rx_bytes > 0


def test_responder_side_can_initiate_too() -> None:
    p = Pair()
    _, tun_b = p.exchange(p.pb.initiate(0.0), 0.0, from_a=False)
    assert p.pb.keypairs.current is not None and p.pa.keypairs.next is None
    assert p.pa.keypairs.current is not None  # confirmed by B's keepalive
    assert written(p.to_a(sent(p.b.send(ipv4(IP_B, IP_A), 0.5)), 0.5)) == [ipv4(IP_B, IP_A)]


def test_second_handshake_rotates_keypairs_and_old_keys_still_decrypt() -> None:
    p = Pair()
    p.handshake(0.0)
    old = p.pa.keypairs.current
    in_flight = sent(p.a.send(ipv4(IP_A, IP_B, b"old"), 1.0))
    p.exchange(p.pa.initiate(10.0), 10.0)
    assert p.pa.keypairs.current is not old and p.pa.keypairs.previous is old
    assert written(p.to_b(in_flight, 10.0)) == [ipv4(IP_A, IP_B, b"old")]


def test_padding_to_multiple_of_16_within_mtu() -> None:
    assert padding_for(1, 1420) == 15
    assert padding_for(16, 1420) == 0
    assert padding_for(1419, 1420) == 1
    assert padding_for(1420, 1420) == 0
    assert padding_for(1415, 1412) == 13  # larger than the MTU: pad the remainder
    p = Pair()
    p.handshake(0.0)
    for n in (0, 1, 15, 17, 100, 1400):
        (d,) = sent(p.a.send(ipv4(IP_A, IP_B, bytes(n)), 1.0))
        plain = len(d) - TRANSPORT_MIN_SIZE
        assert plain == min(-(-(n + 20) // 16) * 16, 1420)


def test_staged_queue_drops_oldest_when_full() -> None:
    p = Pair()
    p.pa.endpoint = None
    reasons = []
    for i in range(MAX_STAGED_PACKETS + 3):
        reasons += drops(p.a.send(ipv4(IP_A, IP_B, i.to_bytes(2, "big")), 0.0))
    assert reasons.count(DropReason.STAGED_QUEUE_FULL) == 3
    assert len(p.pa.staged) == MAX_STAGED_PACKETS
    assert p.pa.staged[0][-2:] == (3).to_bytes(2, "big")


def test_no_route_and_no_endpoint() -> None:
    p = Pair()
    assert drops(p.a.send(ipv4(IP_A, "10.9.9.9"), 0.0)) == [DropReason.NO_ROUTE]
    p.pa.endpoint = None
    assert DropReason.NO_ENDPOINT in drops(p.pa.initiate(0.0))


# --- bad input: dropped with a reason, never raised ---------------------------------------------

def _captured() -> tuple[Pair, bytes, bytes, bytes]:
    """A pair after a full handshake plus one data packet, with the raw messages."""
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    resp = sent(p.to_b([init], 0.0))[0]
    p.to_a([resp], 0.0)
    data = sent(p.a.send(ipv4(IP_A, IP_B), 0.1))[0]
    return p, init, resp, data


@pytest.mark.parametrize("size", [0, 1, 3, 4, 31, 147, 149, 91, 93, 63, 65, 200])
def test_wrong_sizes_dropped(size: int) -> None:
    p = Pair()
    for kind in (1, 2, 3):
        datagram = kind.to_bytes(4, "little") + bytes(max(size - 4, 0))
        datagram = datagram[:size]
        if (kind, size) in ((1, INITIATION_SIZE), (2, RESPONSE_SIZE), (3, COOKIE_REPLY_SIZE)):
            continue
        assert drops(p.b.receive(datagram, EP_A, 0.0)) == [DropReason.INVALID_MESSAGE]
    short_transport = (4).to_bytes(4, "little") + bytes(max(min(size, 31) - 4, 0))
    assert drops(p.b.receive(short_transport, EP_A, 0.0)) == [DropReason.INVALID_MESSAGE]


def test_flipped_bits_in_every_message_type() -> None:
    rng = random.Random(7)
    for _ in range(20):
        p, init, resp, data = _captured()
        for raw, to in ((init, p.b), (resp, p.a), (data, p.b)):
            bad = bytearray(raw)
            bit = rng.randrange(4 * 8, len(raw) * 8)  # leave the type word alone
            bad[bit // 8] ^= 1 << (bit % 8)
            actions = to.receive(bytes(bad), EP_A, 1.0)
            assert drops(actions), (raw[0], bit)
            assert not written(actions)


def test_flipped_bits_in_cookie_reply() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    cookie = sent(p.to_b([init], 0.0, under_load=True))[0]
    for byte in (4, 8, 40, 63):
        bad = bytearray(cookie)
        bad[byte] ^= 1
        assert drops(p.a.receive(bytes(bad), EP_A, 0.0)) in (
            [DropReason.INVALID_COOKIE], [DropReason.UNKNOWN_INDEX])
    assert p.pa.cookie.cookie is None


def test_replayed_initiation_is_rejected() -> None:
    p, init, _, _ = _captured()
    assert drops(p.b.receive(init, EP_A, 5.0)) == [DropReason.INVALID_HANDSHAKE]


def test_stale_timestamp_rejected_after_newer_one() -> None:
    p = Pair()
    p.a.wall_offset = 1000.0
    first = sent(p.pa.initiate(0.0))[0]
    second = sent(p.pa.initiate(6.0))[0]
    assert sent(p.to_b([second], 6.0))  # accepted: response sent
    assert drops(p.to_b([first], 7.0)) == [DropReason.INVALID_HANDSHAKE]


def test_initiation_flood_guard() -> None:
    p = Pair()
    p.a.wall_offset = 1000.0
    first = sent(p.pa.initiate(0.0))[0]
    p.pa.last_sent_handshake = None  # let A build a second one at once
    second = sent(p.pa.initiate(0.001))[0]
    assert sent(p.to_b([first], 10.0))
    assert drops(p.to_b([second], 10.01)) == [DropReason.INVALID_HANDSHAKE]  # < 20 ms later


def test_unknown_receiver_index() -> None:
    p, _, resp, data = _captured()
    for raw, to in ((resp, p.a), (data, p.b)):
        bad = bytearray(raw)
        idx = (int.from_bytes(raw[8 if raw[0] == 2 else 4:][:4], "little") + 1) % 2**32
        if raw[0] == 2:
            bad[8:12] = idx.to_bytes(4, "little")  # MACs now wrong too: mac1 fails first
        else:
            bad[4:8] = idx.to_bytes(4, "little")
        reasons = drops(to.receive(bytes(bad), EP_A, 1.0))
        assert reasons in ([DropReason.UNKNOWN_INDEX], [DropReason.INVALID_MAC])
    bad = bytearray(data)
    bad[4:8] = (0xDEADBEEF).to_bytes(4, "little")
    assert drops(p.b.receive(bytes(bad), EP_A, 1.0)) == [DropReason.UNKNOWN_INDEX]


def test_replayed_transport_packet() -> None:
    p, _, _, data = _captured()
    assert written(p.b.receive(data, EP_A, 1.0))
    assert drops(p.b.receive(data, EP_A, 1.0)) == [DropReason.REPLAYED_COUNTER]


def test_unknown_peer_and_no_private_key() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    p.b.remove_peer(p.a.identity.public)
    assert drops(p.b.receive(init, EP_A, 0.0)) == [DropReason.UNKNOWN_PEER]


def test_inner_packet_checks() -> None:
    p = Pair()
    p.handshake(0.0)
    keypair = p.pa.keypairs.current
    assert keypair is not None

    def deliver(plain: bytes) -> list:
        return p.b.receive(p.pa._encrypt(keypair, plain, 0), EP_A, 1.0)

    assert drops(deliver(b"\x45" + bytes(10))) == [DropReason.INVALID_INNER_PACKET]
    assert drops(deliver(b"\x99" + bytes(40))) == [DropReason.INVALID_INNER_PACKET]
    assert drops(deliver(ipv4("10.0.0.77", IP_B))) == [DropReason.DISALLOWED_SOURCE]
    # Trailing padding is cut to the IP header's own length.
    assert written(deliver(ipv4(IP_A, IP_B, b"x") + bytes(11))) == [ipv4(IP_A, IP_B, b"x")]


def test_random_garbage_never_raises() -> None:
    rng = random.Random(1)
    p, _, _, _ = _captured()
    for _ in range(2000):
        kind = rng.choice([1, 2, 3, 4, 0, 5, 255])
        size = rng.choice([INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE, 32, 48,
                           rng.randrange(0, 300)])
        datagram = kind.to_bytes(4, "little") + rng.randbytes(max(size - 4, 0))
        p.b.receive(datagram[:size], EP_A, 2.0, under_load=rng.random() < 0.3)
        p.a.receive(datagram[:size], EP_A, 2.0)


def test_transport_header_fast_path_names_the_keypair() -> None:
    p, _, _, data = _captured()
    kind, receiver, counter = TRANSPORT_HEADER.unpack_from(data)
    assert (kind, counter) == (4, 1)  # counter 0 was A's keepalive confirming the session
    assert receiver == p.pb.keypairs.next.local_index  # type: ignore[union-attr]


def test_batches_both_ways_keep_order_and_count_drops() -> None:
    p = Pair()
    p.handshake(0.0)
    packets = [ipv4(IP_A, IP_B, i.to_bytes(2, "big") * 50) for i in range(40)]
    datagrams = sent(p.pa.send_batch(packets, 1.0))
    assert len(datagrams) == 40
    keypair = p.pb.keypairs.current
    assert keypair is not None
    bad = bytearray(datagrams[3])
    bad[-1] ^= 1
    batch = datagrams[:3] + [bytes(bad)] + datagrams[3:] + [datagrams[0]]
    got, actions, authenticated = p.pb.consume_data_batch(keypair, batch, EP_A, 1.0)
    assert authenticated == 40
    assert got == packets
    assert sorted(drops(actions), key=str) == [DropReason.DECRYPTION_FAILED,
                                               DropReason.REPLAYED_COUNTER]
    assert p.pb.rx_bytes >= sum(map(len, datagrams))


def test_batch_on_next_keypair_confirms_it() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))
    resp = sent(p.to_b(init, 0.0))
    first = sent(p.to_a(resp, 0.0))  # A's keepalive, not yet delivered
    more = sent(p.pa.send_batch([ipv4(IP_A, IP_B)] * 3, 0.1))
    nxt = p.pb.keypairs.next
    assert nxt is not None
    got, _, _ = p.pb.consume_data_batch(nxt, first + more, EP_A, 0.2)
    assert len(got) == 3 and p.pb.keypairs.current is nxt and p.pb.keypairs.next is None


def test_route_batch_routes_as_route_does_packet_by_packet() -> None:
    """Interface.route_batch (the TUN reader's, one lookup per read and per run of one
    destination) gives each peer exactly the packets `route` gives it, in order, and counts
    the rest."""
    import ipaddress  # noqa: PLC0415

    from wgpy import crypto  # noqa: PLC0415
    from wgpy.noise.interface import Interface  # noqa: PLC0415
    pair = Pair()
    other = pair.a.add_peer(Interface(crypto.generate_private_key()).identity.public)
    pair.a.allowed_ips.insert(ipaddress.ip_network("10.9.0.0/16"), other)
    rng = random.Random(3)
    choices = [ipv4(IP_A, IP_B), ipv4(IP_A, "10.9.1.2"), ipv4(IP_A, "10.8.0.1"),
               ipv6("fd00::1", "fd00::2"), ipv6("fd00::1", "fd00::9"), b"\x45" * 19, b"",
               b"\x10" * 40]
    for _ in range(200):
        packets = [rng.choice(choices) for _ in range(rng.randint(0, 30))]
        # each read one packet, or (a TSO read) several of one destination
        reads: list[list[bytes]] = []
        for p in packets:
            if reads and rng.random() < 0.3 and reads[-1][0] == p:
                reads[-1].append(p)
            else:
                reads.append([p])
        by_peer, no_route = pair.a.route_batch(reads)
        want: dict[object, list[bytes]] = {}
        for p in packets:
            peer = pair.a.route(p)
            if peer is not None:
                want.setdefault(peer, []).append(p)
        assert by_peer == want
        assert no_route == len(packets) - sum(map(len, want.values()))

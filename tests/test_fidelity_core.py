"""Issue 8 in the sans-IO core, at literal times: what the kernel does that we did not.

- the sticky source address is forgotten on handshake retransmit and on new-handshake
  expiry (timers.c `wg_expired_retransmit_handshake`, `wg_expired_new_handshake`);
- `consume_data_batch` says whether anything authenticated and passed the replay check;
- a packet longer than the MTU is padded as send.c `calculate_skb_padding` pads it, even
  when its length is a multiple of 16;
- a keypair whose greatest received counter + 1 reached REJECT_AFTER_MESSAGES accepts
  nothing more (receive.c `decrypt_packet`);
- the link going down and up (device.c `wg_stop` / `wg_open`), and an initiation created
  while the timers were off is sent again, with its retries, at link-up.
"""

from __future__ import annotations

from helpers import EP_A, EP_B, IP_A, IP_B, Pair, drops, ipv4, sent, written
from wgpy.constants import (
    INITIATION_SIZE, KEEPALIVE_TIMEOUT, REJECT_AFTER_MESSAGES, REKEY_TIMEOUT,
    TRANSPORT_MIN_SIZE,
)
from wgpy.noise import actions as A
from wgpy.noise.actions import DropReason, SendDatagram


def initiations(actions: list) -> int:
    return sum(1 for d in sent(actions) if len(d) == INITIATION_SIZE and d[0] == 1)


def test_retransmit_forgets_the_sticky_source_before_retrying() -> None:
    p = Pair()
    p.a.send(ipv4(IP_A, IP_B), 0.0)  # initiation, unanswered
    out = p.a.tick(REKEY_TIMEOUT)
    kinds = [type(a).__name__ for a in out]
    assert "ClearEndpointSource" in kinds, kinds
    clear = kinds.index("ClearEndpointSource")
    retry = next(i for i, a in enumerate(out) if isinstance(a, SendDatagram))
    assert clear < retry  # the retry leaves from the address routing picks
    assert out[clear] == A.ClearEndpointSource(EP_B)


def test_new_handshake_expiry_forgets_the_sticky_source() -> None:
    p = Pair()
    p.handshake(0.0)
    p.a.send(ipv4(IP_A, IP_B), 1.0)  # data that is never answered
    p.pa.last_sent_handshake = None
    out = p.a.tick(1.0 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT)
    assert initiations(out) == 1
    assert [type(a).__name__ for a in out][0] == "ClearEndpointSource"
    # A peer with no endpoint has no source to forget.
    p.pa.endpoint = None
    p.pa.timers.mod("new_handshake", 100.0)
    p.pa.last_sent_handshake = None
    assert not any(type(a).__name__ == "ClearEndpointSource" for a in p.a.tick(100.0))


def test_consume_data_batch_says_what_authenticated() -> None:
    p = Pair()
    p.handshake(0.0)
    kp = p.pb.keypairs.current
    assert kp is not None
    (good,) = sent(p.a.send(ipv4(IP_A, IP_B), 1.0))
    forged = bytearray(good)
    forged[-1] ^= 1
    result = p.pb.consume_data_batch(kp, [bytes(forged)], EP_A, 1.0)
    assert len(result) == 3 and result[2] == 0 and drops(result[1]) == [
        DropReason.DECRYPTION_FAILED]
    assert p.pb.consume_data_batch(kp, [good], EP_A, 1.0)[2] == 1
    replay = p.pb.consume_data_batch(kp, [good], ("198.51.100.7", 1), 1.0)
    assert replay[2] == 0 and p.pb.endpoint == EP_A  # a replay from elsewhere moves nothing


def test_packet_longer_than_the_mtu_is_padded_even_at_a_multiple_of_16() -> None:
    p = Pair()
    p.handshake(0.0)
    mtu = p.a.mtu = 1420
    for total in (1440, 1456, 1424, 2 * 1420, 1436, 1500):
        packet = ipv4(IP_A, IP_B, bytes(total - 20))
        (d,) = sent(p.a.send(packet, 1.0))
        plain = len(d) - TRANSPORT_MIN_SIZE
        last_unit = total % mtu
        padded = min(mtu, -(-last_unit // 16) * 16)  # calculate_skb_padding
        assert plain == total + padded - last_unit, (total, plain)
        assert written(p.to_b([d], 1.0)) == [packet]  # the receiver trims the padding


def test_exhausted_receive_counter_accepts_nothing_more() -> None:
    p = Pair()
    p.handshake(0.0)
    a_kp = p.pa.keypairs.current
    assert a_kp is not None
    a_kp.send_counter = REJECT_AFTER_MESSAGES - 3
    older, newer = sent(p.pa.send_batch([ipv4(IP_A, IP_B, b"1"), ipv4(IP_A, IP_B, b"2")], 1.0))
    # Counter REJECT_AFTER_MESSAGES - 2 arrives first ...
    assert written(p.to_b([newer], 1.0)) == [ipv4(IP_A, IP_B, b"2")]
    # ... and REJECT_AFTER_MESSAGES - 3, inside the window, is still fine.
    assert written(p.to_b([older], 1.0)) == [ipv4(IP_A, IP_B, b"1")]
    a_kp.send_counter = REJECT_AFTER_MESSAGES - 5
    late, last = sent(p.pa.send_batch([ipv4(IP_A, IP_B, b"3"), ipv4(IP_A, IP_B, b"4")], 1.0))
    a_kp.send_counter = REJECT_AFTER_MESSAGES - 1
    (final,) = sent(p.a.send(ipv4(IP_A, IP_B, b"5"), 1.0))
    # The greatest counter a keypair can accept: after it, the receive key is spent.
    assert written(p.to_b([final], 1.0)) == [ipv4(IP_A, IP_B, b"5")]
    out = p.to_b([late, last], 1.0)
    assert written(out) == [] and drops(out) == [DropReason.EXPIRED_KEYPAIR] * 2
    b_kp = p.pb.keypairs.current
    assert b_kp is not None and not b_kp.receiving_valid


def test_link_down_purges_and_link_up_sends_what_was_staged() -> None:
    p = Pair()
    p.handshake(0.0)
    p.pa.set_persistent_keepalive(25, 0.5)
    out = p.pa.link_down()
    assert p.pa.keypairs.current is None and p.pa.timers.next_deadline() is None
    assert out == [] and not p.pa.timers.enabled and p.pa.last_sent_handshake is None
    assert p.pa.stage_batch([ipv4(IP_A, IP_B)]) == []
    assert p.pa.timers.next_deadline() is None  # staging starts nothing
    out = p.pa.link_up(10.0)
    # kernel wg_open: the staged packets (they need a handshake), then the keepalive.
    assert initiations(out) == 1 and p.pa.timers.deadlines["retransmit_handshake"] == 15.0
    tun_a, tun_b = p.exchange(out, 10.0)
    assert tun_b == [ipv4(IP_A, IP_B)]
    assert p.pa.timers.deadlines["persistent_keepalive"] is not None
    assert drops(p.pa.link_down()) == []
    p.pa.stage_batch([ipv4(IP_A, IP_B)] * 2)
    assert drops(p.pa.link_down()) == [DropReason.INTERFACE_DOWN] * 2


def test_initiation_made_while_timers_are_off_is_retried_at_link_up() -> None:
    p = Pair()
    p.pa.timers.enabled = False  # the interface is down
    assert initiations(p.pa.initiate(0.0)) == 1  # the device does not send it
    assert p.pa.timers.deadlines["retransmit_handshake"] is None
    out = p.pa.link_up(1.0)
    assert initiations(out) == 1  # a fresh one at once, not after REKEY_TIMEOUT
    assert p.pa.timers.deadlines["retransmit_handshake"] == 1.0 + REKEY_TIMEOUT
    assert initiations(p.a.tick(1.0 + REKEY_TIMEOUT)) == 1  # and it is retried
    # A handshake in progress with its retransmit timer armed is left alone.
    q = Pair()
    q.pa.initiate(0.0)
    assert initiations(q.pa.link_up(1.0)) == 0


def test_prefix_added_again_moves_to_the_end_of_its_peers_list() -> None:
    # kernel allowedips.c `add`: an existing node gets the peer and list_move_tail, also
    # when that peer already owned it; wireguard-go removes and re-adds. `get` shows it.
    import ipaddress

    from wgpy.allowedips import AllowedIPs
    from uapi.prefix import prefix_of

    owner, other = object(), object()
    t: AllowedIPs[object] = AllowedIPs()
    texts = ["10.0.0.0/8", "fd00::/8", "10.1.0.0/16", "0.0.0.0/0"]
    for text in texts:
        t.insert(ipaddress.ip_network(text), owner)
    t.insert(ipaddress.ip_network("10.0.0.0/8"), owner)
    assert [str(n) for n in t.entries_for_peer(owner)] == texts[1:] + texts[:1]
    t.insert_many([prefix_of(ipaddress.ip_network("fd00::/8"))], owner)  # the bulk form
    assert [str(n) for n in t.entries_for_peer(owner)] == [texts[2], texts[3], texts[0],
                                                          texts[1]]
    t.insert(ipaddress.ip_network("10.1.0.0/16"), other)
    t.insert(ipaddress.ip_network("10.1.0.0/16"), owner)  # taken back: at the end too
    assert str(t.entries_for_peer(owner)[-1]) == "10.1.0.0/16" and len(t) == 4

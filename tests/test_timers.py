"""Every timer of the paper and the kernel (timers.c, send.c, receive.c) at literal times.

Jitter is zero (injected), so REKEY_TIMEOUT retries land on exact multiples of 5 s.
"""

from __future__ import annotations

from helpers import IP_A, IP_B, Pair, drops, ipv4, sent, written
from wgpy.constants import (
    INITIATION_SIZE, KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT, TRANSPORT_MIN_SIZE, ZERO_KEY_MATERIAL_TIMEOUT,
)
from wgpy.noise.actions import DropReason, Schedule
from wgpy.noise.interface import Interface


def initiations(actions: list) -> int:
    return sum(1 for d in sent(actions) if len(d) == INITIATION_SIZE and d[0] == 1)


def keepalives(actions: list) -> int:
    return sum(1 for d in sent(actions) if len(d) == TRANSPORT_MIN_SIZE and d[0] == 4)


def test_constants_are_the_papers() -> None:
    assert (REKEY_AFTER_TIME, REJECT_AFTER_TIME, REKEY_ATTEMPT_TIME) == (120, 180, 90)
    assert (REKEY_TIMEOUT, KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES) == (5, 10, 18)
    assert REKEY_AFTER_MESSAGES == 2**60 and REJECT_AFTER_MESSAGES == 2**64 - 1 - 8128 - 1  # kernel messages.h
    assert ZERO_KEY_MATERIAL_TIMEOUT == 540


def test_retransmit_every_rekey_timeout_then_give_up() -> None:
    p = Pair()
    first = p.a.send(ipv4(IP_A, IP_B), 0.0)
    assert initiations(first) == 1 and Schedule(REKEY_TIMEOUT) in first
    sent_at = [0.0]
    t = 0.0
    while t < 200.0:
        t += 0.5
        if initiations(p.a.tick(t)):
            sent_at.append(t)
    # The kernel tries MAX_TIMER_HANDSHAKES + 2 times in all, REKEY_TIMEOUT apart ...
    assert sent_at == [5.0 * i for i in range(MAX_TIMER_HANDSHAKES + 2)]
    # ... then drops the staged packets and schedules the zeroing of key material.
    assert not p.pa.staged
    assert p.pa.timers.deadlines["zero_key_material"] == 100.0 + ZERO_KEY_MATERIAL_TIMEOUT


def test_give_up_reports_dropped_staged_packets() -> None:
    p = Pair()
    p.a.send(ipv4(IP_A, IP_B), 0.0)
    reasons = []
    for i in range(1, MAX_TIMER_HANDSHAKES + 3):
        reasons += drops(p.a.tick(5.0 * i))
    assert reasons == [DropReason.HANDSHAKE_GAVE_UP]


def test_handshake_initiations_rate_limited_to_one_per_rekey_timeout() -> None:
    p = Pair()
    assert initiations(p.pa.initiate(0.0)) == 1
    assert initiations(p.pa.initiate(4.9)) == 0
    assert initiations(p.a.send(ipv4(IP_A, IP_B), 4.99)) == 0
    assert initiations(p.pa.initiate(5.0)) == 1


def test_initiator_rekeys_on_send_after_rekey_after_time() -> None:
    p = Pair()
    p.handshake(0.0)
    assert initiations(p.a.send(ipv4(IP_A, IP_B), REKEY_AFTER_TIME - 0.1)) == 0
    out = p.a.send(ipv4(IP_A, IP_B), REKEY_AFTER_TIME)
    assert keepalives(out) == 0 and len(sent(out)) == 2 and initiations(out) == 1
    # The responder never rekeys on time when sending.
    q = Pair()
    q.handshake(0.0)
    assert initiations(q.b.send(ipv4(IP_B, IP_A), REKEY_AFTER_TIME + 1)) == 0


def test_rekey_after_messages() -> None:
    p = Pair()
    p.handshake(0.0)
    p.pa.keypairs.current.send_counter = REKEY_AFTER_MESSAGES + 1  # type: ignore[union-attr]
    assert initiations(p.a.send(ipv4(IP_A, IP_B), 6.0)) == 1


def test_reject_after_messages() -> None:
    p = Pair()
    p.handshake(0.0)
    p.pa.keypairs.current.send_counter = REJECT_AFTER_MESSAGES  # type: ignore[union-attr]
    out = p.a.send(ipv4(IP_A, IP_B), 6.0)
    assert initiations(out) == 1 and len(sent(out)) == 1 and len(p.pa.staged) == 1


def test_reject_after_time_on_send_and_receive() -> None:
    p = Pair()
    p.handshake(0.0)
    late = REJECT_AFTER_TIME
    assert drops(p.b.receive(sent(p.a.send(ipv4(IP_A, IP_B), late - 1))[0], ("192.0.2.1", 1),
                             late)) == [DropReason.EXPIRED_KEYPAIR]
    p.pa.last_sent_handshake = None
    out = p.a.send(ipv4(IP_A, IP_B), late)
    assert initiations(out) == 1 and len(sent(out)) == 1  # nothing sent under the old key
    assert len(p.pa.staged) == 1


def test_initiator_rekeys_on_receive_near_reject_after_time() -> None:
    p = Pair()
    p.handshake(0.0)
    t = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    packet = sent(p.b.send(ipv4(IP_B, IP_A), t - 1))[0]
    out = p.a.receive(packet, ("192.0.2.2", 2), t)
    assert initiations(out) == 1 and p.pa.timers.sent_lastminute_handshake
    # Only once until the next handshake completes.
    packet = sent(p.b.send(ipv4(IP_B, IP_A), t + 6))[0]
    assert initiations(p.a.receive(packet, ("192.0.2.2", 2), t + 6)) == 0


def test_keepalive_after_receiving_data_and_sending_nothing() -> None:
    p = Pair()
    p.handshake(0.0)
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 1.0)), 1.0)
    assert p.pb.timers.deadlines["send_keepalive"] == 1.0 + KEEPALIVE_TIMEOUT
    assert keepalives(p.b.tick(10.9)) == 0
    assert keepalives(p.b.tick(11.0)) == 1


def test_keepalive_not_needed_when_we_sent_data() -> None:
    p = Pair()
    p.handshake(0.0)
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 1.0)), 1.0)
    p.b.send(ipv4(IP_B, IP_A), 2.0)
    assert p.pb.timers.deadlines["send_keepalive"] is None
    assert keepalives(p.b.tick(11.0)) == 0


def test_another_keepalive_only_when_the_first_did_not_go_out() -> None:
    # Data kept arriving while the keepalive was pending: the kernel re-arms the timer, but
    # the keepalive's own send deletes it again (see Peer.tick), so one keepalive covers it.
    p = Pair()
    p.handshake(0.0)
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 1.0)), 1.0)
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 2.0)), 2.0)
    assert p.pb.timers.need_another_keepalive
    assert keepalives(p.b.tick(11.0)) == 1
    assert p.pb.timers.deadlines["send_keepalive"] is None
    assert not p.pb.timers.need_another_keepalive
    # If nothing could be sent (no usable keypair, the initiation rate-limited), the
    # re-armed timer stays and tries again KEEPALIVE_TIMEOUT later.
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 12.0)), 12.0)
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 13.0)), 13.0)
    p.pb.keypairs.current.sending_valid = False  # type: ignore[union-attr]
    p.pb.last_sent_handshake = 20.0
    assert sent(p.b.tick(22.0)) == []
    assert p.pb.timers.deadlines["send_keepalive"] == 32.0


def test_new_handshake_when_sent_data_is_unanswered() -> None:
    p = Pair()
    p.handshake(0.0)
    p.a.send(ipv4(IP_A, IP_B), 1.0)
    p.pa.last_sent_handshake = None
    assert p.pa.timers.deadlines["new_handshake"] == 1.0 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
    assert initiations(p.a.tick(15.9)) == 0
    assert initiations(p.a.tick(16.0)) == 1


def test_any_received_packet_cancels_new_handshake() -> None:
    p = Pair()
    p.handshake(0.0)
    p.to_b(sent(p.a.send(ipv4(IP_A, IP_B), 1.0)), 1.0)
    p.to_a(sent(p.b.tick(11.0)), 11.0)  # B's keepalive answers
    assert p.pa.timers.deadlines["new_handshake"] is None
    assert initiations(p.a.tick(16.0)) == 0


def test_persistent_keepalive() -> None:
    p = Pair()
    p.handshake(0.0)
    out = p.pa.set_persistent_keepalive(25, 1.0)  # turning it on sends one at once
    assert keepalives(out) == 1
    assert p.pa.timers.deadlines["persistent_keepalive"] == 26.0
    assert keepalives(p.a.tick(26.0)) == 1
    p.to_a(sent(p.pb.send_keepalive(30.0)), 30.0)  # any authenticated traffic re-arms it
    assert p.pa.timers.deadlines["persistent_keepalive"] == 55.0
    p.pa.set_persistent_keepalive(0, 31.0)
    assert keepalives(p.a.tick(55.0)) == 0


def test_zero_key_material_after_three_reject_after_times() -> None:
    p = Pair()
    p.handshake(0.0)
    kp = p.pa.keypairs.current
    assert kp is not None and p.a.index.get(kp.local_index) is not None
    assert p.pa.timers.deadlines["zero_key_material"] == ZERO_KEY_MATERIAL_TIMEOUT
    p.a.tick(ZERO_KEY_MATERIAL_TIMEOUT)
    assert list(p.pa.keypairs) == [] and p.a.index.get(kp.local_index) is None
    assert len(p.a.index) == 0


def test_schedule_actions_follow_the_earliest_timer() -> None:
    p = Pair()
    out = p.pa.initiate(0.0)
    assert out[-1] == Schedule(REKEY_TIMEOUT)
    assert p.a.next_deadline() == REKEY_TIMEOUT


def test_interface_tick_runs_only_due_peers() -> None:
    p = Pair()
    p.pa.initiate(0.0)
    assert p.a.tick(4.0) == []
    assert initiations(p.a.tick(5.0)) == 1


def test_private_key_change_expires_keypairs_and_removes_matching_peer() -> None:
    p = Pair()
    p.handshake(0.0)
    new_key = bytes(range(32))
    p.a.set_private_key(new_key)
    assert not p.pa.keypairs.current.sending_valid  # type: ignore[union-attr]
    assert initiations(p.a.send(ipv4(IP_A, IP_B), 6.0)) == 1
    other = Interface(bytes(range(1, 33)))
    other.add_peer(p.a.identity.public)
    other.set_private_key(new_key)
    assert p.a.identity.public not in other.peers


def test_low_order_peer_sends_nothing() -> None:
    a = Interface(bytes(range(32)))
    peer = a.add_peer(bytes(32))
    peer.endpoint = ("192.0.2.9", 1)
    assert sent(peer.initiate(0.0)) == [] and written(a.tick(100.0)) == []


def test_replayed_packet_in_a_batch_arms_no_keepalive() -> None:
    p = Pair()
    p.handshake(0.0)
    data = sent(p.a.send(ipv4(IP_A, IP_B), 1.0))[0]
    p.to_b([data], 1.0)
    p.b.send(ipv4(IP_B, IP_A), 1.5)  # B answered: no keepalive pending
    assert p.pb.timers.deadlines["send_keepalive"] is None
    keepalive = sent(p.pa.send_keepalive(2.0))[0]
    kp = p.pb.keypairs.current
    assert kp is not None
    p.pb.consume_data_batch(kp, [keepalive, data], ("192.0.2.1", 51820), 2.0)
    assert p.pb.timers.deadlines["send_keepalive"] is None

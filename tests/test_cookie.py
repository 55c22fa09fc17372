"""MAC1, MAC2 and cookie replies under load (paper section 5.4.7, kernel cookie.c)."""

from __future__ import annotations

from helpers import EP_A, Pair, drops, sent
from wgpy.constants import (
    COOKIE_REPLY_SIZE, COOKIE_SECRET_MAX_AGE, COOKIE_VALID_FOR, INITIATION_SIZE, MAC_SIZE,
    MESSAGE_COOKIE_REPLY, RESPONSE_SIZE, UNDER_LOAD_THRESHOLD,
)
from wgpy.messages import mac2_offset
from wgpy.noise.actions import DropReason
from wgpy.noise.cookie import CookieChecker, CookieGenerator, MacState


def mac2(msg: bytes) -> bytes:
    return msg[-MAC_SIZE:]


def test_not_under_load_no_mac2_needed() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    assert mac2(init) == bytes(MAC_SIZE)
    assert [len(d) for d in sent(p.to_b([init], 0.0))] == [RESPONSE_SIZE]


def test_cookie_round_under_load() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    reply = sent(p.to_b([init], 0.0, under_load=True))
    assert [len(d) for d in reply] == [COOKIE_REPLY_SIZE] and reply[0][0] == MESSAGE_COOKIE_REPLY
    assert p.pb.handshake.remote_index == 0  # nothing processed
    assert p.to_a(reply, 0.1) == []
    assert p.pa.cookie.cookie is not None
    retry = sent(p.a.tick(5.0))[0]  # REKEY_TIMEOUT later
    assert len(retry) == INITIATION_SIZE and mac2(retry) != bytes(MAC_SIZE)
    resp = sent(p.to_b([retry], 5.0, under_load=True))
    assert [len(d) for d in resp] == [RESPONSE_SIZE]
    p.to_a(resp, 5.0)
    assert p.pa.keypairs.current is not None


def test_cookie_reply_does_not_move_endpoint() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    reply = sent(p.to_b([init], 0.0, under_load=True))[0]
    p.a.receive(reply, ("198.51.100.7", 9), 0.1)
    assert p.pa.endpoint == ("192.0.2.2", 51821)


def test_cookie_reply_only_once_and_only_for_last_mac1() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    reply = sent(p.to_b([init], 0.0, under_load=True))[0]
    assert p.to_a([reply], 0.1) == []
    assert drops(p.to_a([reply], 0.2)) == [DropReason.INVALID_COOKIE]  # already consumed


def test_cookie_from_another_source_address_fails_mac2() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    p.to_a(sent(p.to_b([init], 0.0, under_load=True)), 0.1)
    retry = sent(p.a.tick(5.0))[0]
    other = p.b.receive(retry, ("192.0.2.99", 51820), 5.0, under_load=True)
    assert [len(d) for d in sent(other)] == [COOKIE_REPLY_SIZE]


def test_cookie_secret_renewed_every_two_minutes() -> None:
    checker = CookieChecker(bytes(range(32)))
    gen = CookieGenerator(bytes(range(32)))
    source = b"\xc0\x00\x02\x01" + (51820).to_bytes(2, "big")
    msg = bytearray(148)
    msg[0] = 1
    gen.add_macs(msg, 1, 0.0)
    assert checker.validate(bytes(msg), 1, source, 0.0, True) is MacState.VALID_MAC_BUT_NO_COOKIE
    reply = checker.create_reply(bytes(msg), 1, 7, source, 0.0)
    assert gen.consume_reply(reply, 0.0)
    gen.add_macs(msg, 1, 1.0)
    assert checker.validate(bytes(msg), 1, source, 1.0, True) is MacState.VALID_MAC_WITH_COOKIE
    # After COOKIE_SECRET_MAX_AGE the responder's secret changes: the old cookie is useless.
    gen.add_macs(msg, 1, 1.0)
    assert checker.validate(bytes(msg), 1, source, COOKIE_SECRET_MAX_AGE + 1,
                            True) is MacState.VALID_MAC_BUT_NO_COOKIE


def test_initiator_stops_using_an_old_cookie() -> None:
    gen = CookieGenerator(bytes(range(32)))
    gen.cookie, gen.cookie_born = bytes(16), 0.0
    msg = bytearray(148)
    gen.add_macs(msg, 1, COOKIE_VALID_FOR - 0.1)
    assert bytes(msg[mac2_offset(1):]) != bytes(16)
    gen.add_macs(msg, 1, COOKIE_VALID_FOR)
    assert bytes(msg[mac2_offset(1):]) == bytes(16)


def test_invalid_mac1_dropped_under_load_too() -> None:
    p = Pair()
    init = bytearray(sent(p.pa.initiate(0.0))[0])
    init[-20] ^= 0xFF
    for load in (False, True):
        assert drops(p.b.receive(bytes(init), EP_A, 0.0, load)) == [DropReason.INVALID_MAC]


def test_rate_limiter_applies_under_load_with_valid_cookie() -> None:
    p = Pair()
    init = sent(p.pa.initiate(0.0))[0]
    p.to_a(sent(p.to_b([init], 0.0, under_load=True)), 0.0)
    p.pa.last_sent_handshake = None
    reasons = []
    for i in range(8):
        p.pa.last_sent_handshake = None
        retry = sent(p.pa.initiate(0.001 * i))[0]
        reasons.append(drops(p.b.receive(retry, EP_A, 0.001 * i, True)))
    # Burst of 5 passes the limiter (then the per-peer flood guard may refuse some);
    # the rest are refused by the limiter itself.
    assert reasons[5:] == [[DropReason.RATE_LIMITED]] * 3
    assert all(DropReason.RATE_LIMITED not in r for r in reasons[:5])


def test_under_load_hysteresis() -> None:
    p = Pair()
    assert not p.b.under_load(UNDER_LOAD_THRESHOLD - 1, 0.0)
    assert p.b.under_load(UNDER_LOAD_THRESHOLD, 0.0)
    assert p.b.under_load(0, 0.9)
    assert not p.b.under_load(0, 1.0)

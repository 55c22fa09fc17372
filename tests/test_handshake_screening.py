"""Under load, the UDP reader screens handshake messages before they take a queue slot:
bad mac1 dropped, no cookie answered with a cookie reply at once, a valid cookie (mac2)
sent to the queue the handshake worker serves first. A flood without cookies thus cannot
keep a legitimate peer's cookie-carrying retry out (compat/test_hostile.py floods it)."""

from __future__ import annotations

import io
from typing import Iterator

import pytest

from fakes import FakeTun
from wgpy import crypto
from wgpy.device.device import Device, _Reply
from wgpy.device.log import VERBOSE, Logger
from wgpy.noise.actions import DropReason, SendDatagram
from wgpy.noise.cookie import MacState
from wgpy.noise.interface import Interface

NOW = 1000.0
SRC = ("192.0.2.7", 40000)


def initiation(a: Interface, now: float) -> bytes:
    (peer,) = a.peers.values()
    peer.last_sent_handshake = None
    return next(x.data for x in peer.initiate(now) if type(x) is SendDatagram)


@pytest.fixture
def device() -> Iterator[Device]:
    d = Device(FakeTun("wgsc"), Logger("wgsc", VERBOSE, io.StringIO()))
    d.iface.set_private_key(crypto.generate_private_key())
    yield d
    d.tun.close()


def initiator(d: Device) -> Interface:
    a = Interface(crypto.generate_private_key())
    a.add_peer(d.iface.identity.public).endpoint = ("192.0.2.1", 51820)
    d.iface.add_peer(a.identity.public)
    return a


def test_screen_under_load_decides_from_the_macs(device: Device) -> None:
    a = initiator(device)
    first = initiation(a, NOW)
    state, reply = device.iface.screen_under_load(first, SRC, NOW)
    assert state is MacState.VALID_MAC_BUT_NO_COOKIE and reply is not None
    assert a.receive(reply.data, ("192.0.2.1", 51820), NOW) == []  # cookie taken
    retry = initiation(a, NOW + 6)  # the retry carries mac2
    assert device.iface.screen_under_load(retry, SRC, NOW + 6) == \
        (MacState.VALID_MAC_WITH_COOKIE, None)
    # The cookie is bound to the source address: from elsewhere it proves nothing.
    assert device.iface.screen_under_load(retry, ("192.0.2.8", 40000), NOW + 6)[0] is \
        MacState.VALID_MAC_BUT_NO_COOKIE
    bad = bytearray(retry)
    bad[-20] ^= 1  # inside mac1
    assert device.iface.screen_under_load(bytes(bad), SRC, NOW + 6) == \
        (MacState.INVALID_MAC, None)


def test_reader_queues_only_what_proved_its_address(device: Device,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device.iface, "under_load", lambda queued, now: True)
    a = initiator(device)
    actions: list = []
    first = initiation(a, NOW)
    device._queue_handshake(first, SRC, None, NOW, actions)
    assert [type(x) for x in actions] == [_Reply]  # answered at once, nothing queued
    assert device._handshake_q.empty() and device._proven_q.empty()
    a.receive(actions[0].data, ("192.0.2.1", 51820), NOW)
    retry = initiation(a, NOW + 6)
    device._queue_handshake(retry, SRC, None, NOW + 6, actions)
    assert device._proven_q.get_nowait()[0] == retry
    bad = bytearray(retry)
    bad[-20] ^= 1
    device._queue_handshake(bytes(bad), SRC, None, NOW + 6, actions)
    assert device._proven_q.empty()
    assert device.drops[DropReason.INVALID_MAC] == 1
    assert len(actions) == 1

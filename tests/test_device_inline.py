"""Handshake messages answered on the UDP reader itself (the first packet's latency), and
the token bucket that sends a flood back through the handshake queue."""

from __future__ import annotations

import io
import queue
from pathlib import Path
from typing import Iterator

import pytest

from fakes import FakeTun
from helpers import ipv4
from test_device import Node, configure
from wgpy.constants import INLINE_HANDSHAKE_BURST, INLINE_HANDSHAKES_PER_SECOND
from wgpy.device.device import Device
from wgpy.device.log import VERBOSE, Logger


@pytest.fixture
def device() -> Iterator[Device]:
    d = Device(FakeTun("wgil"), Logger("wgil", VERBOSE, io.StringIO()))
    yield d
    d.tun.close()


def test_inline_answers_are_a_token_bucket(device: Device) -> None:
    now = 100.0
    allowed = [device._may_answer_inline(now) for _ in range(INLINE_HANDSHAKE_BURST + 3)]
    assert allowed == [True] * INLINE_HANDSHAKE_BURST + [False] * 3
    assert not device._may_answer_inline(now + 0.5 / INLINE_HANDSHAKES_PER_SECOND)
    assert device._may_answer_inline(now + 1.5 / INLINE_HANDSHAKES_PER_SECOND)
    assert sum(device._may_answer_inline(now + 10.0) for _ in range(10)) == \
        INLINE_HANDSHAKE_BURST  # the bucket holds no more than its burst


def test_no_inline_answer_with_a_queue_or_under_load(device: Device) -> None:
    device._handshake_q.put_nowait((b"x", ("127.0.0.1", 1), None))
    assert not device._may_answer_inline(100.0)
    device._handshake_q.get_nowait()
    assert device.iface.under_load(10**6, 100.0)  # makes the interface remember the load
    assert not device._may_answer_inline(100.5)
    assert device._may_answer_inline(102.0)  # UNDER_LOAD_AFTER later


def test_handshake_completes_without_the_handshake_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sides answer on their datapath threads: the handshake thread never runs here."""
    monkeypatch.setattr(Device, "_handshake_worker", lambda self: None)
    a, b = Node("wgia", tmp_path), Node("wgib", tmp_path)
    try:
        configure(a, b)
        out = ipv4("10.0.0.1", "10.0.0.2", b"first packet")
        a.tun.app.send(out)
        assert b.tun.app.recv(2000) == out
        with pytest.raises(queue.Empty):
            a.device._handshake_q.get_nowait()
    finally:
        a.close()
        b.close()

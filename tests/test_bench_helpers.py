"""The pure helpers of the on-demand benchmarks (compat/bench_throughput.py,
compat/bench_handshakes.py): parsing, statistics, the table, and the client's pre-built
initiations checked against the core as a responder. No root, no timing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat import bench_throughput as bt  # noqa: E402
from compat.bench_handshakes import (  # noqa: E402
    PeerMaterial, pregenerate, sender_index, source_addresses, timestamps,
)
from wgpy import crypto  # noqa: E402
from wgpy.noise.actions import SendDatagram  # noqa: E402
from wgpy.noise.interface import Interface  # noqa: E402

PING = """PING 10.79.0.2 (10.79.0.2) 56(84) bytes of data.
64 bytes from 10.79.0.2: icmp_seq=1 ttl=64 time=5.66 ms
64 bytes from 10.79.0.2: icmp_seq=2 ttl=64 time=0.412 ms
64 bytes from 10.79.0.2: icmp_seq=4 ttl=64 time=12 ms

--- 10.79.0.2 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 150ms
rtt min/avg/max/mdev = 0.412/6.024/12.000/4.7 ms
"""


def test_parse_ping() -> None:
    assert bt.parse_ping(PING) == [5.66, 0.412, 12.0]
    assert bt.parse_ping("1 packets transmitted, 0 received, 100% packet loss") == []


def test_percentile_and_median() -> None:
    assert bt.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert bt.percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 90) \
        == pytest.approx(9.1)
    assert bt.percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        bt.percentile([], 90)
    assert bt.median([3.0, None, 1.0]) == 2.0
    assert bt.median([None]) is None
    assert bt.ratio(3.0, 2.0) == 1.5
    assert bt.ratio(None, 2.0) is None and bt.ratio(1.0, 0.0) is None


def test_iperf_parsing() -> None:
    tcp = {"end": {"sum_sent": {"bits_per_second": 9e8},
                   "sum_received": {"bits_per_second": 8.5e8, "seconds": 10.0}}}
    assert bt.iperf_tcp_mbits(tcp) == 850.0
    udp = {"end": {
        "sum": {"start": 0, "end": 1.0, "seconds": 1.0, "packets": 17948, "lost_packets": 85,
                "sender": True},
        "sum_received": {"start": 0, "end": 2.0, "seconds": 2.0, "bytes": 24865296,
                         "packets": 17948, "lost_packets": 85, "sender": False}}}
    pps, loss = bt.iperf_udp(udp)
    assert pps == (17948 - 85) / 2.0
    assert loss == pytest.approx(100 * 85 / 17948)
    older = {"end": {"sum": {"start": 0, "end": 4.0, "packets": 100, "lost_packets": 0}}}
    assert bt.iperf_udp(older) == (25.0, 0.0)


def test_summary_and_table() -> None:
    rows = [
        {"pair": "wgpy-wgpy", "tcp1_mbits": 600.0, "ping_idle_ms": 0.5},
        {"pair": "wgpy-wgpy", "tcp1_mbits": 800.0, "ping_idle_ms": 0.7},
        {"pair": "wgpy-wgpy", "tcp1_mbits": 700.0, "ping_idle_ms": 0.6},
        {"pair": "up-up", "tcp1_mbits": 1400.0, "ping_idle_ms": 0.3},
        {"pair": "wgpy-up", "tcp1_mbits": 700.0},
        {"pair": "go-go", "tcp1_mbits": 350.0},
    ]
    rows += bt.handshake_rows([
        {"impl": "wgpy", "mode": "paced", "rate": 3000.0, "responder_cores": 1.0},
        {"impl": bt.UPSTREAM, "mode": "paced", "rate": 6000.0, "responder_cores": 1.3},
    ])
    med = bt.summarize(rows)
    assert med["tcp1_mbits"] == {"wgpy-wgpy": 700.0, "up-up": 1400.0, "wgpy-up": 700.0,
                                 "go-go": 350.0}
    assert med["hs_paced"] == {"wgpy-wgpy": 3000.0, "up-up": 6000.0}
    table = bt.format_table(med, 3)
    lines = table.splitlines()
    assert "median of 3 rounds" in lines[0] and "wgpy-wgpy/up-up" in lines[0]
    assert lines[0].split()[-4:-1] == ["wgpy-wgpy/go-go", "pure-pure/go-go", "up-wgpy2/up-wgpy"]
    tcp = next(line for line in lines if line.startswith("TCP 1 stream"))
    # columns: wgpy-wgpy up-up wgpy-up up-wgpy go-go pure-pure up-wgpy2, then the ratios
    # to up-up of all but up-up, then wgpy-wgpy/go-go, pure-pure/go-go, up-wgpy2/up-wgpy
    assert tcp.split()[-17:] == ["700", "1400", "700", "-", "350", "-", "-", "0.50", "0.50",
                                "-", "0.25", "-", "-", "2.00", "-", "-", "higher"]
    hs = next(line for line in lines if line.startswith("handshakes/s as responder, paced"))
    assert "3,000" in hs and "6,000" in hs and "0.50" in hs
    assert not any(line.startswith("TCP 4 streams") for line in lines)  # no data, no line
    assert "base-base" not in table  # only a --baseline run has that column
    rows.append({"pair": "base-base", "tcp1_mbits": 560.0})
    lines = bt.format_table(bt.summarize(rows), 3).splitlines()
    assert lines[0].split()[-2:] == ["wgpy-wgpy/base-base", "better"]
    tcp = next(line for line in lines if line.startswith("TCP 1 stream"))
    assert tcp.split()[-2:] == ["1.25", "higher"]  # 700 / 560: after / before


def test_every_pair_has_a_chart_colour() -> None:
    """A --baseline run drew no chart (KeyError 'base-base') before base-base had one."""
    assert {label for label, _, _ in bt.PAIRS} <= set(bt.CHART_COLORS)


def test_process_helpers_on_ourselves() -> None:
    import os
    assert bt.cpu_seconds(os.getpid()) > 0
    assert bt.peak_rss_kib(os.getpid()) > 1000


def test_pregenerated_initiations_are_answered_by_the_core() -> None:
    responder = Interface(crypto.generate_private_key())
    keys = [crypto.generate_private_key() for _ in range(3)]
    for key in keys:
        responder.add_peer(crypto.public_key(key))
    material = [PeerMaterial.make(k, responder.identity.public) for k in keys]
    msgs = pregenerate(material, responder.identity.public, 2)
    now = 0.0
    for k in range(2):
        for p in range(3):
            now += 0.05  # past the per-peer flood guard
            msg = msgs[p][k]
            assert int.from_bytes(msg[4:8], "little") == sender_index(p, k, 3)
            out = [a for a in responder.receive(msg, ("10.215.0.1", 4000), now)
                   if isinstance(a, SendDatagram)]
            assert len(out) == 1
            response = bytes(out[0].data)
            assert material[p].check_response(msg, response)
            assert not material[p].check_response(msg, response[:50] + b"!" + response[51:])
            assert not material[(p + 1) % 3].check_response(msgs[(p + 1) % 3][k], response)
        # the same initiation again is a replay: no answer
        assert not [a for a in responder.receive(msgs[0][k], ("10.215.0.1", 4000), now + 1)
                    if isinstance(a, SendDatagram)]


def test_timestamps_and_sources() -> None:
    ts = timestamps(1_700_000_000_123_456_789, 1000)
    assert all(len(t) == 12 for t in ts) and ts == sorted(set(ts))
    srcs = source_addresses(1024)
    assert len(set(srcs)) == 1024 and srcs[0] == "10.215.0.1" and srcs[-1] == "10.215.4.24"

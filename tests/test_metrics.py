"""The Prometheus endpoint (wgpy.observe.metrics) without root: two devices in one process
over loopback UDP (tests/test_device.py's Node), scraped over HTTP and read with
prometheus_client's own parser, checked against what UAPI `get` reports."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ipv4
from test_device import Node, configure
from wgpy.observe.metrics_http import serve_metrics
from wgpy.observe import metrics, metrics_http
from wgpy.observe.metrics import MetricsError, PeerSample, Sample
from wgpy.noise.actions import DropReason

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEADLINE = 10.0


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def scrape(address: tuple[str, int], path: str = "/metrics") -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=5) as r:
        return r.headers["Content-Type"], r.read().decode()


def parse(text: str) -> tuple[dict[str, str], Series]:
    """Family name -> type, and (sample name, labels) -> value."""
    types: dict[str, str] = {}
    series: Series = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            series[(s.name, frozenset(s.labels.items()))] = s.value
    return types, series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a, b = Node("wgma", tmp_path), Node("wgmb", tmp_path)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_scrape_reports_what_get_reports(pair: tuple[Node, Node]) -> None:
    a, b = pair
    configure(a, b)
    at_a, at_b = serve_metrics(a.device, "127.0.0.1:0"), serve_metrics(b.device, "127.0.0.1:0")
    assert at_a[1] > 0 and "metrics" in {t.name for t in threading.enumerate()}
    out, back = ipv4("10.0.0.1", "10.0.0.2", b"x" * 300), ipv4("10.0.0.2", "10.0.0.1", b"y")
    for _ in range(5):
        a.tun.app.send(out)
        assert b.tun.app.recv(2000) == out
    b.tun.app.send(back)
    assert a.tun.app.recv(2000) == back

    # The counters may still move (a keepalive): the scrape between two equal `get`s.
    for _ in range(20):
        before = a.client.get()
        content_type, text = scrape(at_a)
        if a.client.get() == before:
            break
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    types, series = parse(text)
    (peer,) = before.peers
    key = dict(device="wgma", public_key=b64(b.public))
    assert peer.rx_bytes > 0 and peer.tx_bytes > 5 * 300
    assert value(series, "wireguard_peer_receive_bytes_total", **key) == peer.rx_bytes
    assert value(series, "wireguard_peer_transmit_bytes_total", **key) == peer.tx_bytes
    assert value(series, "wireguard_peer_last_handshake_seconds", **key) == \
        peer.last_handshake_time_sec > 1_600_000_000
    port_b = b.client.get().listen_port
    info = dict(key, allowed_ips="10.0.0.2/32", endpoint=f"127.0.0.1:{port_b}")
    assert value(series, "wireguard_peer_info", **info) == 1
    assert value(series, "wireguard_device_info", device="wgma", public_key=b64(a.public)) == 1
    # prometheus_client names a counter's family without `_total`, its samples with it.
    assert types["wireguard_peer_receive_bytes"] == "counter"
    assert types["wireguard_peer_last_handshake_seconds"] == "gauge"
    assert value(series, "wgpy_peer_staged_packets", **key) == 0
    assert value(series, "wgpy_queue_length", device="wgma", queue="handshake") == 0
    assert value(series, "wgpy_queue_length", device="wgma", queue="proven_handshake") == 0

    # a initiated, b responded: each side counted what it sent and what it got.
    _, at_b_series = parse(scrape(at_b)[1])
    for side, sent, got in ((series, "initiation", "response"),
                            (at_b_series, "response", "initiation")):
        dev = "wgma" if side is series else "wgmb"
        assert value(side, "wgpy_handshakes_sent_total", device=dev, type=sent) >= 1
        assert value(side, "wgpy_handshakes_received_total", device=dev, type=got) >= 1
        assert value(side, "wgpy_handshakes_sent_total", device=dev, type=got) == 0
        assert value(side, "wgpy_handshakes_received_total", device=dev, type=sent) == 0
        assert value(side, "wgpy_handshakes_sent_total", device=dev, type="cookie_reply") == 0


def test_drops_are_counted_by_reason(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    at = serve_metrics(a.device, "127.0.0.1:0")

    def dropped(reason: str) -> float:
        return value(parse(scrape(at)[1])[1], "wgpy_dropped_packets_total", device="wgma",
                     reason=reason)

    assert dropped("invalid_message") == 0 and dropped("unknown_index") == 0
    port = a.client.get().listen_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x07garbage", ("127.0.0.1", port))  # no message type 7
        s.sendto(b"\x07garbage", ("127.0.0.1", port))
        s.sendto(bytes([4, 0, 0, 0]) + os.urandom(28), ("127.0.0.1", port))  # no such index
    wait_for(lambda: dropped("invalid_message") == 2 and dropped("unknown_index") == 1,
             "two invalid messages and one unknown index counted")
    _, series = parse(scrape(at)[1])
    reasons = {dict(labels)["reason"] for name, labels in series
               if name == "wgpy_dropped_packets_total"}
    assert reasons == {r.name.lower() for r in DropReason}  # every reason, 0 or not


def test_staged_packets_and_404(pair: tuple[Node, Node]) -> None:
    a, b = pair
    at = serve_metrics(a.device, "127.0.0.1:0")
    a.client.set([f"private_key={a.private.hex()}", "public_key=" + b.public.hex(),
                  "allowed_ip=10.0.0.2/32"])  # no endpoint: what it is sent waits
    a.tun.app.send(ipv4("10.0.0.1", "10.0.0.2"))
    a.tun.app.send(ipv4("10.0.0.1", "10.0.0.2"))
    staged = dict(device="wgma", public_key=b64(b.public))
    wait_for(lambda: value(parse(scrape(at)[1])[1], "wgpy_peer_staged_packets", **staged) == 2,
             "two packets staged")
    assert value(parse(scrape(at)[1])[1], "wireguard_peer_info", allowed_ips="10.0.0.2/32",
                 endpoint="", **staged) == 1
    with pytest.raises(urllib.error.HTTPError) as caught:
        scrape(at, "/")
    assert caught.value.code == 404


def test_the_server_stops_with_the_device(tmp_path: Path) -> None:
    node = Node("wgmc", tmp_path)
    try:
        at = serve_metrics(node.device, "127.0.0.1:0")
        assert "wireguard_device_info" in scrape(at)[1]
    finally:
        node.close()
    assert "metrics" not in {t.name for t in threading.enumerate()}
    with pytest.raises(OSError):
        scrape(at)


def test_a_slow_client_delays_neither_scrapes_nor_close(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that trickles its request (each byte restarting a per-read timeout) held
    the one-at-a-time server: the next scrape timed out and close waited for it."""
    monkeypatch.setattr(metrics_http, "METRICS_CLIENT_DEADLINE", 1.0)
    node = Node("wgms", tmp_path)
    slow: list[socket.socket] = []
    try:
        at = serve_metrics(node.device, "127.0.0.1:0")
        for _ in range(metrics_http.METRICS_MAX_CLIENTS + 2):  # more than it serves at once
            sock = socket.create_connection(at, timeout=5)
            sock.sendall(b"G")
            slow.append(sock)
        start = time.monotonic()
        deadline = start + 5
        while True:  # the extra ones were closed; once the slow ones are cut, scrapes work
            try:
                assert "wireguard_device_info" in scrape(at)[1]
                break
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, "no scrape served within 5 s"
                time.sleep(0.1)
        assert time.monotonic() - start < 3
        assert slow[0].recv(100) == b""  # cut by the deadline, not served
    finally:
        start = time.monotonic()
        node.close()
        closed_in = time.monotonic() - start
        for sock in slow:
            sock.close()
    assert closed_in < 2


def test_render_escapes_label_values() -> None:
    name = 'we"ird\\dev\nice'
    sample = Sample(name, None, [PeerSample(b"\x01" * 32, 7, 9, 0.0, None, [], 0)], {}, {}, {},
                    {"handshake": 3})
    _, series = parse(metrics.render(sample))
    key = dict(device=name, public_key=b64(b"\x01" * 32))
    assert value(series, "wireguard_peer_receive_bytes_total", **key) == 7
    assert value(series, "wireguard_peer_transmit_bytes_total", **key) == 9
    assert value(series, "wireguard_peer_last_handshake_seconds", **key) == 0
    assert value(series, "wireguard_device_info", device=name, public_key="") == 1
    assert value(series, "wgpy_queue_length", device=name, queue="handshake") == 3


def test_addresses() -> None:
    assert metrics.parse_address("127.0.0.1:9586") == ("127.0.0.1", 9586)
    assert metrics.parse_address("[::1]:9586") == ("::1", 9586)
    assert metrics.parse_address("localhost:0") == ("localhost", 0)
    for bad in ("127.0.0.1", ":9586", "::1:9586", "127.0.0.1:http", "127.0.0.1:65536", ""):
        with pytest.raises(MetricsError):
            metrics.parse_address(bad)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MetricsError, match="in use"):
            metrics.bind(f"127.0.0.1:{taken.getsockname()[1]}")
    with pytest.raises(MetricsError, match="resolve"):
        metrics.bind("no-such-host.invalid:9586")
    with pytest.raises(MetricsError, match="cannot listen"):
        metrics.bind("192.0.2.1:9586")  # TEST-NET-1: not an address of ours


@pytest.mark.parametrize("address", ["127.0.0.1", "[::1]9586", "no-such-host.invalid:1",
                                     "in use"])
def test_the_daemon_refuses_a_bad_address(address: str) -> None:
    """Before it creates anything (so no root needed): one line on stderr, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if address == "in use":
            address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = dict(os.environ, WGPY_METRICS_ADDRESS=address, LOG_LEVEL="verbose")
        done = subprocess.run([sys.executable, "-m", "wgpy", "-f", f"wgbad{os.getpid()}"[:15]],
                              env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith("wgpy: WGPY_METRICS_ADDRESS=") and done.stderr.count("\n") == 1
    assert done.stdout == ""

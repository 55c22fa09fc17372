"""The public API's edges (docs/api.md runs its happy paths): keys in every spelling and
none leaked, bad configuration refused with wireguard-go's errno and nothing lost, drops
counted, a handshake that cannot complete, a ping that gets no reply, packets kept while
a ping waits, clean close, and `import wgpy` staying cheap for the daemon."""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import wgpy
from uapi.errors import EINVAL, UapiError
from wgpy.api.embedded import key_bytes
from wgpy.packets import echo_reply_for, echo_request


@contextlib.contextmanager
def server_and_tunnel(name: str | None = None, **device: Any
                      ) -> Iterator[tuple[wgpy.Device, wgpy.Tunnel, bytes]]:
    """An in-memory server device allowing 10.4.0.2/32 for the client, and a wgpy.Tunnel
    client (10.4.0.2) to it over loopback; yields them and the server's private key."""
    server_key, client_key = wgpy.generate_private_key(), wgpy.generate_private_key()
    with wgpy.Device.in_memory(name, **device) as server:
        server.configure(private_key=server_key, peers=[wgpy.PeerConfig(
            wgpy.public_key(client_key), allowed_ips=["10.4.0.2/32"])])
        with wgpy.Tunnel(client_key, wgpy.public_key(server_key),
                         ("127.0.0.1", server.listen_port), address="10.4.0.2") as t:
            yield server, t, server_key


def test_keys_are_taken_raw_base64_or_hex_and_bad_ones_never_echoed() -> None:
    key = wgpy.generate_private_key()
    assert key_bytes(key) == key_bytes(base64.b64encode(key).decode()) == key_bytes(key.hex())
    bad = base64.b64encode(key).decode()[:-2] + "!="
    with pytest.raises(ValueError) as caught:
        key_bytes(bad)
    assert bad not in str(caught.value) and key.hex() not in str(caught.value)
    with pytest.raises(ValueError):
        key_bytes(key[:31])


def test_a_bad_line_is_refused_with_einval_and_what_came_before_stays() -> None:
    peer_key = wgpy.public_key(wgpy.generate_private_key())
    with wgpy.Device.in_memory("wgapi0") as dev:
        with pytest.raises(UapiError) as caught:
            dev.configure(private_key=wgpy.generate_private_key(), peers=[wgpy.PeerConfig(
                peer_key, allowed_ips=["10.1.0.0/16"], endpoint="no-port-here")])
        assert caught.value.errno == EINVAL
        state = dev.state()  # wireguard-go: a set is applied line by line, not undone
        assert state.private_key is not None and [p.public_key for p in state.peers] == [
            peer_key]
        dev.configure(peers=[wgpy.PeerConfig(peer_key, remove=True)])
        assert dev.state().peers == []


def test_replace_allowed_ips_is_the_default_and_can_be_turned_off() -> None:
    peer_key = wgpy.public_key(wgpy.generate_private_key())
    with wgpy.Device.in_memory("wgapi1") as dev:
        dev.configure(peers=[wgpy.PeerConfig(peer_key, allowed_ips=["10.1.0.0/24"])])
        dev.configure(peers=[wgpy.PeerConfig(peer_key, allowed_ips=["10.2.0.0/24"])])
        assert [str(n) for n in dev.state().peers[0].allowed_ips] == ["10.2.0.0/24"]
        dev.configure(peers=[wgpy.PeerConfig(peer_key, allowed_ips=["fd00::/64"],
                                             replace_allowed_ips=False)])
        assert [str(n) for n in dev.state().peers[0].allowed_ips] == ["10.2.0.0/24",
                                                                       "fd00::/64"]


def test_a_packet_with_no_peer_for_its_destination_is_dropped_and_counted() -> None:
    with wgpy.Device.in_memory("wgapi2") as dev:
        dev.configure(private_key=wgpy.generate_private_key())
        dev.write_packet(echo_request("10.0.0.1", "10.0.0.2", 1, 1, b"x"))
        deadline = time.monotonic() + 5
        while dev.drops.get("NO_ROUTE", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dev.drops.get("NO_ROUTE") == 1


def test_handshake_with_nobody_listening_reports_false_in_time() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes datagrams, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        with wgpy.Tunnel(wgpy.generate_private_key(), wgpy.public_key(
                wgpy.generate_private_key()), silent.getsockname(), address="10.9.0.2") as t:
            start = time.monotonic()
            assert t.handshake(timeout=0.3) is False
            assert time.monotonic() - start < 2
            silent.settimeout(2)
            assert len(silent.recv(2048)) == 148  # it did send an initiation
            with pytest.raises(TimeoutError):
                t.ping("10.9.0.1", timeout=0.2)
            with pytest.raises(KeyError):
                t.device.handshake(wgpy.public_key(wgpy.generate_private_key()), 0.1)
    finally:
        silent.close()


def test_packets_that_arrive_while_ping_waits_are_kept_for_receive() -> None:
    with server_and_tunnel("wgapi3") as (server, t, _):
        assert t.handshake()
        other = echo_request("10.4.0.1", "10.4.0.2", 77, 5, b"first")
        server.write_packet(other)  # arrives before the reply ping waits for
        request_seen: list[bytes] = []

        def answer() -> None:
            request = server.read_packet(5)
            request_seen.append(request)
            server.write_packet(echo_reply_for(request))

        helper = threading.Thread(target=answer)
        helper.start()
        rtt = t.ping("10.4.0.1", timeout=5)
        helper.join(5)
        assert 0 < rtt < 5 and len(request_seen) == 1
        assert t.receive(1) == other


def test_ping_needs_an_ipv4_tunnel_address() -> None:
    with wgpy.Tunnel(wgpy.generate_private_key(), wgpy.public_key(wgpy.generate_private_key()),
                     "127.0.0.1:9", address="fd00::2") as t:
        with pytest.raises(ValueError):
            t.ping("fd00::1")


def test_close_frees_the_port_and_may_be_called_twice() -> None:
    dev = wgpy.Device.in_memory("wgapi4")
    dev.configure(listen_port=0)
    port = dev.listen_port
    dev.close()
    dev.close()
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        again.bind(("0.0.0.0", port))
    finally:
        again.close()


def test_import_wgpy_loads_no_device_code() -> None:
    code = ("import sys, wgpy; print(sorted(m for m in sys.modules if m.startswith("
            "('wgpy.', 'pyroute2', 'cryptography'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == "[]"
    assert "Device" in dir(wgpy) and wgpy.Device.__module__ == "wgpy.api.embedded"


def test_importing_the_daemon_loads_no_pyroute2() -> None:
    """pyroute2 (some 16 MiB resident) is loaded by the link's thread when a daemon or a
    kernel-TUN Device starts, not by importing wgpy.cli or the link's modules: tools and
    in-memory Devices never pay for it."""
    code = ("import sys, wgpy.cli, wgpy.link.netlink, wgpy.device.tun, wgpy.link.rtnetlink; "
            "print(sorted(m for m in sys.modules if m.startswith('pyroute2')), "
            "'wgpy.link.netlink' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.split() == ["[]", "True"]


def test_an_embedded_device_writes_the_key_log_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    with server_and_tunnel("wgapi5", keylog=str(path)) as (_, t, server_key):
        assert t.handshake()
    lines = path.read_text().splitlines()
    assert [line.split(" = ")[0] for line in lines] == [
        "LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY", "LOCAL_EPHEMERAL_PRIVATE_KEY",
        "PRESHARED_KEY"]  # one block: the server created one response
    assert lines[0] == f"LOCAL_STATIC_PRIVATE_KEY = {base64.b64encode(server_key).decode()}"
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_embedded_device_serves_metrics_and_logs_through_logging(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="wgpy"):
        with wgpy.Device.in_memory("wgapi6") as dev:
            dev.configure(private_key=wgpy.generate_private_key(), peers=[wgpy.PeerConfig(
                wgpy.public_key(wgpy.generate_private_key()), allowed_ips=["10.6.0.2/32"])])
            host, port = dev.serve_metrics()
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"wireguard_peer_receive_bytes", "wireguard_peer_last_handshake_seconds"} <= names
    records = [r for r in caplog.records if r.name == "wgpy.device"]
    assert records and all(getattr(r, "interface", None) == "wgapi6" for r in records)


def test_a_closed_device_refuses_configuration_and_wakes_its_reader() -> None:
    """Review findings: configure after close bound new sockets nobody closed; a reader
    waiting without a timeout stayed blocked after close; read(0) raised BlockingIOError."""
    dev = wgpy.Device.in_memory()
    assert dev.stopped is None
    with pytest.raises(TimeoutError):
        dev.read_packet(timeout=0)
    woke: list[BaseException] = []

    def reader() -> None:
        try:
            dev.read_packet(timeout=None)
        except BaseException as exc:  # what the reader saw is the assertion below
            woke.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    dev.close()
    thread.join(5)
    assert not thread.is_alive() and len(woke) == 1 and isinstance(woke[0], EOFError)
    assert dev.stopped == "closed"
    with pytest.raises(RuntimeError):
        dev.configure(listen_port=0)
    with pytest.raises(EOFError):
        dev.write_packet(b"\x45" + bytes(19))
    with pytest.raises(RuntimeError):
        dev.handshake(wgpy.public_key(wgpy.generate_private_key()))


def test_devices_get_names_of_their_own() -> None:
    with wgpy.Device.in_memory() as a, wgpy.Device.in_memory() as b:
        assert a.name != b.name and a.name.startswith("wgpy")


def test_configure_leaves_what_it_is_not_given_as_wg_set_does() -> None:
    peer_key = wgpy.public_key(wgpy.generate_private_key())
    with wgpy.Device.in_memory() as dev:
        dev.configure(peers=[wgpy.PeerConfig(peer_key, allowed_ips=["10.1.0.0/24"])])
        dev.configure(peers=[wgpy.PeerConfig(peer_key, endpoint="127.0.0.1:9")])
        peer = dev.state().peers[0]
        assert [str(n) for n in peer.allowed_ips] == ["10.1.0.0/24"]
        assert peer.endpoint == ("127.0.0.1", 9)
        assert peer.preshared_key is None  # as uapi.Client reports no preshared key
        dev.configure(peers=[wgpy.PeerConfig(peer_key, allowed_ips=[])])
        assert dev.state().peers[0].allowed_ips == []


def test_a_second_handshake_call_soon_after_reports_the_session_at_once() -> None:
    with server_and_tunnel() as (_, t, _):
        assert t.handshake(timeout=5)
        start = time.monotonic()
        assert t.handshake(timeout=2)  # within REKEY_TIMEOUT: no initiation is sent
        assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("reply_first", [True, False])
def test_receive_in_one_thread_never_takes_the_reply_a_ping_waits_for(
        reply_first: bool) -> None:
    """A thread blocked in receive() while a ping waits in another: both read from the
    device, so the receive could take the echo reply (the ping timed out), and a packet
    the ping's thread set aside stayed in the backlog while the receive waited on the
    device (it timed out: failed before with the other packet first). Now the reply goes
    to the ping and the other packet to receive, in either order."""
    with server_and_tunnel("wgapi7") as (server, t, _):
        assert t.handshake()
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(t.receive(2)))
        reader.start()
        time.sleep(0.2)  # the reader is waiting on the device
        other = echo_request("10.4.0.1", "10.4.0.2", 78, 9, b"other")

        def answer() -> None:
            request = server.read_packet(5)
            first, second = ((echo_reply_for(request), other) if reply_first
                             else (other, echo_reply_for(request)))
            server.write_packet(first)
            time.sleep(0.2)
            server.write_packet(second)

        helper = threading.Thread(target=answer)
        helper.start()
        rtt = t.ping("10.4.0.1", timeout=3)
        helper.join(5)
        reader.join(5)
        assert 0 < rtt < 3
        assert received == [other]


def test_peer_of_a_tunnel_whose_peer_was_removed_is_a_lookup_error() -> None:
    server_key = wgpy.generate_private_key()
    with wgpy.Tunnel(wgpy.generate_private_key(), wgpy.public_key(server_key),
                     ("127.0.0.1", 9), address="10.4.0.2") as t:
        assert t.peer().public_key == wgpy.public_key(server_key)
        t.device.set([f"public_key={wgpy.public_key(server_key).hex()}", "remove=true"])
        with pytest.raises(LookupError, match="removed"):
            t.peer()

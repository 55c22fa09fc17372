"""`wgpy.Network`: TCP and UDP through two in-process `wgpy.Tunnel`s over loopback, no root.

Tunnel A (10.50.0.1) listens; tunnel B (10.50.0.2) knows A's port and starts the
handshake, A learns B's endpoint from it. Each has a Network on its tunnel, so every byte
crosses WireGuard and the userspace TCP/IP stack twice."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import threading
from typing import Iterator

import pytest

import wgpy

A, B = "10.50.0.1", "10.50.0.2"


@contextlib.contextmanager
def two_networks() -> Iterator[tuple[wgpy.Network, wgpy.Network]]:
    key_a, key_b = wgpy.generate_private_key(), wgpy.generate_private_key()
    with wgpy.Tunnel(key_a, wgpy.public_key(key_b), ("127.0.0.1", 9), address=A) as ta:
        with wgpy.Tunnel(key_b, wgpy.public_key(key_a), ("127.0.0.1", ta.listen_port),
                         address=B) as tb:
            assert tb.handshake(5)
            with wgpy.Network(ta) as na, wgpy.Network(tb) as nb:
                yield na, nb


def test_blocking_tcp_both_ways() -> None:
    data = random.Random(1).randbytes(2_000_000)
    with two_networks() as (na, nb):
        listener = na.listen(80)
        result: dict[str, bytes] = {}

        def serve() -> None:
            with listener.accept(timeout=10) as sock:
                sock.timeout = 30
                got = bytearray()
                while chunk := sock.recv(65536):
                    got += chunk
                sock.sendall(hashlib.sha256(got).digest())
                result["got"] = bytes(got)

        server = threading.Thread(target=serve)
        server.start()
        with nb.create_connection((A, 80), timeout=10) as sock:
            sock.timeout = 30
            sock.sendall(data)
            sock.shutdown_write()
            reply = b""
            while chunk := sock.recv(100):
                reply += chunk
        server.join(30)
        assert result["got"] == data
        assert reply == hashlib.sha256(data).digest()


def test_a_closed_port_is_refused_and_says_where() -> None:
    with two_networks() as (_, nb):
        with pytest.raises(ConnectionRefusedError) as refused:
            nb.create_connection((A, 81), timeout=10)
        assert "10.50.0.1 port 81" in str(refused.value)


def test_ping_answered_by_the_stack_while_a_network_reads_the_tunnel() -> None:
    """The peer's stack answers; Tunnel.receive_batch leaves the reply to the ping."""
    with two_networks() as (na, nb):
        nb.stack.udp_open(5)  # some traffic for the network thread meanwhile
        for _ in range(5):
            assert nb.tunnel.ping(A, timeout=5) < 5
        assert na.stack.drops == {}


def test_udp_round_trip() -> None:
    with two_networks() as (na, nb):
        server, client = na.udp(53), nb.udp()
        client.sendto(b"question", (A, 53))
        data, source = server.recvfrom(timeout=10)
        assert (data, source) == (b"question", (B, client.port))
        server.sendto(b"answer", source)
        assert client.recvfrom(timeout=10) == (b"answer", (A, 53))


def test_asyncio_hundred_concurrent_connections() -> None:
    async def main(na: wgpy.Network, nb: wgpy.Network) -> list[bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()
            writer.write(hashlib.sha256(data).digest())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await na.start_server(echo, 7)

        async def one(i: int) -> bytes:
            reader, writer = await nb.open_connection(A, 7)
            writer.write(random.Random(i).randbytes(20_000))
            await writer.drain()
            writer.write_eof()
            digest = await reader.read()
            writer.close()
            await writer.wait_closed()
            return digest

        try:
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 120)
        finally:
            server.close()

    with two_networks() as (na, nb):
        digests = asyncio.run(main(na, nb))
    assert digests == [hashlib.sha256(random.Random(i).randbytes(20_000)).digest()
                       for i in range(100)]


def test_closing_frees_every_thread_and_fd() -> None:
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    with two_networks() as (na, nb):
        listener = na.listen(80)
        sock = nb.create_connection((A, 80), timeout=10)
        accepted = listener.accept(timeout=10)
        sock.sendall(b"x")
        assert accepted.recv(1) == b"x"
        assert threading.active_count() > threads
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds
    with pytest.raises(OSError):
        sock.sendall(b"after the end")


def test_a_peer_that_goes_away_ends_in_timeout_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from wgpy.netstack import tcp  # noqa: PLC0415
    monkeypatch.setattr(tcp, "TCP_RETRIES", 3)
    with two_networks() as (na, nb):
        listener = na.listen(80)
        sock = nb.create_connection((A, 80), timeout=10)
        listener.accept(timeout=10)
        na.tunnel.close()  # the far side is gone (before its network could reset anything)
        na.close()
        sock.timeout = 30
        sock.sendall(b"into the void")
        with pytest.raises(TimeoutError) as caught:
            sock.recv(10)
        assert "timed out" in str(caught.value) and "10.50.0.1 port 80" in str(caught.value)

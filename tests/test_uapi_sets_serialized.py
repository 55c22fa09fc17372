"""Two clients' UAPI sets never interleave (wireguard-go's ipcMutex): one set holds the
configuration from its first line to its blank line, and a set that stalls loses it."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from test_device import Node

from wgpy.ipc import server as ipc

X = "11" * 32


def _connect(node: Node) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(node.client.path)
    return sock


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node("wgser", tmp_path)
    yield n
    n.close()


def test_replace_peers_waits_for_a_set_in_progress(node: Node) -> None:
    slow = _connect(node)
    slow.sendall(f"set=1\npublic_key={X}\n".encode())
    time.sleep(0.3)  # the daemon has applied public_key: the peer exists
    replies: list[bytes] = []

    def replace_all() -> None:
        with _connect(node) as other:
            other.sendall(b"set=1\nreplace_peers=true\n\n")
            replies.append(_reply(other))

    thread = threading.Thread(target=replace_all)
    thread.start()
    time.sleep(0.3)
    assert not replies  # it waits for the first set to end
    slow.sendall(b"allowed_ip=10.0.0.0/8\n\n")
    assert _reply(slow) == b"errno=0\n\n"
    thread.join(10)
    assert replies == [b"errno=0\n\n"]
    slow.close()
    # replace_peers ran after the whole first set: the peer is gone with its prefixes, and
    # nothing routes to a peer that get does not list.
    assert node.client.get().peers == []
    with node.device.lock:
        assert node.device.iface.allowed_ips.lookup(
            ipaddress.ip_address("10.1.2.3").packed) is None


def test_a_stalled_set_frees_the_configuration(node: Node,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipc, "SET_DEADLINE", 0.5)
    stalled = _connect(node)
    stalled.sendall(f"set=1\npublic_key={X}\n".encode())  # and never ends it
    time.sleep(0.2)
    start = time.monotonic()
    node.client.set(["listen_port=0"])  # waits for the stalled set's deadline, no longer
    assert time.monotonic() - start < 5
    assert stalled.recv(100) == b""  # the daemon closed the stalled connection
    stalled.close()
    assert [p.public_key.hex() for p in node.client.get().peers] == [X]

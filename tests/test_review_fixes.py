"""Fixes from the issue 9 review, each pinned by a test that failed before it: unknown
IPv6 zones, secrets in logs, errors and reprs, repeated UDP receive errors, send errors
by cause, and the header and checksum rules of TCP coalescing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_device import Node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node("wgrf", tmp_path)
    try:
        yield n
    finally:
        n.close()


def _raw(node: Node, data: bytes, replies: int, timeout: float = 3.0) -> bytes:
    """Send `data` on one connection and read until `replies` replies have come."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(node.client.path)
        sock.sendall(data)
        out = b""
        while out.count(b"\n\n") < replies:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


# --- 1. an unknown IPv6 zone ---------------------------------------------------------------------

def test_unknown_zone_is_einval_and_the_connection_keeps_serving(node: Node) -> None:
    peer = "ab" * 32
    out = _raw(node, (f"set=1\npublic_key={peer}\nendpoint=[fe80::1%nosuchif0]:51820\n"
                      "allowed_ip=10.1.0.0/16\n\nget=1\n\n").encode(), 2)
    first, _, second = out.partition(b"\n\n")
    assert first == b"errno=-22"  # what wireguard-go's Linux bind answers (zoneToUint32)
    assert second.endswith(b"errno=0\n\n") and f"public_key={peer}".encode() in second
    assert b"allowed_ip" not in second  # the rest of the failed set was skipped
    # A fresh connection is served too (the set's lock was released) ...
    assert [p.public_key.hex() for p in node.client.get().peers] == [peer]
    # ... a zone that is a number or an interface name is taken ...
    node.client.set([f"public_key={peer}", "endpoint=[fe80::1%lo]:51820"])
    node.client.set([f"public_key={peer}", "endpoint=[fe80::1%7]:51820"])
    # ... and nothing escaped as an exception.
    assert "connection failed" not in node.log.getvalue()
    assert not node.device.stopped.is_set()

"""wgpy's pytest plugin: fixtures for interoperability tests, loaded through the `pytest11`
entry point `wgpy` of the installed package (`-p no:wgpy` turns it off).

It only offers fixtures: no hooks, no options, no markers, so another project's test run is
unchanged unless one of its tests asks for a `wg_` fixture. Every fixture is function
scoped and builds on `wg_lab`, whose teardown (daemons stopped by pid, interfaces, sockets
and namespaces deleted) runs after the test whether it passed, failed or errored, and also
when a later fixture's setup failed half-way.

Root, `ip`, `wg`, `ping` and /dev/net/tun are needed (`wg_wireguard_go_peer` and `wg_tunnel`
also need `wireguard-go` on PATH): without them the fixtures skip with the reason, or fail
instead when the environment sets WGPY_REQUIRE_ROOT=1 (so that CI cannot pass by skipping).
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from wgpy.testing.keys import KeyPair
from wgpy.testing.lab import BASE_TOOLS, Daemon, Lab, LabTunnel, NamespacePair, missing_requirement

__all__ = ["require", "wg_lab", "wg_keys", "wg_namespaces", "wg_wgpy_peer",
           "wg_wireguard_go_peer", "wg_tunnel"]


def require(*tools: str) -> None:
    """Skip the test (or fail it, under WGPY_REQUIRE_ROOT=1) unless root with `tools`."""
    reason = missing_requirement(*tools)
    if reason is None:
        return
    if os.environ.get("WGPY_REQUIRE_ROOT") == "1":
        pytest.fail(f"WGPY_REQUIRE_ROOT=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def wg_lab() -> Iterator[Lab]:
    """A `Lab`, closed after the test: everything built through it is removed."""
    require(*BASE_TOOLS)
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def wg_keys() -> Callable[[], KeyPair]:
    """A factory of fresh key pairs: `wg_keys()` -> KeyPair (.private, .public, and
    .private_b64, .public_b64 as `wg` prints them). Needs no root."""
    return KeyPair.generate


@pytest.fixture
def wg_namespaces(wg_lab: Lab) -> NamespacePair:
    """Two namespaces `a` and `b` joined by a veth with generated IPv4 and IPv6 addresses."""
    return wg_lab.namespace_pair()


@pytest.fixture
def wg_wireguard_go_peer(wg_lab: Lab, wg_namespaces: NamespacePair) -> Daemon:
    """wireguard-go in namespace `b`, configured (key, port 51820, tunnel addresses), up,
    without peers. Skips when wireguard-go is not installed (fails under
    WGPY_REQUIRE_ROOT=1)."""
    require(*BASE_TOOLS, "wireguard-go")
    return wg_lab.start_peer(wg_namespaces.b, "wireguard-go")


@pytest.fixture
def wg_wgpy_peer(wg_lab: Lab, wg_namespaces: NamespacePair) -> Daemon:
    """wgpy in namespace `a`, configured (key, port 51820, tunnel addresses), up, without
    peers."""
    return wg_lab.start_peer(wg_namespaces.a, "wgpy")


@pytest.fixture
def wg_tunnel(wg_lab: Lab, wg_namespaces: NamespacePair, wg_wireguard_go_peer: Daemon,
              wg_wgpy_peer: Daemon) -> LabTunnel:
    """`wg_wgpy_peer` (tunnel.a) and `wg_wireguard_go_peer` (tunnel.b) as peers of each
    other, each with the other's endpoint on the veth (IPv4): ready to ping."""
    return wg_lab.connect(wg_namespaces, wg_wgpy_peer, wg_wireguard_go_peer)

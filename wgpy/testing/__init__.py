"""Test tooling for WireGuard interoperability: a lab of network namespaces, veth links and
WireGuard daemons (wgpy, and wireguard-go when installed), and pytest fixtures built on it.

Theory of operation. `Lab` (wgpy.testing.lab) creates everything a test needs as root with
the stock tools (`ip netns`, `ip link ... type veth`, the wgpy or wireguard-go daemon run in
the foreground under a Popen the lab owns, configured by `wg set`), records it, and removes
it again in `close`: daemons stopped by pid, then interfaces, their UAPI sockets and the
namespaces. Names carry the pid and a counter; addresses and keys are generated. The pytest
plugin (wgpy.testing.plugin, the `pytest11` entry point `wgpy`) wraps a lab per test in the
fixture `wg_lab` and builds the others on it, so teardown follows every test even when it
fails. The plugin only adds fixtures; `-p no:wgpy` turns it off. The page docs/testing.md
of the repository describes the fixtures; its example, run by the project's CI, starts so:

    from wgpy.testing import LabTunnel, endpoint


    def test_ping_both_ways(wg_tunnel: LabTunnel) -> None:
        wgpy, go = wg_tunnel.a, wg_tunnel.b
        for src, dst in ((wgpy, go), (go, wgpy)):
            for family in (4, 6):
                ping = wg_tunnel.ping(src, dst, family)
                assert ping.returncode == 0, ping.stdout + wg_tunnel.logs()
        peer = wgpy.dump().peer(go.public_key_b64)
        assert peer.latest_handshake > 0 and peer.rx_bytes > 0 and peer.tx_bytes > 0
        assert peer.endpoint == endpoint(wg_tunnel.namespaces.b_addresses[0], go.port)

This package may run subprocesses and open sockets: it is test tooling, not the sans-IO
core (tests/test_layering.py allows it).
"""

from wgpy.testing.keys import KeyPair, b64
from wgpy.testing.lab import (
    Daemon, InterfaceDump, Lab, LabTunnel, Namespace, NamespacePair, PeerDump, Subnet,
    endpoint, missing_requirement, wgpy_command,
)

__all__ = ["Lab", "Namespace", "NamespacePair", "Daemon", "LabTunnel", "InterfaceDump",
           "PeerDump", "Subnet", "KeyPair", "b64", "endpoint", "missing_requirement",
           "wgpy_command"]

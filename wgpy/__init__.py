"""wgpy: WireGuard in Python, a drop-in for wireguard-go driven by `wg` and `wg-quick`."""

__version__ = "0.1.0"

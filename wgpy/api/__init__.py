"""The embedding API: a WireGuard interface inside a Python program (`embedded.Device`, on a
kernel TUN or in memory) and `tunnel.Tunnel`, a socket-like pair of in-memory peers.
`wgpy.Device`, `wgpy.PeerConfig` and `wgpy.Tunnel` name them.
"""

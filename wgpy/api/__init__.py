"""The embedding API: a WireGuard interface inside a Python program (`embedded.Device`, on a
kernel TUN or in memory), `tunnel.Tunnel`, a socket-like pair of in-memory peers, and
`network.Network`, TCP and UDP sockets through a tunnel. `wgpy.Device`, `wgpy.PeerConfig`,
`wgpy.Tunnel` and `wgpy.Network` name them.
"""

"""The engine: one WireGuard interface's threads, moving bytes between the TUN, the UDP
sockets and the sans-IO core.

`device` owns the peers' runtime state and the threads (the datapath thread, the handshake
worker, timers); `inbound` is its receive path; `bind` the UDP sockets, `tun` and `memtun`
the two kinds of TUN; `config` applies a UAPI `set` to it; `threads`, `clock` and `log` are
what every room uses. The engine imports only the core: the link (wgpy.link), the UAPI
server (wgpy.ipc), observability (wgpy.observe) and the embedding API (wgpy.api) build on it,
never the other way round (tests/test_layering.py).
"""

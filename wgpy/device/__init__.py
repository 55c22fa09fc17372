"""Threads and I/O: the thin layer that moves bytes between fds and the sans-IO core.

This package is the only place (with `wgpy/cli.py`) that touches sockets, threads, fds,
the clock and netlink.
"""

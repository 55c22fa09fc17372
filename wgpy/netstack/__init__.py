"""A userspace TCP/IP stack over whole IP packets: sockets through a tunnel without a TUN.

The stack is core, sans-IO like the Noise core: `Stack` (stack.py) takes IP packets and
`now` and hands back IP packets; `Connection` (tcp.py) is one TCP connection, RFC 9293 with
Reno/NewReno; `segment.py` is the TCP header and its options; `ip.py` the IPv4/IPv6
headers and checksums. wgpy.api.netstack drives it over a `wgpy.Tunnel` with threads,
blocking sockets and asyncio streams.
"""

from wgpy.netstack.stack import Listener, Stack, UdpEndpoint
from wgpy.netstack.tcp import Connection, State

__all__ = ["Stack", "Listener", "UdpEndpoint", "Connection", "State"]

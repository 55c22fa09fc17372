"""An in-memory packet interface in place of a TUN, for programs and tests without root.

Theory of operation: the device's threads wait on fds and read and write whole IP packets,
one per read or write. A datagram socketpair gives them exactly that without /dev/net/tun
(wireguard-go's `tuntest` channel TUN plays the same part): the device holds one end, as it
would hold the TUN's fd, and the program holds the other. What the program `write`s is a
packet "the operating system" routed into the interface, which the device encrypts and
sends to the peer whose allowed IPs hold its destination; what the program `read`s is a
packet the device decrypted from a peer, which a real TUN would hand to the kernel.

There are no virtio-net headers (no TCP coalescing) and no netlink: the MTU is whatever
the owner sets, and the link is up when the owner says so (`Device.set_up`).
"""

from __future__ import annotations

import os
import socket

from wgpy.constants import DEFAULT_MTU
from wgpy.device.tun import Tun

__all__ = ["MemoryTun"]


class MemoryTun(Tun):
    """A TUN whose other side is this process: `write` packets in, `read` packets out."""

    def __init__(self, name: str, mtu: int = DEFAULT_MTU) -> None:
        self.app, self._dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        os.set_blocking(self._dev.fileno(), False)
        super().__init__(self._dev.fileno(), name, vnet_hdr=False)
        self._mtu = mtu
        self.app.settimeout(5.0)

    def mtu(self) -> int:
        return self._mtu

    def set_mtu(self, mtu: int) -> None:
        self._mtu = mtu

    def write(self, packet: bytes) -> None:
        """Hand the device one IP packet, as the kernel does when it routes one into a TUN."""
        self.app.send(packet)

    def read(self, timeout: float | None = 5.0) -> bytes:
        """The next IP packet the device delivered; TimeoutError if none came in time."""
        self.app.settimeout(timeout)
        return self.app.recv(65535)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._dev.close()
            self.app.close()

"""In-memory stand-ins for the device's TUN (wireguard-go's tuntest): a datagram socketpair
carries one IP packet per message, so the device's threads select on and read a real fd,
while the test writes and reads packets on the other end. UDP is real, on 127.0.0.1."""

from __future__ import annotations

import os
import socket

from wgpy.device.tun import Tun


class FakeTun(Tun):
    def __init__(self, name: str) -> None:
        self.app, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dev = dev
        os.set_blocking(dev.fileno(), False)
        super().__init__(dev.fileno(), name, vnet_hdr=False)
        self.app.settimeout(5.0)

    def mtu(self) -> int:
        return 1420

    def set_mtu(self, mtu: int) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._dev.close()
            self.app.close()

"""In-memory stand-ins for the device's TUN (wireguard-go's tuntest): the package's
`MemoryTun`, whose datagram socketpair carries one IP packet per message, so the device's
threads select on and read a real fd while the test writes and reads packets on the other
end (`tun.app`). UDP is real, on 127.0.0.1."""

from __future__ import annotations

from wgpy.device.memtun import MemoryTun


class FakeTun(MemoryTun):
    def __init__(self, name: str) -> None:
        super().__init__(name, mtu=1420)

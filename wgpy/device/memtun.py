"""An in-memory packet interface in place of a TUN, for programs and tests without root.

Theory of operation: the device's threads wait on fds and read and write whole IP packets,
one per read or write. A datagram socketpair gives them exactly that without /dev/net/tun
(wireguard-go's `tuntest` channel TUN plays the same part): the device holds one end, as it
would hold the TUN's fd, and the program holds the other. What the program `write`s is a
packet "the operating system" routed into the interface, which the device encrypts and
sends to the peer whose allowed IPs hold its destination; what the program `read`s is a
packet the device decrypted from a peer, which a real TUN would hand to the kernel.

A read waits with select, so each call has its own timeout and writes keep theirs (a
write blocks at most MEMORY_TUN_WRITE_TIMEOUT while the device is not reading). The
device's writes (`deliver`) wait a little for the program when its queue is full, as a
TUN's queue of a thousand packets would hold them: the socketpair's holds ten. Closing
sends the program's end an empty datagram, which no device ever writes, so that a reader
blocked without a timeout wakes and learns that the interface is gone (EOFError).

There are no virtio-net headers (no TCP coalescing) and no netlink: the MTU is whatever
the owner sets, and the link is up when the owner says so (`Device.set_up`).
"""

from __future__ import annotations

import os
import select
import socket
import time

from wgpy.constants import DEFAULT_MTU, MEMORY_TUN_DELIVER_WAIT, MEMORY_TUN_WRITE_TIMEOUT
from wgpy.device.tun import Tun

__all__ = ["MemoryTun"]

_MAX_PACKET = 65535


class MemoryTun(Tun):
    """A TUN whose other side is this process: `write` packets in, `read` packets out."""

    def __init__(self, name: str, mtu: int = DEFAULT_MTU) -> None:
        self.app, self._dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        os.set_blocking(self._dev.fileno(), False)
        super().__init__(self._dev.fileno(), name, vnet_hdr=False)
        self._mtu = mtu
        self.app.settimeout(MEMORY_TUN_WRITE_TIMEOUT)

    def mtu(self) -> int:
        return self._mtu

    def set_mtu(self, mtu: int) -> None:
        self._mtu = mtu

    def write(self, packet: bytes) -> None:
        """Hand the device one IP packet, as the kernel does when it routes one into a TUN."""
        if self.closed:
            raise EOFError("the interface is closed")
        self.app.send(packet)

    def deliver(self, packets: list[bytes]) -> int:
        """The device's write: each packet as one message; when the program's queue is
        full, wait up to MEMORY_TUN_DELIVER_WAIT in all for it to read, then drop the
        rest. Returns how many were dropped."""
        send, deadline = self._dev.send, 0.0
        for i, packet in enumerate(packets):
            while True:
                try:
                    send(packet)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    deadline = deadline or now + MEMORY_TUN_DELIVER_WAIT
                    if now >= deadline or not select.select([], [self._dev], [],
                                                            deadline - now)[1]:
                        return len(packets) - i
                except OSError:
                    return len(packets) - i  # closed under us
        return 0

    def read(self, timeout: float | None = 5.0) -> bytes:
        """The next IP packet the device delivered: TimeoutError if none came within
        `timeout` seconds (None: wait as long as it takes), EOFError once it is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                ready, _, _ = select.select([self.app], [], [], left)
                if not ready:
                    raise TimeoutError(f"no packet within {timeout} s")
                packet = self.app.recv(_MAX_PACKET, socket.MSG_DONTWAIT)
                break
            except BlockingIOError:  # another reader took it first: wait out the rest
                continue
            except (OSError, ValueError):  # ValueError: select on a closed socket
                if self.closed:
                    raise EOFError("the interface is closed") from None
                raise
        if not packet and self.closed:
            raise EOFError("the interface is closed")
        return packet

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._dev.send(b"")  # wakes a reader that waits without a timeout
            except OSError:
                pass
            self._dev.close()
            self.app.close()

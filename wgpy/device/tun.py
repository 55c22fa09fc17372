"""The TUN device: /dev/net/tun with IFF_TUN | IFF_NO_PI, one IP packet per read or write.

`Tun.create(name)` makes the interface (MTU DEFAULT_MTU, as wireguard-go), `Tun.adopt(fd)`
takes one handed over by a parent process (WG_TUN_FD). The fd is non-blocking; readers
wait with select and drain until EAGAIN, so one wake-up yields a batch. A write to a TUN
that is down fails with EIO: that is an event for the caller, not a crash.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from pyroute2 import IPRoute

from wgpy.constants import DEFAULT_MTU

__all__ = ["Tun", "TunError"]

TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH")


class TunError(Exception):
    """The TUN could not be created or adopted; the message says why, for a person."""


class Tun:
    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.closed = False

    @classmethod
    def create(cls, name: str, mtu: int = DEFAULT_MTU) -> Tun:
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name:
            raise TunError(f"invalid interface name {name!r}")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TunError(f"cannot open /dev/net/tun: {exc.strerror}") from exc
        try:
            fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EBUSY:
                raise TunError(f"interface {name} is in use by another process") from exc
            if exc.errno == errno.EPERM:
                raise TunError(f"no permission to create {name} (needs CAP_NET_ADMIN)") from exc
            if exc.errno == errno.EINVAL:
                raise TunError(f"interface {name} exists and is not a TUN") from exc
            raise TunError(f"cannot create {name}: {exc.strerror}") from exc
        tun = cls(fd, name)
        os.set_blocking(fd, False)
        try:
            tun.set_mtu(mtu)
        except Exception as exc:
            tun.close()
            raise TunError(f"cannot set the MTU of {name}: {exc}") from exc
        return tun

    @classmethod
    def adopt(cls, fd: int) -> Tun:
        try:
            ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(_IFREQ.size))
        except OSError as exc:
            raise TunError(f"fd {fd} is not a TUN: {exc.strerror}") from exc
        name = _IFREQ.unpack(ifr)[0].rstrip(b"\0").decode()
        os.set_blocking(fd, False)
        return cls(fd, name)

    def fileno(self) -> int:
        return self.fd

    def set_mtu(self, mtu: int) -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=self.ifindex(ipr), mtu=mtu)

    def mtu(self) -> int:
        with IPRoute() as ipr:
            return int(ipr.link("get", index=self.ifindex(ipr))[0].get_attr("IFLA_MTU"))

    def ifindex(self, ipr: IPRoute) -> int:
        found = ipr.link_lookup(ifname=self.name)
        if not found:
            raise TunError(f"interface {self.name} not found")
        return int(found[0])

    def read_batch(self, limit: int, size: int = 65535) -> list[bytes]:
        """Up to `limit` packets already waiting; [] if none. Raises OSError if the TUN died."""
        packets = []
        read, fd = os.read, self.fd
        try:
            for _ in range(limit):
                packets.append(read(fd, size))
        except BlockingIOError:
            pass
        return packets

    def write(self, packet: bytes) -> None:
        os.write(self.fd, packet)

    def probe(self) -> bool | None:
        """wireguard-go's trick: a zero-length write fails EINVAL when the link is up and EIO
        when it is down. Works after the TUN was moved to another network namespace."""
        try:
            os.write(self.fd, b"")
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return True
            if exc.errno == errno.EIO:
                return False
            raise
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

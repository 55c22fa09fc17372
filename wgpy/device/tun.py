"""The TUN device: /dev/net/tun with IFF_TUN | IFF_NO_PI | IFF_VNET_HDR.

Every read and write starts with a 10-byte virtio-net header. Writes may be coalesced TCP
super-packets (see `wgpy.tunoffload`), which the receiving stack takes in at once. Reads:
with the compiled batch path (`wgpy.fastpath.NATIVE`) the TUN asks for TCP segmentation
offload (TUNSETOFFLOAD with TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, as wireguard-go's
tun/offload_linux.go), so a sending TCP stack hands us up to 64 KB per read, one
super-packet that `fastpath.split` cuts into MTU-sized segments with their checksums: one
system call for dozens of packets. On the pure-Python path (splitting in Python costs more
than the reads it saves) the offloads stay off, TUNSETOFFLOAD(0), and reads carry a zero
header. A TUN adopted without IFF_VNET_HDR is used without headers.

`Tun.create(name)` makes the interface and `Tun.adopt(fd)` takes one handed over by a parent
process (WG_TUN_FD); both set the MTU to DEFAULT_MTU, as wireguard-go's `CreateTUN` and
`CreateTUNFromFile` do, and both read the name back from the kernel, so a pattern such as
`wg%d` gives the real name (`wg0`). A missing /dev/net/tun is reported with what to do
about it (a container needs `--device /dev/net/tun`). The fd is non-blocking; readers
wait with select and drain until EAGAIN, so one wake-up yields a batch. A write to a TUN
that is down fails with EIO: that is an event for the caller, not a crash.

The MTU is read and set with the interface ioctls SIOCGIFMTU and SIOCSIFMTU (`struct
ifreq`: the name, then an int in its union), on a datagram socket of the calling thread's
network namespace; AF_UNIX serves, so no IPv4 stack is needed (the socket's own family
answers ENOIOCTLCMD and the kernel's dev_ioctl takes over).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from typing import Callable

from wgpy import fastpath
from wgpy.constants import DEFAULT_MTU
from wgpy.tunoffload import VNET_HDR_SIZE, coalesce

__all__ = ["Tun", "TunError"]

TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
TSO_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
# A read holds at most one IPv6 super-packet: 40 + 65535 bytes, behind the header.
TSO_READ_SIZE = VNET_HDR_SIZE + 40 + 65535
IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH")  # TUNSETIFF/TUNGETIFF: name, ifr_flags
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
_IFREQ_MTU = struct.Struct("16si20x")  # name, ifr_mtu; sizeof(struct ifreq) is 40
TUN_PATH = "/dev/net/tun"
# What a person can do about a /dev/net/tun that is missing or not allowed.
TUN_HINT = ("in a container, start it with --device /dev/net/tun (and --cap-add NET_ADMIN); "
            "on a host, load the tun module (modprobe tun) or create the device node "
            "(mkdir -p /dev/net && mknod /dev/net/tun c 10 200)")


def _name_of(ifr: bytes) -> str:
    return _IFREQ.unpack(ifr)[0].split(b"\0", 1)[0].decode(errors="replace")


class TunError(Exception):
    """The TUN could not be created or adopted; the message says why, for a person."""


class Tun:
    # An interface that takes the device's packets itself (MemoryTun.deliver) returns how
    # many it dropped; None for a TUN, which the device writes with writev.
    deliver: Callable[[list[bytes]], int] | None = None

    def __init__(self, fd: int, name: str, vnet_hdr: bool) -> None:
        self.fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr
        self.closed = False
        self.tso = False  # reads may be TSO super-packets (see `_offload`)
        self.malformed = 0  # TUN reads dropped: their virtio-net header was unusable

    @classmethod
    def create(cls, name: str, mtu: int = DEFAULT_MTU) -> Tun:
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name:
            raise TunError(f"invalid interface name {name!r}")
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            hint = f"; {TUN_HINT}" if exc.errno in (errno.ENOENT, errno.ENXIO, errno.ENODEV,
                                                     errno.EPERM, errno.EACCES) else ""
            raise TunError(f"cannot open {TUN_PATH}: {exc.strerror}{hint}") from exc
        try:
            ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(),
                                                         IFF_TUN | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)  # `_offload` asks for TSO where we split
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EBUSY:
                raise TunError(f"interface {name} is in use by another process") from exc
            if exc.errno == errno.EPERM:
                raise TunError(f"no permission to create {name} (needs CAP_NET_ADMIN)") from exc
            if exc.errno == errno.EINVAL:
                raise TunError(f"interface {name} exists and is not a TUN") from exc
            raise TunError(f"cannot create {name}: {exc.strerror}") from exc
        # The kernel writes the name it chose back into the request (`wg%d` -> `wg0`).
        tun = cls(fd, _name_of(ifr), True)
        os.set_blocking(fd, False)
        tun._init_mtu(mtu)
        tun._offload()
        return tun

    @classmethod
    def adopt(cls, fd: int, mtu: int = DEFAULT_MTU) -> Tun:
        try:
            ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(_IFREQ.size))
        except OSError as exc:
            raise TunError(f"fd {fd} is not a TUN: {exc.strerror}") from exc
        flags = _IFREQ.unpack(ifr)[1]
        tun = cls(fd, _name_of(ifr), bool(flags & IFF_VNET_HDR))
        os.set_blocking(fd, False)
        tun._init_mtu(mtu)
        tun._offload()
        return tun

    def _init_mtu(self, mtu: int) -> None:
        try:
            self.set_mtu(mtu)
        except Exception as exc:
            self.close()
            raise TunError(f"cannot set the MTU of {self.name}: {exc}") from exc

    def _offload(self) -> None:
        """TSO reads where the batch path splits them; plain reads otherwise (also when the
        kernel refuses the flags: then reads carry no super-packets either)."""
        self.tso = False
        self._buf = bytearray()
        if not self.vnet_hdr:
            return
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TSO_OFFLOADS if fastpath.NATIVE else 0)
        except OSError:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, 0)
            return
        self.tso = fastpath.NATIVE
        self._buf = bytearray(TSO_READ_SIZE if self.tso else 0)

    def fileno(self) -> int:
        return self.fd

    def _mtu_ioctl(self, request: int, mtu: int) -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            ifr = fcntl.ioctl(sock, request, _IFREQ_MTU.pack(self.name.encode(), mtu))
        return int(_IFREQ_MTU.unpack(ifr)[1])

    def set_mtu(self, mtu: int) -> None:
        """Set the interface's MTU (OSError: ENODEV if it is gone, EINVAL if out of range)."""
        self._mtu_ioctl(SIOCSIFMTU, mtu)

    def mtu(self) -> int:
        return self._mtu_ioctl(SIOCGIFMTU, 0)

    def read_batch(self, limit: int, size: int = 65535) -> list[list[bytes]]:
        """Up to about `limit` packets already waiting, as the packets of each read (one,
        or a TSO super-packet's segments, which share their headers and so their route);
        [] if none. Raises OSError if the TUN died."""
        if self.tso:
            return self._read_tso(limit)
        reads = []
        read, fd, skip = os.read, self.fd, VNET_HDR_SIZE if self.vnet_hdr else 0
        try:
            for _ in range(limit):
                packet = read(fd, size)
                reads.append([packet[skip:] if skip else packet])
        except BlockingIOError:
            pass
        return reads

    def _read_tso(self, limit: int) -> list[list[bytes]]:
        """Reads until about `limit` packets (a super-packet counts for its segments) or
        EAGAIN, each into one buffer and split from there. A read whose virtio-net header
        does not describe its packet is dropped and counted in `malformed`."""
        reads: list[list[bytes]] = []
        readv, fd, buf, split = os.readv, self.fd, [self._buf], fastpath.split
        view = memoryview(self._buf)
        count = 0
        try:
            while count < limit:
                n = readv(fd, buf)
                if not n:
                    break
                try:
                    packets = split(view[:n])
                except ValueError:
                    self.malformed += 1
                    continue
                reads.append(packets)
                count += len(packets)
        except BlockingIOError:
            pass
        return reads

    def writes(self, packets: list[bytes]) -> list[list[bytes]]:
        """The write calls (buffers for writev) that deliver `packets`, in order."""
        if self.vnet_hdr:
            return coalesce(packets)
        return [[p] for p in packets]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

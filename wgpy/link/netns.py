"""Network namespaces for the netlink thread: joining one, and finding the one that holds
the TUN now.

setns(2) moves the calling thread only: the daemon's UDP sockets stay where they were (as
the kernel's WireGuard sockets do), and every netlink socket the thread opens afterwards
belongs to the namespace it joined. Python 3.12 has os.setns; before, pyroute2's
`netns.setns` makes the system call (given an fd it neither opens nor closes it; its
IPRoute(netns=...) forks a helper process, which is not used here). The TUN fd names its
namespace (TUNGETDEVNETNS, Linux 5.2) and its current name (TUNGETIFF): a move may rename
the interface.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["join_netns", "follow_tun_namespace"]

# linux/if_tun.h: TUN ioctls (not rtnetlink).
TUNGETDEVNETNS = 0x54E3  # _IO('T', 227), Linux 5.2
TUNGETIFF = 0x800454D2


def join_netns(fd: int) -> None:
    """setns(2) into the network namespace `fd` names: moves the calling thread only
    (OSError if it cannot)."""
    setns = getattr(os, "setns", None)  # Python 3.12
    if setns is not None:
        setns(fd, getattr(os, "CLONE_NEWNET"))
        return
    from pyroute2 import netns  # type: ignore[import-untyped]

    netns.setns(fd)


def follow_tun_namespace(tun_fd: int) -> str | None:
    """Move the calling thread into the network namespace that now holds the TUN; returns
    the interface's name there (a move may rename it), or None if the kernel cannot say."""
    try:
        ns_fd = fcntl.ioctl(tun_fd, TUNGETDEVNETNS)
    except OSError:
        return None
    try:
        join_netns(ns_fd)
    except OSError:
        return None
    finally:
        os.close(ns_fd)
    try:
        ifr = fcntl.ioctl(tun_fd, TUNGETIFF, bytes(18))
    except OSError:
        return None
    return ifr[:16].rstrip(b"\0").decode(errors="replace")

"""The UAPI socket file: /var/run/wireguard/IFNAME.sock, made as wireguard-go makes it.

`listen(name)` makes the directory (0755) and binds the socket with mode 0700 (as
wireguard-go's umask 077 gives), so only root may connect. The mode is set on the socket
before `bind` (Linux takes a socket file's mode from its inode, less the umask), so the
process umask is never changed: a program embedding wgpy keeps its own. If the path is
taken, it dials it: an answer means another daemon owns the name (SocketInUse), silence
means a stale file, removed and replaced. The listen queue is the kernel's largest, as Go's
net package asks for: a burst of clients waits in it instead of being refused.
"""

from __future__ import annotations

import errno
import os
import socket

from wgpy.constants import UAPI_SOCKET_MODE

__all__ = ["SOCKET_DIR", "SocketInUse", "listen", "listen_backlog", "socket_path"]

SOCKET_DIR = "/var/run/wireguard"
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"  # the largest listen queue allowed


class SocketInUse(Exception):
    """Another daemon answers on the socket path."""


def socket_path(name: str, directory: str = SOCKET_DIR) -> str:
    return os.path.join(directory, f"{name}.sock")


def listen(name: str, directory: str = SOCKET_DIR) -> socket.socket:
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = socket_path(name, directory)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.fchmod(sock.fileno(), UAPI_SOCKET_MODE)  # what `bind` creates the file with
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: nobody answers
                sock.bind(path)
            else:
                raise SocketInUse(f"unix socket in use: {path}") from exc
            finally:
                probe.close()
    except BaseException:
        sock.close()
        raise
    sock.listen(listen_backlog())
    return sock


def listen_backlog() -> int:
    """The kernel's largest listen queue (net.core.somaxconn), as wireguard-go's listener
    gets it from Go's net package: a burst of clients waits in the queue instead of being
    refused (a connect with a timeout is non-blocking, and a full queue answers EAGAIN)."""
    try:
        with open(SOMAXCONN_PATH) as f:
            return max(int(f.read()), 1)
    except (OSError, ValueError):
        return socket.SOMAXCONN

"""Watching a file with inotify(7): how the UAPI server learns that its socket file was
deleted or replaced without waking up to look (wireguard-go learns it the same way, in
ipc/uapi_linux.go).

Theory of operation: the file's inode is watched, as wireguard-go watches it, and so is
its directory, for what happens to the directory itself. Everything that can take the
path from our socket then comes as an event, and nothing else does:

- the name unlinked, or another file renamed over it: the inode loses a link (IN_ATTRIB,
  which also comes for a chmod or chown: harmless, the caller only looks again);
- the file renamed to another name (IN_MOVE_SELF: wireguard-go does not watch for it; the
  lstat poll this replaces saw it);
- the directory moved or removed (IN_MOVE_SELF, IN_DELETE_SELF of the directory's watch),
  or the file system unmounted (IN_UNMOUNT).

Other files coming and going in the directory (other interfaces' sockets in
/var/run/wireguard) wake nobody: a watch of the directory's entries would have. An event
only says "look again": the caller compares what the path names now with the socket it
bound (their lstat identity). Events the kernel could not queue (IN_Q_OVERFLOW) are a
reason to look too. When a watch ends (IN_IGNORED: its inode is gone) nothing more may
come from it, so the caller looks, and goes back to polling if it still finds its file.

Not seen, by this or by wireguard-go: a file system mounted over the file or the
directory, or a directory further up renamed (a watch follows an inode, not a path).

The standard library has no inotify binding, so libc's is called through ctypes (which
costs the daemon about 200 KiB). `FileWatch(path)` raises OSError when inotify cannot be
had: no libc or no such function (ENOSYS), the per-user instance limit (EMFILE) or watch
limit (ENOSPC) reached, or the file already gone (ENOENT); the caller then polls with lstat.
"""

from __future__ import annotations

import errno
import os
import struct

__all__ = ["FileWatch"]

IN_ATTRIB = 0x00000004
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000  # the path itself, as lstat sees it
_FILE_EVENTS = IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW
_DIRECTORY_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then a name
_READ_SIZE = 1 << 12  # events about the watched inodes themselves carry no name
_MAX_READS = 64  # per call; what is left wakes the selector again


class FileWatch:
    """Tells when the file at `path` may have been removed or replaced: `changed()` once
    `fileno()` is readable."""

    def __init__(self, path: str) -> None:
        self.lost = False  # a watch ended: events may no longer come
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (ImportError, OSError, AttributeError) as exc:
            raise OSError(errno.ENOSYS, f"inotify not available: {exc}") from None
        init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        add_watch.restype = ctypes.c_int
        self._fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)  # IN_NONBLOCK | IN_CLOEXEC
        if self._fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        try:
            for target, mask in ((path, _FILE_EVENTS),
                                 (os.path.dirname(path) or ".", _DIRECTORY_EVENTS)):
                if add_watch(self._fd, os.fsencode(target), mask) < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"{os.strerror(err)}: {target}")
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self._fd

    def changed(self) -> bool:
        """Read the waiting events; True if there was one (look again)."""
        seen = False
        for _ in range(_MAX_READS):
            try:
                data = os.read(self._fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            seen = True
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & IN_IGNORED:
                    self.lost = True
        return seen

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

"""The key log file (WGPY_KEYLOG_FILE): Wireshark's WireGuard key log, appended to as the
core hands over the secrets of each handshake message we create (`wgpy.noise.keylog`).

Anyone who reads the file decrypts every session it lists, so it is treated as a private
key file. It is opened once, at start, with O_WRONLY|O_APPEND|O_CREAT and mode 0600, and
refused (KeyLogError, a setup failure) when it

- is a symbolic link (O_NOFOLLOW): a link planted in a shared directory such as /tmp
  would otherwise make the daemon, as root, append secrets to whatever it points at;
- is not a regular file (opened O_NONBLOCK first, so a FIFO without a reader fails
  instead of blocking the start);
- belongs to another user, who could read it whatever its mode;
- has more than one hard link: a link planted to a file elsewhere (where
  `fs.protected_hardlinks` is off) would make the daemon tighten and fill that file;
- is not empty and does not start with a key line (`NAME = `, a name of
  `wgpy.noise.keylog`): a path given by mistake (`WGPY_KEYLOG_FILE=/etc/resolv.conf`)
  names a file of ours that we must neither tighten nor fill with secrets.

An existing file of ours that group or others may access is tightened to 0600 (fchmod),
and `report_open` says so: refusing would only make its owner run chmod, while writing
secrets into a readable file is never wanted. Whoever opens the key log calls `report_open`
once its logger is set up (cli.main after its first line, or the Device given a path).

Each block (four lines) goes out in one write(): O_APPEND makes it land whole at the end
even with other writers. A failed or short write is logged once (until a write succeeds
again) and never stops the daemon: the key log is a debugging aid, the tunnel is not.
"""

from __future__ import annotations

import errno
import os
import stat

from wgpy.device.log import Logger
from wgpy.noise.keylog import KEYLOG_NAMES, HandshakeSecrets, keylog_lines

__all__ = ["KeyLog", "KeyLogError", "KEYLOG_MODE"]

KEYLOG_MODE = 0o600
_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
          | os.O_NONBLOCK)


_LABELS = tuple(name.encode() + b" = " for name in KEYLOG_NAMES)


def _starts_like_a_keylog(path: str, st: os.stat_result) -> bool:
    """Whether the file `st` describes (opened for writing) starts with a key line; read
    through a second descriptor, checked to be the same file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        again = os.fstat(fd)
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
            return False  # replaced since we opened it
        return os.read(fd, 64).startswith(_LABELS)
    finally:
        os.close(fd)


class KeyLogError(Exception):
    """The key log cannot be opened, or is refused; the message is for a person."""


class KeyLog:
    """An open key log; `write` is the core's `Interface.keylog` hook."""

    def __init__(self, fd: int, path: str, log: Logger) -> None:
        self.fd = fd
        self.path = path
        self.log = log
        self.tightened_from: int | None = None  # the mode it had, if it was wider than 0600
        self._failing = False  # the last write failed (and that was logged)

    @classmethod
    def open(cls, path: str, log: Logger) -> KeyLog:
        path = os.path.abspath(path)
        try:
            fd = os.open(path, _FLAGS, KEYLOG_MODE)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise KeyLogError(f"Cannot open key log {path}: {why}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyLogError(f"Key log {path} is not a regular file")
            if st.st_nlink > 1:  # another name for it exists, perhaps where we would not write
                raise KeyLogError(f"Key log {path} has {st.st_nlink} hard links")
            if st.st_uid != os.geteuid():
                raise KeyLogError(f"Key log {path} belongs to uid {st.st_uid}, not to us")
            if st.st_size and not _starts_like_a_keylog(path, st):
                raise KeyLogError(f"{path} exists and is not a key log (its first line is "
                                  f"not a key line): left as it is")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                os.fchmod(fd, KEYLOG_MODE)
            os.set_blocking(fd, True)
        except KeyLogError:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise KeyLogError(f"Cannot open key log {path}: {exc.strerror}") from exc
        keylog = cls(fd, path, log)
        if mode & 0o077:
            keylog.tightened_from = mode
        return keylog

    def report_open(self, log: Logger) -> None:
        """The start-up line (never a key): that the key log is written, and where. `log`,
        the daemon's (with the kernel's interface name), also takes the write errors."""
        self.log = log
        if self.tightened_from is not None:
            log.verbose("Key log %s: mode %04o tightened to %04o", self.path,
                        self.tightened_from, KEYLOG_MODE)
        log.verbose("Writing the key log %s: whoever reads it decrypts this traffic",
                    self.path)

    def write(self, secrets: HandshakeSecrets) -> None:
        """Append one block; never raises (called from the packet path, under the core's
        lock)."""
        block = keylog_lines(secrets)
        try:
            if self.fd < 0:
                raise OSError(errno.EBADF, "closed")
            written = os.write(self.fd, block)
            if written != len(block):
                raise OSError(0, f"short write ({written} of {len(block)} bytes)")
        except OSError as exc:
            if not self._failing:
                self._failing = True
                self.log.error("Key log %s: write failed: %s (logged once until a write "
                               "succeeds)", self.path, exc.strerror or exc)
            return
        self._failing = False

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

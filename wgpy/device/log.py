"""wireguard-go's logger: `LOG_LEVEL=verbose|debug|error|silent`, prefix `(IFNAME) `.

Lines look like wireguard-go's: `DEBUG: (wg0) 2026/11/26 16:38:54 message`, and go where
wireguard-go's go: to standard output (`log.New(os.Stdout, ...)` in its device/logger.go), so
`docker logs` and journald show them as they show wireguard-go's. The default level is
error. Keys never reach a log line: peers are named by a short form of their public key
only (`peer(AbCd…WxYz)`), as wireguard-go does.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Logger", "level_from_env"]

SILENT, ERROR, VERBOSE = 0, 1, 2


def level_from_env(value: str | None) -> int:
    return {"verbose": VERBOSE, "debug": VERBOSE, "error": ERROR,
            "silent": SILENT}.get((value or "").strip().lower(), ERROR)


class Logger:
    def __init__(self, name: str, level: int = ERROR, stream: TextIO | None = None) -> None:
        self.prefix = f"({name}) "
        self.level = level
        self.stream = stream or sys.stdout

    def _write(self, tag: str, msg: str, args: tuple[Any, ...]) -> None:
        text = msg % args if args else msg
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        try:
            self.stream.write(f"{tag}: {self.prefix}{stamp} {text}\n")
            self.stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed stdout must not take the daemon down

    def verbose(self, msg: str, *args: Any) -> None:
        if self.level >= VERBOSE:
            self._write("DEBUG", msg, args)

    def error(self, msg: str, *args: Any) -> None:
        if self.level >= ERROR:
            self._write("ERROR", msg, args)

"""Logging: records of named `logging` loggers, and wireguard-go's line format for the daemon.

Every line wgpy logs is a `logging` record of a logger named by the part that logs it,
carrying the interface's name as the record attribute `interface`:

    wgpy.device     the device: link state, MTU, drops, send and receive failures, threads
    wgpy.uapi       the UAPI server: connections, peers created and removed by `set`
    wgpy.netlink    the netlink watcher: interface moved to another namespace, errors
    wgpy.metrics    the metrics server (WGPY_METRICS_ADDRESS)
    wgpy.daemon     the command line: startup, daemonizing, shutdown

wireguard-go's two levels map onto logging's: verbose lines are DEBUG records, errors are
ERROR records. The library installs no output handler (only a NullHandler on `wgpy`): a
program that embeds a Device routes, filters or silences the records with the standard
logging API (`logging.getLogger("wgpy").setLevel(logging.CRITICAL)` silences them).

The daemon (`wgpy.cli`) calls `configure_daemon`: a handler on `wgpy` writes each record
as wireguard-go writes its lines, `DEBUG: (wg0) 2026/11/26 16:38:54 message` (local time,
`log.Ldate|log.Ltime`), to standard output (`log.New(os.Stdout, ...)` in its
device/logger.go), so `docker logs` and journald show them as they show wireguard-go's;
LOG_LEVEL=verbose|debug|error|silent sets the level (error by default).

`Logger` is what the call sites hold: `log.verbose(fmt, *args)` and `log.error(fmt,
*args)`, %-formatted only when a record is made. Its `level` is wireguard-go's threshold
on top of logging's (VERBOSE by default: logging alone decides); a `stream` given to it
also gets the lines in wireguard-go's format (for tests that read one device's log).
Keys never reach a log line: peers are named by a short form of their public key only
(`peer(AbCd…WxYz)`), as wireguard-go does.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["Logger", "WireguardGoFormatter", "WireguardGoHandler", "configure_daemon",
           "level_from_env", "ROOT", "DEVICE", "UAPI", "NETLINK", "METRICS", "DAEMON"]

SILENT, ERROR, VERBOSE = 0, 1, 2
ROOT = "wgpy"
DEVICE, UAPI, NETLINK, METRICS, DAEMON = (f"{ROOT}.{role}" for role in
                                          ("device", "uapi", "netlink", "metrics", "daemon"))
_LOGGING_LEVEL = {SILENT: logging.CRITICAL + 1, ERROR: logging.ERROR, VERBOSE: logging.DEBUG}

logging.getLogger(ROOT).addHandler(logging.NullHandler())  # a library prints nothing itself


def level_from_env(value: str | None) -> int:
    return {"verbose": VERBOSE, "debug": VERBOSE, "error": ERROR,
            "silent": SILENT}.get((value or "").strip().lower(), ERROR)


class WireguardGoFormatter(logging.Formatter):
    """`DEBUG: (IFNAME) YYYY/MM/DD HH:MM:SS message`; `ERROR: ...` from ERROR up. A record
    without an `interface` attribute takes the formatter's `interface`."""

    def __init__(self, interface: str = "") -> None:
        super().__init__()
        self.interface = interface

    def format(self, record: logging.LogRecord) -> str:
        tag = "ERROR" if record.levelno >= logging.ERROR else "DEBUG"
        name = getattr(record, "interface", None) or self.interface
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        return f"{tag}: ({name}) {stamp} {record.getMessage()}"


class WireguardGoHandler(logging.Handler):
    """Writes formatted records to `stream`, or to whatever sys.stdout is when a record
    comes; a closed or broken stream loses the line, never the daemon."""

    def __init__(self, stream: TextIO | None = None, interface: str = "") -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(WireguardGoFormatter(interface))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.stream or sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # OSError, ValueError (closed), AttributeError (no stdout), a bad %
            pass


def configure_daemon(level: int, stream: TextIO | None = None) -> WireguardGoHandler:
    """The daemon's logging: one WireguardGoHandler on `wgpy` (replacing one installed
    before), and `wgpy`'s level from wireguard-go's LOG_LEVEL value `level`."""
    root = logging.getLogger(ROOT)
    for old in [h for h in root.handlers if isinstance(h, WireguardGoHandler)]:
        root.removeHandler(old)
    handler = WireguardGoHandler(stream)
    root.addHandler(handler)
    root.setLevel(_LOGGING_LEVEL[level])
    return handler


class Logger:
    """One interface's logger for one role (`DEVICE` unless told); `uapi`, `netlink`,
    `metrics` and `daemon` are the same interface's loggers for the other roles."""

    def __init__(self, name: str, level: int = VERBOSE, stream: TextIO | None = None,
                 logger: str = DEVICE) -> None:
        self.name = name
        self.level = level
        self.stream = stream
        self.logger = logging.getLogger(logger)
        self._extra = {"interface": name}
        self._handler = WireguardGoHandler(stream) if stream is not None else None
        self._roles: dict[str, Logger] = {}

    def _role(self, logger: str) -> Logger:
        child = self._roles.get(logger)
        if child is None:
            child = self._roles[logger] = Logger(self.name, self.level, self.stream, logger)
        return child

    @property
    def uapi(self) -> Logger:
        return self._role(UAPI)

    @property
    def netlink(self) -> Logger:
        return self._role(NETLINK)

    @property
    def metrics(self) -> Logger:
        return self._role(METRICS)

    @property
    def daemon(self) -> Logger:
        return self._role(DAEMON)

    def _emit(self, levelno: int, msg: str, args: tuple[Any, ...]) -> None:
        logger = self.logger
        if logger.isEnabledFor(levelno):
            logger.log(levelno, msg, *args, extra=self._extra, stacklevel=3)
        if self._handler is not None:
            self._handler.handle(logger.makeRecord(logger.name, levelno, "", 0, msg, args,
                                                   None, extra=self._extra))

    def verbose(self, msg: str, *args: Any) -> None:
        if self.level >= VERBOSE:
            self._emit(logging.DEBUG, msg, args)

    def error(self, msg: str, *args: Any) -> None:
        if self.level >= ERROR:
            self._emit(logging.ERROR, msg, args)

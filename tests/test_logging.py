"""Logging through `logging` (wgpy.device.log): an embedding program gets records of named
loggers carrying the interface's name, routes or silences them with the standard API,
and sees nothing it did not ask for; the daemon's handler writes wireguard-go's lines."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from fakes import FakeTun
from uapi.client import Client
from wgpy import crypto
from wgpy.device.device import Device
from wgpy.ipc.listener import listen
from wgpy.ipc.server import UapiServer
from wgpy.device.log import (
    ERROR, SILENT, VERBOSE, Logger, WireguardGoFormatter, WireguardGoHandler, configure_daemon,
)

LINE = re.compile(r"(DEBUG|ERROR): \((\w+)\) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d (.*)")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, logger: str) -> list[str]:
        return [r.getMessage() for r in self.records if r.name == logger]


@pytest.fixture
def wgpy_logging() -> Iterator[logging.Logger]:
    """The `wgpy` logger, put back as it was (level, handlers) after the test."""
    root = logging.getLogger("wgpy")
    level, handlers = root.level, list(root.handlers)
    try:
        yield root
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        for name in ("wgpy.device", "wgpy.uapi"):
            logging.getLogger(name).setLevel(logging.NOTSET)
            logging.getLogger(name).handlers.clear()


class Embedded:
    """A device as a program embeds it: the library's Logger with no arguments beyond the
    name, a UAPI server for configuring it."""

    def __init__(self, name: str, directory: Path) -> None:
        self.device = Device(FakeTun(name), Logger(name))
        self.server = UapiServer(self.device, listen(name, str(directory)))
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.device.start()
        self.thread.start()
        self.client = Client.from_path(str(directory / f"{name}.sock"))

    def close(self) -> None:
        self.device.stop("test over")
        self.server.close()
        self.device.close()
        self.thread.join(5)


def test_an_embedding_program_gets_named_records(
        tmp_path: Path, wgpy_logging: logging.Logger,
        capsys: pytest.CaptureFixture[str]) -> None:
    device_records, uapi_records = Records(), Records()
    logging.getLogger("wgpy.device").addHandler(device_records)
    logging.getLogger("wgpy.uapi").addHandler(uapi_records)
    wgpy_logging.setLevel(logging.DEBUG)
    node = Embedded("wglga", tmp_path)
    try:
        node.device.set_up(True)
        node.client.set(["public_key=" + crypto.public_key(crypto.generate_private_key()).hex()])
        node.device.spawn("boom", lambda: 1 // 0)  # a thread dying is an ERROR record
        assert node.device.stopped.wait(5)
    finally:
        node.close()
    assert "Interface up" in device_records.messages("wgpy.device")
    assert any(m.endswith(" - UAPI: Created") for m in uapi_records.messages("wgpy.uapi"))
    assert all(r.name == "wgpy.device" for r in device_records.records)
    assert {getattr(r, "interface") for r in device_records.records + uapi_records.records} \
        == {"wglga"}
    (failed,) = [r for r in device_records.records if r.levelno == logging.ERROR]
    assert failed.getMessage() == "thread boom failed: ZeroDivisionError('integer division "\
        "or modulo by zero')"
    assert {r.levelno for r in device_records.records} == {logging.DEBUG, logging.ERROR}
    # Lazy %-formatting: the record keeps the format and its arguments.
    assert failed.msg == "thread %s failed: %r" and failed.args[0] == "boom"
    # The library printed nothing of its own (no handler but the program's).
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_silencing_wgpy_stops_the_records(tmp_path: Path, wgpy_logging: logging.Logger,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    records = Records()
    logging.getLogger("wgpy.device").addHandler(records)
    wgpy_logging.setLevel(logging.DEBUG)
    node = Embedded("wglgb", tmp_path)
    try:
        node.device.set_up(True)
        heard = len(records.records)
        wgpy_logging.setLevel(logging.CRITICAL)
        node.device.set_up(False)
        node.device.spawn("boom", lambda: 1 // 0)
        assert node.device.stopped.wait(5)
        assert heard >= 1 and len(records.records) == heard
    finally:
        node.close()
    assert capsys.readouterr() == ("", "")


EMBEDDED = """
import sys
sys.path.insert(0, sys.argv[1])
from fakes import FakeTun
from wgpy.device.device import Device
from wgpy.device.log import Logger
device = Device(FakeTun("wglgc"), Logger("wglgc"))
device.start()
device.set_up(True)
device.spawn("boom", lambda: 1 // 0)
assert device.stopped.wait(5)
device.close()
"""


def test_without_any_configuration_nothing_is_printed() -> None:
    """A program that configures no logging: the error record meets the library's
    NullHandler, not logging's last resort (which would print it on stderr). In a process
    of its own: pytest's capture handler on the root logger would hide the last resort."""
    done = subprocess.run([sys.executable, "-c", EMBEDDED, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_daemon_format_is_wireguard_gos() -> None:
    created = time.mktime((2026, 12, 1, 20, 5, 36, 0, 0, -1))
    formatter = WireguardGoFormatter()
    for level, tag in ((logging.DEBUG, "DEBUG"), (logging.ERROR, "ERROR"),
                       (logging.CRITICAL, "ERROR")):
        record = logging.LogRecord("wgpy.device", level, "", 0, "Dropped %d: %s",
                                   (3, "no route"), None)
        record.created = created
        record.interface = "wg0"
        assert formatter.format(record) == f"{tag}: (wg0) 2026/12/01 20:05:36 Dropped 3: no route"
    bare = logging.LogRecord("wgpy.daemon", logging.DEBUG, "", 0, "x", None, None)
    bare.created = created
    assert WireguardGoFormatter("wg9").format(bare) == "DEBUG: (wg9) 2026/12/01 20:05:36 x"


@pytest.mark.parametrize("level, wanted", [(VERBOSE, ["DEBUG", "ERROR"]), (ERROR, ["ERROR"]),
                                           (SILENT, [])])
def test_the_daemon_handler_follows_log_level(wgpy_logging: logging.Logger, level: int,
                                              wanted: list[str]) -> None:
    out = io.StringIO()
    configure_daemon(VERBOSE, io.StringIO())
    configure_daemon(level, out)  # replaces the first: one handler, one copy of each line
    assert sum(isinstance(h, WireguardGoHandler) for h in wgpy_logging.handlers) == 1
    log = Logger("wglgd", level)
    log.verbose("peer(%s) - Sending handshake initiation", "AbCd…WxYz")
    log.uapi.error("UAPI connection failed: %r", OSError(1, "x"))
    lines = [LINE.fullmatch(line) for line in out.getvalue().splitlines()]
    assert [m.group(1) for m in lines if m] == wanted and all(lines)
    assert all(m.group(2) == "wglgd" for m in lines if m)
    if wanted == ["DEBUG", "ERROR"]:
        assert lines[0] is not None and lines[1] is not None
        assert lines[0].group(3) == "peer(AbCd…WxYz) - Sending handshake initiation"
        assert lines[1].group(3) == "UAPI connection failed: PermissionError(1, 'x')"


def test_a_closed_stdout_loses_the_line_not_the_daemon(wgpy_logging: logging.Logger) -> None:
    out = io.StringIO()
    configure_daemon(VERBOSE, out)
    out.close()
    Logger("wglge").error("still %s", "alive")  # must not raise

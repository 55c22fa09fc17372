"""What a user gets from `pip install` (issue 10): the license, the metadata, one version,
the supported Pythons, the documents; and the command line's answers to bad input, which
need no root. The daemon's habits under root are in compat/test_ops.py.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wgpy
from wgpy import cli
from wgpy.device import tun
from wgpy.device.log import ERROR, Logger, configure_daemon

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MAN = (ROOT / "man" / "wgpy.8").read_text()
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def test_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the wgpy authors" in text
    assert re.search(r'^license = "MIT"$', PYPROJECT, re.M)
    meta = importlib.metadata.metadata("wgpy")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])


def test_one_version() -> None:
    """The version is written once, in wgpy/__init__.py; the package metadata, `wgpy
    --version` and the man page's header follow it."""
    assert re.search(r'^dynamic = \["version"\]', PYPROJECT, re.M)
    assert re.search(r'^version = \{ attr = "wgpy.__version__" \}$', PYPROJECT, re.M)
    assert not re.search(r'^version = "', PYPROJECT, re.M)
    assert importlib.metadata.version("wgpy") == wgpy.__version__
    assert f'"wgpy {wgpy.__version__}"' in MAN.splitlines()[0]


def test_metadata() -> None:
    meta = importlib.metadata.metadata("wgpy")
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier") or []
    for wanted in ("Programming Language :: Python :: 3.10",
                   "Programming Language :: Python :: 3.11",
                   "Operating System :: POSIX :: Linux", "Topic :: System :: Networking"):
        assert wanted in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("setproctitle") for r in requires)


def python_files() -> list[Path]:
    return sorted(p for d in ("wgpy", "uapi") for p in (ROOT / d).rglob("*.py"))


def test_python_39_is_not_supported_and_why() -> None:
    """3.10 is the floor: the code has match statements (a syntax error for 3.9's grammar),
    dataclass(slots=True) and typing.TypeAlias. The README says so."""
    match_files = []
    for path in python_files():
        try:
            ast.parse(path.read_text(), feature_version=(3, 9))
        except SyntaxError:
            match_files.append(path.name)
    assert match_files, "no 3.10 syntax left: lower requires-python?"
    source = "\n".join(p.read_text() for p in python_files())
    assert "slots=True" in source and "TypeAlias" in source
    for path in python_files():  # and nothing newer than 3.10's grammar
        ast.parse(path.read_text(), feature_version=(3, 10))
    assert "Python 3.10" in README and "3.9" in README
    assert re.search(r"3\.9[^.\n]*not supported", README), "the README must say 3.9 is not"


def test_readme_has_no_path_outside_the_repository() -> None:
    assert "../" not in README
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target
    for path in re.findall(r"`((?:contrib|compat|man|bench|tests|wgpy|uapi)/[\w./@-]+)`", README):
        assert (ROOT / path.rstrip("/")).exists(), path


def test_readme_covers_what_an_operator_needs() -> None:
    for needed in ("ip link del", "SIGTERM", "wg-quick down", "pip install", ".whl",
                   "contrib/Containerfile", "contrib/compose.yaml", "contrib/wgpy-up",
                   "wg-quick@.service.d/wgpy.conf", "WG_QUICK_USERSPACE_IMPLEMENTATION",
                   "compat/README.md", "## Performance", "LICENSE"):
        assert needed in README, needed


def test_man_page_documents_every_variable_and_option() -> None:
    variables = {cli.ENV_TUN_FD, cli.ENV_UAPI_FD, cli.ENV_FOREGROUND, cli.ENV_READY_FD,
                 cli.ENV_KEYLOG, cli.ENV_METRICS, cli.ENV_METRICS_FD,
                 "LOG_LEVEL", "WGPY_SWITCH", "WGPY_CRYPTO_WORKERS", "WGPY_PURE_PYTHON",
                 "WG_QUICK_USERSPACE_IMPLEMENTATION"}
    source = (ROOT / "wgpy" / "cli.py").read_text()
    read = set(re.findall(r'"((?:WG|WGPY|LOG)_[A-Z_]+)"', source))
    assert read <= variables, f"cli.py reads {read - variables}: document them"
    for variable in variables:
        assert re.search(rf"^\.TP\n\.BR? [^\n]*\b{variable}\b", MAN, re.M), \
            f"{variable} has no entry in man/wgpy.8"
    for option in (r"\-f", r"\-\-foreground", r"\-\-version"):
        assert option in MAN, option
    for section in (".SH CONTAINERS", ".SH SYSTEMD", ".SH WG-QUICK", ".SH EXIT STATUS"):
        assert section in MAN, section
    assert "mknod /dev/net/tun c 10 200" in MAN


# --- the command line, without root -------------------------------------------------------------

def wgpy_cmd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("LOG_LEVEL", "WG_TUN_FD", "WG_UAPI_FD", "WG_PROCESS_FOREGROUND",
                          "WGPY_SWITCH", "WGPY_CRYPTO_WORKERS")}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "wgpy", *args], capture_output=True,
                          text=True, timeout=30, env=clean, stdin=subprocess.DEVNULL)


def test_version() -> None:
    result = wgpy_cmd("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"wgpy v{wgpy.__version__}\n")


@pytest.mark.parametrize(("env", "message"), [
    ({"WG_TUN_FD": "abc"}, "Failed to create TUN device: WG_TUN_FD='abc' is not a file "
                           "descriptor number"),
    ({"WG_TUN_FD": "-1"}, "WG_TUN_FD='-1' is not a file descriptor number"),
    ({"WGPY_SWITCH": "fast"}, "WGPY_SWITCH='fast' is not a number of seconds"),
    ({"WGPY_SWITCH": "0"}, "WGPY_SWITCH='0' is not a number of seconds"),
    ({"WGPY_CRYPTO_WORKERS": "0"}, "WGPY_CRYPTO_WORKERS='0' is not a number of threads"),
    ({"WGPY_CRYPTO_WORKERS": "two"}, "WGPY_CRYPTO_WORKERS='two' is not a number of threads"),
    ({"WGPY_CRYPTO_WORKERS": "17"}, "WGPY_CRYPTO_WORKERS='17' is not a number of threads"),
])
def test_bad_environment_is_one_clear_line(env: dict[str, str], message: str) -> None:
    result = wgpy_cmd("-f", "wgbad0", **env)
    assert result.returncode == 1
    assert result.stderr == "", result.stderr
    (line,) = result.stdout.splitlines()
    assert re.match(r"^ERROR: \(wgbad0\) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", line), line
    assert message in line, line


def test_fd_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WG_TUN_FD", "")
    assert cli._fd_from_env("WG_TUN_FD") is None  # empty counts as unset
    monkeypatch.delenv("WG_TUN_FD")
    assert cli._fd_from_env("WG_TUN_FD") is None
    monkeypatch.setenv("WG_TUN_FD", " 7 ")
    assert cli._fd_from_env("WG_TUN_FD") == 7
    monkeypatch.setenv("WG_TUN_FD", "3x")
    with pytest.raises(ValueError, match="not a file descriptor number"):
        cli._fd_from_env("WG_TUN_FD")


def test_missing_tun_device_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(tun, "TUN_PATH", str(tmp_path / "net" / "tun"))
    with pytest.raises(tun.TunError) as caught:
        tun.Tun.create("wgmissing0")
    message = str(caught.value)
    assert "No such file or directory" in message
    assert "--device /dev/net/tun" in message and "mknod /dev/net/tun c 10 200" in message


def test_logger_writes_to_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    handler = configure_daemon(ERROR)  # what the daemon does at startup
    try:
        Logger("wg7", ERROR).error("boom %d", 1)
        Logger("wg7", ERROR).verbose("not at error level")
    finally:
        logging.getLogger("wgpy").removeHandler(handler)
        logging.getLogger("wgpy").setLevel(logging.NOTSET)
    assert re.fullmatch(r"ERROR: \(wg7\) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d boom 1\n",
                        out.getvalue())

"""The core is sans-IO: only wgpy/device/, wgpy/cli.py and uapi/client.py may touch
sockets, threads, fds, the clock, netlink or processes (the test lab too lives in
wgpy/device/lab.py; wgpy/testing/ only names it for tests). This test fails if any other
module imports them, or if the daemon imports wgpy.testing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"socket", "select", "selectors", "threading", "fcntl", "time", "pyroute2",
             "asyncio", "subprocess"}
ALLOWED = ("wgpy/device/", "wgpy/cli.py", "uapi/client.py")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def core_files() -> list[Path]:
    files = sorted((ROOT / "wgpy").rglob("*.py")) + sorted((ROOT / "uapi").rglob("*.py"))
    return [f for f in files if not str(f.relative_to(ROOT)).startswith(ALLOWED)]


def test_core_is_sans_io() -> None:
    files = core_files()
    assert len(files) >= 10  # the scan really looks at the core
    leaks = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_layering_check_catches_a_leak(tmp_path: Path) -> None:
    bad = tmp_path / "leaky.py"
    bad.write_text("import socket\nfrom time import monotonic\n")
    assert imported_modules(bad) & FORBIDDEN == {"socket", "time"}


def test_daemon_never_imports_the_test_tooling() -> None:
    every = sorted((ROOT / "wgpy").rglob("*.py")) + sorted((ROOT / "uapi").rglob("*.py"))
    files = [f for f in every if "testing" not in f.relative_to(ROOT).parts]
    assert len(files) >= 10
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("wgpy.testing"), f
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("wgpy.testing") for a in node.names), f


def test_uapi_never_imports_wgpy() -> None:
    for f in sorted((ROOT / "uapi").rglob("*.py")):
        assert "wgpy" not in imported_modules(f), f


def test_no_source_file_over_700_lines() -> None:
    for f in sorted((ROOT / "wgpy").rglob("*.py")) + sorted((ROOT / "uapi").rglob("*.py")):
        assert len(f.read_text().splitlines()) <= 700, f


def test_importing_the_core_loads_no_io_module_indirectly() -> None:
    """The import statements above are direct; this catches a core module that reaches our
    I/O code through a package __init__ (uapi's once loaded uapi.client, hence socket).
    Only our modules are looked for: libraries may load the stdlib's I/O modules themselves
    (a dependency may import platform, which imports subprocess, select and fcntl on 3.10)."""
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                     for p in core_files() if p.name not in ("__init__.py", "__main__.py")
                     and "testing" not in p.parts)  # names for the lab, as __init__ for Device
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print(' '.join(sorted(m for m in sys.modules if m == 'wgpy.cli' or m.startswith("
            "('wgpy.device', 'uapi.client', 'wgpy.testing', 'pyroute2')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []

"""The core is sans-IO: only wgpy/device/, wgpy/cli.py and uapi/client.py may touch
sockets, threads, fds, the clock, netlink or processes (the test lab too lives in
wgpy/testing/lab.py; wgpy/testing/ only names it for tests). This test fails if any other
module imports them, or if the daemon imports wgpy.testing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"socket", "select", "selectors", "threading", "fcntl", "time", "pyroute2",
             "asyncio", "subprocess"}
ALLOWED = ("wgpy/device/", "wgpy/link/", "wgpy/ipc/", "wgpy/observe/", "wgpy/api/",
           "wgpy/testing/", "wgpy/cli.py", "uapi/client.py")
# Which rooms each room may import (besides the core and itself). The core imports none.
ROOMS = {
    "wgpy.device": set(),
    "wgpy.link": {"wgpy.device"},
    "wgpy.ipc": {"wgpy.device"},
    "wgpy.observe": {"wgpy.device"},
    "wgpy.api": {"wgpy.device", "wgpy.ipc", "wgpy.link", "wgpy.observe"},
    "wgpy.cli": {"wgpy.device", "wgpy.ipc", "wgpy.link", "wgpy.observe", "wgpy.api"},
    "wgpy.__main__": {"wgpy.cli"},
    "wgpy.testing": {"wgpy.device", "wgpy.ipc", "wgpy.link", "wgpy.observe", "wgpy.api",
                     "wgpy.cli"},
}


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
    files = [f for pattern in ("*.py", "*.c", "*.h") for top in ("wgpy", "uapi")
             for f in sorted((ROOT / top).rglob(pattern))]
    assert any(f.suffix == ".c" for f in files)  # the compiled batch path is looked at too
    for f in files:
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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The wgpy modules `path` imports when it runs (also inside functions; not under `if
    TYPE_CHECKING`): `from a.b import c` is a.b.c when that is a module, else a.b."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    found.add(full)
                elif node.module in known:
                    found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in sorted((ROOT / "wgpy").rglob("*.py"))}
    known = set(files)
    return {name: runtime_imports(path, known) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def room_of(module: str) -> str | None:
    return next((r for r in ROOMS if module == r or module.startswith(r + ".")), None)


def test_no_import_circles_inside_wgpy() -> None:
    graph = import_graph()
    assert len(graph) >= 40 and graph["wgpy.device.device"]  # the scan sees the tree
    # Package __init__ files only document their room (wgpy's own names the API lazily).
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_rooms_import_in_one_direction() -> None:
    wrong = {}
    for module, imports in import_graph().items():
        room = room_of(module)
        others = {room_of(m) for m in imports} - {None, room}
        if room is None:  # the core: no room at all
            allowed: set[str] = set()
        else:
            allowed = ROOMS[room]
        if others - allowed:
            wrong[module] = sorted(others - allowed)
    assert wrong == {}


def test_only_the_link_imports_pyroute2() -> None:
    files = sorted((ROOT / "wgpy").rglob("*.py")) + sorted((ROOT / "uapi").rglob("*.py"))
    users = {str(f.relative_to(ROOT)) for f in files if "pyroute2" in imported_modules(f)}
    assert users and all(u.startswith(("wgpy/link/", "wgpy/testing/")) for u in users), users

"""wgpy's pytest plugin as a user gets it (issue 11 item 2): a test module outside the
repository that imports only the installed package, run by `python -m pytest` in a fresh
directory, with no conftest and no path to the repository.

The module is the example of docs/testing.md (read from the page, so the page cannot drift
from what works), plus three pieces this test appends: an autouse fixture that writes down
what each test's lab built (namespaces, interfaces, sockets, daemon pids; and checks they
exist at that moment), a test that fails on purpose after its tunnel worked, and a test
whose fixture setup breaks on purpose after wgpy started. The outer test then checks the
inner run's counts (junit-xml) and that nothing it recorded is left: no namespace, no
interface, no UAPI socket, no daemon, no lab directory. It also checks that `-p no:wgpy`
takes the fixtures away, and (without root) that the package docstring's example is the
page's.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest

import wgpy.testing
from wgpy.testing.lab import run

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "testing.md"
INNER_TIMEOUT = 300.0
STDLIB_OK = {"typing", "json", "os", "sys", "importlib", "pathlib", "subprocess", "time"}

# Appended to the page's example in the inner module: not part of the page.
APPENDIX = '''

# --- appended by compat/test_plugin.py (not part of docs/testing.md) ---
import importlib.util as _util
import json as _json
import os as _os
import subprocess as _subprocess
import sys as _sys

import pytest as _pytest

_RECORD = _os.environ["WGPY_PLUGIN_RECORD"]
_REPO = _os.environ["WGPY_PLUGIN_REPO"]


def _write(entry):
    with open(_RECORD, "a") as f:
        f.write(_json.dumps(entry) + "\\n")


@_pytest.fixture(autouse=True)
def _record_what_the_lab_built(request, wg_lab):
    # Only the installed package: neither the repository nor its compat/ is importable.
    assert not any(_os.path.realpath(p or ".") == _REPO for p in _sys.path), _sys.path
    assert _util.find_spec("compat") is None
    _write({"setup": request.node.name, "tag": wg_lab.tag})
    yield
    listed = _subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=10).stdout.split()
    _write({
        "test": request.node.name,
        "tag": wg_lab.tag,
        "tmp": str(wg_lab.tmp),
        "namespaces": [ns.name for ns in wg_lab.namespaces],
        "interfaces": [d.ifname for d in wg_lab.daemons],
        "sockets": [str(d.socket) for d in wg_lab.daemons],
        "pids": [d.proc.pid for d in wg_lab.daemons if d.proc is not None],
        "existed": all(ns.name in listed for ns in wg_lab.namespaces)
        and all(d.socket.exists() and d.alive() for d in wg_lab.daemons),
    })


def test_fails_on_purpose(wg_tunnel):
    ping = wg_tunnel.ping(wg_tunnel.a, wg_tunnel.b)
    assert ping.returncode == 0, ping.stdout + wg_tunnel.logs()
    assert False, "failing on purpose, after the tunnel worked"


@_pytest.fixture
def _breaks_after_wgpy_started(wg_wgpy_peer):
    raise RuntimeError("a fixture failing on purpose, after wg_wgpy_peer started")


def test_setup_fails_on_purpose(_breaks_after_wgpy_started):
    pass
'''

PURPOSELY_BAD = {"test_fails_on_purpose": ("failure", 2),
                 "test_setup_fails_on_purpose": ("error", 1)}


def doc_example() -> str:
    """The first ```python block of docs/testing.md."""
    m = re.search(r"^```python\n(.*?)^```$", DOC.read_text(), re.M | re.S)
    assert m, f"no python example in {DOC}"
    return m.group(1)


def inner_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that points pytest or Python elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
                        "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONSTARTUP")}
    env.update(WGPY_REQUIRE_ROOT="1", **extra)
    return env


@pytest.fixture
def outside() -> Iterator[Path]:
    """A fresh directory outside the repository, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="wgpy-plugin-user-"))
    assert ROOT not in path.resolve().parents and not (path / "conftest.py").exists()
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], timeout=30)


def run_inner(where: Path, *args: str, env: dict[str, str]
              ) -> subprocess.CompletedProcess[str]:
    """`python -m pytest` in `where`, in a session of its own, bounded in time: on timeout
    the whole session (pytest and the daemons it started) is killed by its group id."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    proc = subprocess.Popen(argv, cwd=where, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=INNER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"the inner pytest run took over {INNER_TIMEOUT} s:\n{out}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def remove_leftovers(records: list[dict[str, Any]]) -> None:
    """After a broken inner run: delete the namespaces of the labs it started (exact tags)."""
    tags = {r["tag"] for r in records}
    for name in run("ip", "netns", "list", check=False).stdout.split():
        if name.startswith("wgpy-") and name.rsplit("-", 1)[-1] in tags:
            run("ip", "netns", "del", name, check=False)


def leftovers(records: list[dict[str, Any]]) -> list[str]:
    """Whatever the recorded labs built that still exists."""
    left: list[str] = []
    namespaces = set(run("ip", "netns", "list").stdout.split())
    for r in records:
        left += [f"namespace {n}" for n in r["namespaces"] if n in namespaces]
        left += [f"namespace file {n}" for n in r["namespaces"]
                 if Path("/run/netns", n).exists()]
        left += [f"interface {i}" for i in r["interfaces"] if Path("/sys/class/net", i).exists()]
        left += [f"socket {s}" for s in r["sockets"] if Path(s).exists()]
        for pid, ifname in zip(r["pids"], r["interfaces"]):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if ifname.encode() in cmdline:
                left.append(f"daemon pid {pid} ({ifname})")
        if Path(r["tmp"]).exists():
            left.append(f"lab directory {r['tmp']}")
    return left


def junit_cases(path: Path) -> dict[str, str]:
    """test name -> passed | failure | error | skipped."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        cases[case.get("name", "")] = kinds[0] if kinds else "passed"
    return cases


# --- without root ----------------------------------------------------------------------------

def test_doc_example_imports_only_the_installed_package() -> None:
    tree = ast.parse(doc_example())
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module
            top.add(node.module.split(".")[0])
    assert "wgpy" in top and top <= {"wgpy", "pytest"} | STDLIB_OK, top
    tests = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert len(tests) >= 3 and all(t.startswith("test_") for t in tests), tests


def test_package_docstring_example_is_the_pages() -> None:
    doc = wgpy.testing.__doc__ or ""
    m = re.search(r"starts so:\n\n((?:    .*\n|\n)+)", doc)
    assert m, "no example in wgpy/testing/__init__.py's docstring"
    block = textwrap.dedent(m.group(1)).strip()
    imports, _, function = block.partition("\n\n\n")
    # The same test function as the page's (which the root test below runs), and imports
    # that the page's example has too.
    assert function.startswith("def test_") and function.count("\n") >= 5, block
    assert function in doc_example(), function
    page = ast.parse(doc_example())
    page_names = {(n.module, a.name) for n in page.body if isinstance(n, ast.ImportFrom)
                  for a in n.names}
    mine = {(n.module, a.name) for n in ast.parse(imports).body
            if isinstance(n, ast.ImportFrom) for a in n.names}
    assert mine and mine <= page_names, (mine, page_names)


def test_readme_points_to_the_page() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.index("## Testing with wgpy\n")
    assert section < readme.index("## Compatibility\n")
    assert "(docs/testing.md)" in readme[section:readme.index("## Compatibility\n")]


def test_entry_point_is_registered() -> None:
    import importlib.metadata

    eps = importlib.metadata.entry_points(group="pytest11")
    assert [e.value for e in eps if e.name == "wgpy"] == ["wgpy.testing.plugin"]


# --- as root: the page's example, run where a user would run it --------------------------

@pytest.mark.root
def test_doc_example_runs_outside_the_repository_and_cleans_up(outside: Path) -> None:
    (outside / "test_wireguard.py").write_text(doc_example() + APPENDIX)
    record, junit = outside / "record.jsonl", outside / "junit.xml"
    env = inner_env(WGPY_PLUGIN_RECORD=str(record), WGPY_PLUGIN_REPO=os.path.realpath(ROOT))
    try:
        result = run_inner(outside, f"--junitxml={junit}", "test_wireguard.py", env=env)
    finally:
        records = read_records(record)
        if not junit.exists():
            remove_leftovers(records)
    out = result.stdout
    doc_tests = [n.name for n in ast.parse(doc_example()).body
                 if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]

    assert junit.exists(), out
    cases = junit_cases(junit)
    assert set(cases) == set(doc_tests) | set(PURPOSELY_BAD), (cases, out)
    for name in doc_tests:
        assert cases[name] == "passed", f"{name}: {cases[name]}\n{out}"
    for name, (kind, _) in PURPOSELY_BAD.items():
        assert cases[name] == kind, f"{name}: {cases[name]}\n{out}"
    assert result.returncode == 1, out  # tests failed, none crashed pytest
    assert "failing on purpose, after the tunnel worked" in out
    assert re.search(rf"{len(doc_tests)} passed", out) and "1 failed" in out and \
        "1 error" in out, out

    done = {r["test"]: r for r in records if "test" in r}
    assert set(done) == set(cases), records  # every test's lab was recorded at teardown
    assert all(r["existed"] for r in done.values()), records  # and was real then
    for name, (_, daemons) in PURPOSELY_BAD.items():
        assert len(done[name]["interfaces"]) == daemons, done[name]
    assert all(len(r["namespaces"]) >= 2 and r["interfaces"] for r in done.values()), records
    assert leftovers(list(done.values())) == [], out


@pytest.mark.root
def test_no_wgpy_takes_the_fixtures_away(outside: Path) -> None:
    (outside / "test_lab.py").write_text("def test_lab(wg_lab):\n    assert wg_lab.tag\n")
    off = run_inner(outside, "-p", "no:wgpy", "test_lab.py", env=inner_env())
    assert off.returncode == 1 and "fixture 'wg_lab' not found" in off.stdout, off.stdout
    assert "1 error" in off.stdout, off.stdout
    on = run_inner(outside, "test_lab.py", env=inner_env())
    assert on.returncode == 0 and "1 passed" in on.stdout, on.stdout
    # docs/testing.md: without autoloading, `-p wgpy.testing.plugin` asks for it.
    no_autoload = inner_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    off = run_inner(outside, "test_lab.py", env=no_autoload)
    assert "fixture 'wg_lab' not found" in off.stdout, off.stdout
    on = run_inner(outside, "-p", "wgpy.testing.plugin", "test_lab.py", env=no_autoload)
    assert on.returncode == 0 and "1 passed" in on.stdout, on.stdout


@pytest.mark.root
def test_the_lab_runs_python_m_wgpy_when_there_is_no_console_script(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A package installed without scripts (or run from a checkout): the lab starts the
    daemon as `python -m wgpy`, and that daemon serves `wg` and stops like the other."""
    import wgpy.testing.lab as device_lab

    monkeypatch.setattr(device_lab, "WGPY", "/nonexistent/wgpy")
    with device_lab.Lab() as lab:
        ns = lab.namespace("pm")
        d = lab.daemon(ns, "wgpy")
        assert d.proc is not None  # ip netns exec NS python -m wgpy IFNAME
        assert d.proc.args[4:7] == [sys.executable, "-m", "wgpy"], d.proc.args
        lab.configure(d, "10.211.0.1/24", 51829)
        assert d.dump().listen_port == 51829
        assert lab.stop(d) == 0
        assert not d.socket.exists()

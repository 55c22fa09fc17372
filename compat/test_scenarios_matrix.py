"""The scenario × pair matrix (compat/matrix.py, compat/README.md), without root: the registry
is consistent with the test modules, results render as documented, and the committed
README holds exactly the matrix written from the committed results
(compat/matrix-results.json); `matrix.py --check` fails when a run's results differ."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

from compat import matrix

HERE = Path(__file__).resolve().parent


def functions(module: str) -> set[str]:
    tree = ast.parse((HERE / f"{module}.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def junit(results: dict[str, dict[str, str]]) -> str:
    cases = []
    for key, r in results.items():
        module, _, name = key.partition("::")
        message = quoteattr(r["message"])
        body = {"passed": "",
                "failed": f"<failure message={message}/>",
                "xfailed": f'<skipped type="pytest.xfail" message={message}/>',
                "skipped": f'<skipped type="pytest.skip" message={message}/>'}[r["outcome"]]
        cases.append(f'<testcase classname="compat.{module}" name={quoteattr(name)}>{body}'
                     "</testcase>")
    return ('<?xml version="1.0"?><testsuites><testsuite name="pytest">' + "".join(cases)
            + "</testsuite></testsuites>")


def test_registry_names_existing_tests() -> None:
    for row, sels in matrix.SCENARIOS.items():
        assert sels, row
        for sel in sels:
            assert sel.function in functions(sel.module), (row, sel)
            assert sel.pair in (None, *matrix.PAIRS), (row, sel)


def test_every_scenario_test_has_a_row() -> None:
    known = {(s.module, s.function) for sels in matrix.SCENARIOS.values() for s in sels}
    for module in ("test_scenarios", "test_scenarios_net", "test_scenarios_ipc", "test_kernel"):
        missing = {f for f in functions(module) if f.startswith("test_")} - {
            f for m, f in known if m == module}
        assert not missing, (module, missing)


def test_not_applicable_cells_are_rows_and_pairs_and_have_no_fixed_tests() -> None:
    for (row, pair), reason in matrix.NOT_APPLICABLE.items():
        assert row in matrix.SCENARIOS and pair in matrix.PAIRS, (row, pair)
        assert reason.strip(), (row, pair)
        assert all(sel.pair != pair for sel in matrix.SCENARIOS[row]), (row, pair)


def test_pairs_read_from_ids() -> None:
    assert matrix.pair_of("wgpy-wgpy-outer4-tcp-inner6") == "wgpy-wgpy"
    assert matrix.pair_of("outer6-wgpy-wireguard-go") == "wgpy-wireguard-go"
    assert matrix.pair_of("wgpy-kernel-wgpy-key-change") == "wgpy-kernel"
    assert matrix.pair_of("wggo-wgpy-outer4-init-a") == "wgpy-wireguard-go"
    assert matrix.pair_of("wgpy-wggo-outer6-init-b") == "wgpy-wireguard-go"
    assert matrix.pair_of("outer4") is None


def test_render(tmp_path: Path) -> None:
    results = {
        "test_scenarios::test_big_mtu[wgpy-wgpy]": {"outcome": "passed", "message": ""},
        "test_scenarios::test_big_mtu[wgpy-wireguard-go]": {"outcome": "failed",
                                                             "message": ""},
        "test_scenarios::test_flood_ping[wgpy-wgpy-outer4]": {"outcome": "passed",
                                                              "message": ""},
        "test_scenarios::test_flood_ping[wgpy-wgpy-outer6]": {"outcome": "xfailed",
                                                              "message": "reason: because"},
        "test_scenarios::test_counters[wgpy-wgpy]": {"outcome": "skipped", "message": ""},
        "test_kernel::test_kernel_rekey[wgpy-kernel-wgpy-key-change]": {
            "outcome": "passed", "message": ""},
        "test_kernel::test_kernel_rekey[wgpy-kernel-kernel-initiates]": {
            "outcome": "failed", "message": ""},
    }
    path = tmp_path / "r.xml"
    path.write_text(junit(results))
    assert matrix.read_junit([path]) == results
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
            for line in matrix.render(results).splitlines() if line.startswith("| ")}
    big = rows["big MTU (34736), 30,000-byte pings"]
    assert big[0] == "pass" and big[1] == "**fail**" and big[2] == "not run"
    assert big[3].startswith("n/a [")
    assert rows["flood ping v4/v6, outer v4/v6"][0] == "xfail [1]"
    assert rows["counters: `ip -stats link`, `wg show transfer`"][0] == "skipped"
    assert rows["private-key change, then a fresh handshake"][3].rstrip(" |") == "pass"
    assert rows["rekey (a fresh handshake over a live session)"][3].rstrip(" |") == "**fail**"
    assert rows["roaming: new address and port learnt"][0] == "not run"
    assert "1. because" in matrix.render(results)


def test_committed_matrix_is_written_from_committed_results() -> None:
    results = json.loads(matrix.RESULTS.read_text())
    readme = matrix.README.read_text()
    assert matrix.committed_matrix(readme) == matrix.render(results)
    cells = matrix.render(results)
    assert "**fail**" not in cells and "not run" not in cells and "skipped" not in cells, \
        "every cell of the committed matrix passes, is a known xfail, or does not apply"


def test_check_fails_when_a_run_differs(tmp_path: Path) -> None:
    results = json.loads(matrix.RESULTS.read_text())
    same = tmp_path / "same.xml"
    same.write_text(junit(results))
    assert matrix.main(["--check", str(same)]) == 0
    key = sorted(k for k, r in results.items() if r["outcome"] == "passed")[0]
    changed = dict(results, **{key: {"outcome": "failed", "message": ""}})
    other = tmp_path / "other.xml"
    other.write_text(junit(changed))
    assert matrix.main(["--check", str(other)]) == 1

"""The scenario × pair matrix of issue 8 in compat/README.md, written from a run of the suite.

    sudo .venv/bin/python compat/matrix.py --run            # run the rows' tests, write it
    .venv/bin/python compat/matrix.py results.xml [more.xml] # write it from junit-xml files
    .venv/bin/python compat/matrix.py --check results.xml    # exit 1 if README.md differs

Rows and cells come from the registry below, never from what a run happened to skip:

- `SCENARIOS`: each row names the tests that decide it (`Sel`: module, function, optionally a
  regular expression on the parameter id, optionally a fixed pair for tests whose id carries
  none). A test's pair is read from its id: `wgpy-wgpy`, `wgpy-wireguard-go`,
  `wgpy-upstream` (today's wireguard-go), `wgpy-kernel` (and test_interop.py's older
  `wgpy-wggo` / `wggo-wgpy`, and `wgpy-wgup` / `wgup-wgpy` for today's wireguard-go).
- `NOT_APPLICABLE`: (row, pair) → why that cell does not apply.

A cell is `pass` when every test of it passed; `fail` when one failed or errored (an
xfail(strict=True) that passes is a failure too); `xfail` with a numbered note (the test's
reason) when the rest passed and one failed as expected; `skipped` when its tests were
skipped (a CI fault: root tests must run); `not run` when the results hold none of its
tests; `n/a [x]` from NOT_APPLICABLE, its reason listed under the table. The outcomes the
matrix was written from are kept next to it (compat/matrix-results.json), so that
compat/test_scenarios_matrix.py can check, without root, that the committed README is what
this script writes from them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "matrix-results.json"
BEGIN, END = "<!-- matrix:begin (written by compat/matrix.py) -->", "<!-- matrix:end -->"

PAIRS = ("wgpy-wgpy", "wgpy-wireguard-go", "wgpy-upstream", "wgpy-kernel")
ALIASES = {"wgpy-wgpy": "wgpy-wgpy", "wgpy-wireguard-go": "wgpy-wireguard-go",
           "wgpy-kernel": "wgpy-kernel", "wgpy-wggo": "wgpy-wireguard-go",
           "wggo-wgpy": "wgpy-wireguard-go", "wgpy-upstream": "wgpy-upstream",
           "wgpy-wgup": "wgpy-upstream", "wgup-wgpy": "wgpy-upstream"}
_PAIR_RE = re.compile(r"(?:^|-)(" + "|".join(map(re.escape, sorted(ALIASES, key=len,
                                                                   reverse=True)))
                      + r")(?=-|$)")


@dataclass(frozen=True)
class Sel:
    """Tests `module::function[...]` whose parameter id matches `match` (a regex searched in
    it); their pair comes from the id, or is `pair` for tests whose id has none."""

    module: str
    function: str
    match: str | None = None
    pair: str | None = None


S, N, I = "test_scenarios", "test_scenarios_net", "test_scenarios_ipc"
K, IO = "test_kernel", "test_interop"

# row label → the tests that decide it
SCENARIOS: dict[str, tuple[Sel, ...]] = {
    "TUNs in their own namespaces, endpoints on loopback": (
        Sel(S, "test_tuns_in_their_own_namespaces"),),
    "handshake initiated by either side, outer v4/v6": (
        Sel(IO, "test_matrix"), Sel(K, "test_kernel_handshake")),
    "ping v4/v6 inside": (
        Sel(IO, "test_matrix"), Sel(S, "test_tuns_in_their_own_namespaces"),
        Sel(K, "test_kernel_ping")),
    "preshared key (and a mismatched one fails)": (
        Sel(S, "test_preshared_key"), Sel(K, "test_kernel_psk")),
    "counters: `ip -stats link`, `wg show transfer`": (
        Sel(S, "test_counters"), Sel(K, "test_kernel_ping")),
    "flood ping v4/v6, outer v4/v6": (Sel(S, "test_flood_ping"),),
    "big MTU (34736), 30,000-byte pings": (Sel(S, "test_big_mtu"),),
    "iperf3 TCP and UDP, v4/v6 inside, v4/v6 outside": (Sel(S, "test_iperf3"),),
    "roaming: new address and port learnt": (
        Sel(S, "test_roaming"), Sel(K, "test_kernel_roaming")),
    "reverse-path filter: a more specific peer drops, removing it restores": (
        Sel(S, "test_reverse_path_filter"),),
    "NAT: SNAT, 2 s conntrack timeout, keepalive keeps it open": (
        Sel(N, "test_nat_persistent_keepalive"),),
    "persistent keepalive": (
        Sel(N, "test_nat_persistent_keepalive"), Sel(K, "test_kernel_persistent_keepalive")),
    "multihomed: sticky source fails over when its address goes": (
        Sel(N, "test_sticky_source_fails_over"),
        Sel("test_sticky", "test_first_packet_after_the_sticky_address_vanishes_arrives",
            pair="wgpy-wireguard-go")),
    "multihomed: replies leave from the address the peer used": (
        Sel(N, "test_sticky_source_replies_to_sender"),
        Sel("test_netns", "test_replies_leave_from_the_address_the_peer_used",
            pair="wgpy-wireguard-go")),
    "multihomed: spoofed junk/forged/replayed datagrams do not move it": (
        Sel(N, "test_sticky_source_not_moved_by_spoofed_datagrams"),),
    "link down and up": (Sel(N, "test_link_down_and_up"),),
    "TUN moved to another namespace: MTU and link state followed": (
        Sel(S, "test_moved_tun_mtu_is_followed"),
        Sel(S, "test_moved_tun_link_down_answers_nothing")),
    "private-key change, then a fresh handshake": (
        Sel(S, "test_private_key_change_then_fresh_handshake"),
        Sel(K, "test_kernel_rekey", match="key-change")),
    "rekey (a fresh handshake over a live session)": (
        Sel(S, "test_forced_rekey"),
        Sel(IO, "test_rekey_after_time_with_traffic", pair="wgpy-wireguard-go"),
        Sel(K, "test_kernel_rekey", match="initiates")),
    "route MTU below the interface MTU": (Sel(N, "test_route_mtu_below_interface_mtu"),),
    "route MTU: padding stops at the route's MTU (netns.sh's exact check)": (
        Sel(N, "test_route_mtu_padding_as_the_kernel"),),
    "low-order public key: nothing sent": (Sel(I, "test_low_order_public_keys_send_nothing"),),
    "IPC: 130,560 allowed IPs on one peer": (
        Sel("test_uapi_compat", "test_setconf_with_130560_allowed_ips",
            pair="wgpy-wireguard-go"),),
    "IPC: 40 peers × 52 allowed IPs": (Sel(I, "test_ipc_40_peers_52_allowed_ips"),),
    "IPC: 29 empty peers, no private key": (Sel(I, "test_ipc_29_empty_peers"),),
    "IPC: 197 allowed IPs next to an empty peer": (
        Sel(I, "test_ipc_197_allowed_ips_next_to_an_empty_peer"),),
    "IPC: `wg show doesnotexist` fails": (Sel(I, "test_wg_show_doesnotexist"),),
    "the kernel peer is kernel WireGuard": (Sel(K, "test_kernel_peer_is_the_kernel_module"),),
}

ONE_INTERFACE = ("one interface, no peer: run on wgpy and wireguard-go side by side "
                 "(the wgpy-wireguard-go cell)")
KERNEL_SCOPE = ("not in the kernel peer's set (issue 8: handshakes, ping, PSK, rekey, "
                "keepalive, roaming)")
KERNEL_UAPI = "UAPI of wgpy's socket; the kernel is configured over netlink"
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("TUNs in their own namespaces, endpoints on loopback", "wgpy-kernel"):
        "the kernel's wg0 and its socket live in a VM, reached over a tap link",
    ("flood ping v4/v6, outer v4/v6", "wgpy-kernel"): KERNEL_SCOPE,
    ("big MTU (34736), 30,000-byte pings", "wgpy-kernel"): KERNEL_SCOPE,
    ("iperf3 TCP and UDP, v4/v6 inside, v4/v6 outside", "wgpy-kernel"): KERNEL_SCOPE,
    ("reverse-path filter: a more specific peer drops, removing it restores",
     "wgpy-kernel"): KERNEL_SCOPE,
    ("NAT: SNAT, 2 s conntrack timeout, keepalive keeps it open", "wgpy-kernel"):
        "no router namespace between host and VM to SNAT in (keepalive: its own row)",
    ("multihomed: sticky source fails over when its address goes", "wgpy-kernel"):
        KERNEL_SCOPE,
    ("multihomed: replies leave from the address the peer used", "wgpy-kernel"):
        KERNEL_SCOPE,
    ("multihomed: spoofed junk/forged/replayed datagrams do not move it", "wgpy-kernel"):
        KERNEL_SCOPE,
    ("link down and up", "wgpy-kernel"): KERNEL_SCOPE,
    ("TUN moved to another namespace: MTU and link state followed", "wgpy-kernel"):
        "the kernel's wg0 is in a VM and not moved",
    ("route MTU below the interface MTU", "wgpy-kernel"): KERNEL_SCOPE,
    ("route MTU: padding stops at the route's MTU (netns.sh's exact check)", "wgpy-kernel"):
        KERNEL_SCOPE,
    ("low-order public key: nothing sent", "wgpy-wgpy"): ONE_INTERFACE,
    ("low-order public key: nothing sent", "wgpy-kernel"): "one wgpy interface, no peer",
    ("IPC: 130,560 allowed IPs on one peer", "wgpy-wgpy"): ONE_INTERFACE,
    ("IPC: 130,560 allowed IPs on one peer", "wgpy-kernel"): KERNEL_UAPI,
    ("IPC: 40 peers × 52 allowed IPs", "wgpy-wgpy"): ONE_INTERFACE,
    ("IPC: 40 peers × 52 allowed IPs", "wgpy-kernel"): KERNEL_UAPI,
    ("IPC: 29 empty peers, no private key", "wgpy-wgpy"): ONE_INTERFACE,
    ("IPC: 29 empty peers, no private key", "wgpy-kernel"): KERNEL_UAPI,
    ("IPC: 197 allowed IPs next to an empty peer", "wgpy-wgpy"): ONE_INTERFACE,
    ("IPC: 197 allowed IPs next to an empty peer", "wgpy-kernel"): KERNEL_UAPI,
    ("IPC: `wg show doesnotexist` fails", "wgpy-wgpy"): ONE_INTERFACE,
    ("IPC: `wg show doesnotexist` fails", "wgpy-kernel"): KERNEL_UAPI,
    ("the kernel peer is kernel WireGuard", "wgpy-wgpy"): "a check of the kernel VM itself",
    ("the kernel peer is kernel WireGuard", "wgpy-wireguard-go"):
        "a check of the kernel VM itself",
}

# Today's wireguard-go (compat/upstream.py) is a pair of test_scenarios, test_scenarios_net
# and test_interop; the rows decided by other modules run against Debian's build only.
UPSTREAM_MODULES = {S, N, IO}
UPSTREAM_SCOPE = ("run against Debian's wireguard-go (the wgpy-wireguard-go cell); today's "
                  "wireguard-go joins test_scenarios, test_scenarios_net and test_interop")
for _row, _sels in SCENARIOS.items():
    if not any(sel.module in UPSTREAM_MODULES and sel.pair is None for sel in _sels):
        NOT_APPLICABLE.setdefault((_row, "wgpy-upstream"), UPSTREAM_SCOPE)


# --- reading results ----------------------------------------------------------------------------

def read_junit(paths: list[Path]) -> dict[str, dict[str, str]]:
    """{"module::name[params]": {"outcome": passed|failed|xfailed|skipped, "message": ...}}"""
    results: dict[str, dict[str, str]] = {}
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            module = case.get("classname", "").rsplit(".", 1)[-1]
            key = f"{module}::{case.get('name', '')}"
            outcome, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome, message = "failed", child.get("message", "")
                    break
                if child.tag == "skipped":
                    xfail = child.get("type") == "pytest.xfail"
                    outcome = "xfailed" if xfail else "skipped"
                    message = child.get("message", "")
            results[key] = {"outcome": outcome, "message": message}
    return results


def split_id(key: str) -> tuple[str, str, str]:
    """"mod::func[params]" → (mod, func, params)."""
    module, _, name = key.partition("::")
    function, _, params = name.partition("[")
    return module, function, params.rstrip("]")


def pair_of(params: str) -> str | None:
    m = _PAIR_RE.search(params)
    return ALIASES[m[1]] if m else None


def cells(results: dict[str, dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """(row, pair) → the results of the tests that decide it."""
    table: dict[tuple[str, str], list[dict[str, str]]] = {}
    for key, result in sorted(results.items()):
        module, function, params = split_id(key)
        for row, sels in SCENARIOS.items():
            for sel in sels:
                if (sel.module, sel.function) != (module, function):
                    continue
                if sel.match is not None and not re.search(sel.match, params):
                    continue
                pair = sel.pair or pair_of(params)
                if pair is not None:
                    table.setdefault((row, pair), []).append(result)
    return table


def relevant(results: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Only the results that some row uses, messages only where the matrix shows them."""
    known = {(s.module, s.function) for sels in SCENARIOS.values() for s in sels}
    return {k: {"outcome": r["outcome"],
                "message": r["message"] if r["outcome"] == "xfailed" else ""}
            for k, r in results.items() if split_id(k)[:2] in known}


def unregistered(results: dict[str, dict[str, str]]) -> list[str]:
    """Tests of scenario modules that no row names (a new test should get a row)."""
    known = {(s.module, s.function) for sels in SCENARIOS.values() for s in sels}
    modules = {S, N, I, K}
    return sorted(k for k in results
                  if split_id(k)[0] in modules and split_id(k)[:2] not in known)


# --- writing the matrix -------------------------------------------------------------------------

def render(results: dict[str, dict[str, str]]) -> str:
    table = cells(results)
    notes: list[str] = []  # xfail reasons, numbered
    reasons: list[str] = []  # n/a reasons, lettered

    def cell(row: str, pair: str) -> str:
        if (row, pair) in NOT_APPLICABLE:
            reason = NOT_APPLICABLE[(row, pair)]
            if reason not in reasons:
                reasons.append(reason)
            return f"n/a [{chr(ord('a') + reasons.index(reason))}]"
        found = table.get((row, pair), [])
        if not found:
            return "not run"
        outcomes = {r["outcome"] for r in found}
        if "failed" in outcomes:
            return "**fail**"
        if outcomes == {"skipped"}:
            return "skipped"
        if "xfailed" in outcomes:
            refs = []
            for r in found:
                if r["outcome"] == "xfailed":
                    reason = re.sub(r"^reason:\s*", "", r["message"]).strip()
                    if reason not in notes:
                        notes.append(reason)
                    ref = str(notes.index(reason) + 1)
                    if ref not in refs:
                        refs.append(ref)
            return "xfail [" + ", ".join(refs) + "]"
        if "skipped" in outcomes:
            return "pass (some skipped)"
        return "pass"

    lines = ["| scenario | " + " | ".join(PAIRS) + " |",
             "|---|" + "---|" * len(PAIRS)]
    for row in SCENARIOS:
        lines.append(f"| {row} | " + " | ".join(cell(row, p) for p in PAIRS) + " |")
    if reasons:
        lines += ["", "Not applicable (`NOT_APPLICABLE` in compat/matrix.py):", ""]
        lines += [f"- [{chr(ord('a') + i)}] {reason}" for i, reason in enumerate(reasons)]
    if notes:
        lines += ["", "Expected failures (`xfail(strict=True)`), with the tests' reasons:", ""]
        lines += [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def rewrite(readme: str, matrix: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README}: markers {BEGIN!r} … {END!r} not found")
    return readme[:start + len(BEGIN)] + "\n" + matrix + readme[end:]


def committed_matrix(readme: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    return readme[start + len(BEGIN):end].lstrip("\n")


def node_ids() -> list[str]:
    """The tests the rows name, as pytest node ids (all their parameters)."""
    by_module: dict[str, list[str]] = {}  # one module's tests together: its fixtures once
    for sels in SCENARIOS.values():
        for sel in sels:
            nodes = by_module.setdefault(sel.module, [])
            if sel.function not in nodes:
                nodes.append(sel.function)
    return [f"compat/{m}.py::{f}" for m, functions in by_module.items() for f in functions]


def run_suite(junit: Path, extra: list[str]) -> int:
    """Run the tests of the matrix (or, given pytest arguments, those) into `junit`."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rxXfE",
            f"--junitxml={junit}", *(extra or node_ids())]
    print("+", " ".join(argv), flush=True)
    return subprocess.call(argv, cwd=HERE.parent, env=dict(os.environ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("junit", nargs="*", type=Path, help="junit-xml files of a run")
    parser.add_argument("--run", action="store_true",
                        help="run the rows' tests first (as root), into build/matrix-junit.xml")
    parser.add_argument("--pytest-args", default="",
                        help="with --run: run these pytest arguments instead of the rows' tests")
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 if compat/README.md differs")
    args = parser.parse_args(argv)
    paths = list(args.junit)
    if args.run:
        junit = HERE.parent / "build" / "matrix-junit.xml"  # build/ is ignored
        junit.parent.mkdir(exist_ok=True)
        run_suite(junit, shlex.split(args.pytest_args))
        paths.append(junit)
    if not paths:
        parser.error("give junit-xml files, or --run")
    results = relevant(all_results := read_junit(paths))
    for key in unregistered(all_results):
        print(f"warning: {key} is in no row of SCENARIOS", file=sys.stderr)
    matrix = render(results)
    readme = README.read_text()
    if args.check:
        old = committed_matrix(readme)
        if old != matrix:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), matrix.splitlines(True), "compat/README.md (committed)",
                "fresh run"))
            return 1
        print("compat/README.md: the matrix is the one this run writes")
        return 0
    README.write_text(rewrite(readme, matrix))
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote the matrix ({len(results)} results) to {README} and {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())

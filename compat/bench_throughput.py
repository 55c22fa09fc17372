"""wgpy beside wireguard-go in one run: throughput, latency, CPU, memory and handshakes.
Run on demand, as root, never as part of the test suite:

    python compat/bench_throughput.py [--rounds 3] [--seconds 10] [--chart PATH] [--json PATH]
    python compat/bench_throughput.py --redraw results.json --chart PATH   # chart only
    python compat/bench_throughput.py --first-ping-only --rounds 7 --pairs wgpy-wgpy,go-go

Pairs, each a fresh pair of namespaces joined by a veth (compat/lab.py), the two daemons
started with LOG_LEVEL=error and configured with stock `wg`; traffic goes from namespace
`a` (the first daemon named: the sending side) to `b`:

    wgpy-wgpy   wgpy sends, wgpy receives
    up-up       today's wireguard-go on both sides (upstream f333402, the baseline)
    wgpy-up     wgpy sends, upstream wireguard-go receives
    up-wgpy     upstream wireguard-go sends, wgpy receives
    go-go       Debian's wireguard-go 0.0.20220316 on both sides
    pure-pure   wgpy on both sides with WGPY_PURE_PYTHON=1 (the pure-Python path)
    base-base   with --baseline TREE: wgpy of another checkout (TREE, its compiled module
                built or copied in) on both sides, so that wgpy-wgpy / base-base is a
                change's before and after in one run
    up-wgpy2    as up-wgpy, the receiving wgpy with two crypto workers
                (WGPY_CRYPTO_WORKERS=2): up-wgpy2 / up-wgpy is what a second core buys

wgpy runs on its compiled batch path when it is built (wgpy-wgpy, wgpy-up, up-wgpy);
pure-pure against go-go, in the same run, is the pure path's bar.

Rounds are interleaved: every round runs every pair (and the handshake measurements), in
an order rotated by one each round, so drift of the shared machine hits all alike. Per
pair and round, on fresh daemons:

1. first ping: `ping -c1 -W5` through the new tunnel; its rtt includes the handshake
   (the echo request waits in the sender's daemon for it);
2. ping idle: 20 pings 0.05 s apart, median rtt;
3. TCP, one stream (iperf3, SECONDS): Mbit/s received; meanwhile pings 0.05 s apart
   (median and p90 rtt under load, and how many were lost) and CPU seconds of each daemon
   (utime + stime from /proc/PID/stat, threads and child processes included), giving
   cores used and Mbit/s per core (Mbit/s / sum of both daemons' cores);
4. TCP, four streams (-P 4): Mbit/s received;
5. UDP, 1392-byte datagrams (1420-byte inner packets, the MTU), target rate unlimited
   (`-b 0`; `--udp-rate`): datagrams per second the receiving iperf3 got, and loss %;
6. peak RSS (VmHWM from /proc/PID/status, summed over the daemon's processes).

Handshakes per second as a responder (wgpy and wireguard-go, in "paced" and "flood" modes)
come from compat/bench_handshakes.py; its docstring describes the method.

The table gives the median over rounds of each figure for each pair and the ratios to
go-go; `--json` keeps every raw figure so `--redraw` can remake the chart (matplotlib,
from the `bench` extra, imported only when charting).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHART = ROOT / "bench" / "throughput.png"

# The anchor: today's wireguard-go (TUN TSO/GRO, UDP GSO/GRO), built from the vendored
# source by ../shared/wireguard-go/build.sh (compat/upstream.py finds or builds it);
# Debian's 2022 build (no offloads) is `wireguard-go` on PATH.
from compat.upstream import UPSTREAM  # noqa: E402
# (label, sending daemon, receiving daemon)
PAIRS = [
    ("wgpy-wgpy", "wgpy", "wgpy"),
    ("up-up", UPSTREAM, UPSTREAM),
    ("wgpy-up", "wgpy", UPSTREAM),
    ("up-wgpy", UPSTREAM, "wgpy"),
    ("go-go", "wireguard-go", "wireguard-go"),
    ("pure-pure", "wgpy", "wgpy"),
    ("up-wgpy2", UPSTREAM, "wgpy"),
    ("base-base", "wgpy", "wgpy"),  # only with --baseline
]
# Pairs whose wgpy daemons run with more in their environment.
PAIR_ENV = {"pure-pure": {"WGPY_PURE_PYTHON": "1"}, "up-wgpy2": {"WGPY_CRYPTO_WORKERS": "2"}}
BASELINE = "up-up"
DEBIAN = "go-go"
HANDSHAKE_COLUMN = {"wgpy": "wgpy-wgpy", UPSTREAM: "up-up"}  # responder -> column

# (key, label, unit format, higher is better)
FIGURES = [
    ("tcp1_mbits", "TCP 1 stream, Mbit/s", "{:.0f}", True),
    ("tcp4_mbits", "TCP 4 streams, Mbit/s", "{:.0f}", True),
    ("udp_pps", "UDP 1392 B delivered, pkt/s", "{:,.0f}", True),
    ("udp_loss_pct", "UDP loss, %", "{:.1f}", False),
    ("ping_idle_ms", "ping idle, median ms", "{:.3f}", False),
    ("ping_load_ms", "ping under TCP load, median ms", "{:.2f}", False),
    ("ping_load_p90_ms", "ping under TCP load, p90 ms", "{:.2f}", False),
    ("first_ping_ms", "first ping incl. handshake, ms", "{:.2f}", False),
    ("cpu_send_cores", "CPU sending daemon (TCP 1), cores", "{:.2f}", False),
    ("cpu_recv_cores", "CPU receiving daemon (TCP 1), cores", "{:.2f}", False),
    ("mbits_per_core", "Mbit/s per core used (TCP 1)", "{:.0f}", True),
    ("rss_send_mib", "peak RSS sending daemon, MiB", "{:.1f}", False),
    ("rss_recv_mib", "peak RSS receiving daemon, MiB", "{:.1f}", False),
    ("hs_paced", "handshakes/s as responder, paced", "{:,.0f}", True),
    ("hs_flood", "handshakes/s as responder, flood", "{:,.0f}", True),
    ("hs_paced_cores", "responder CPU, paced handshakes, cores", "{:.2f}", False),
]


# --- pure helpers (tested in tests/test_bench_helpers.py) ----------------------------------------

_RTT = re.compile(r"time[=<]([\d.]+) ms")


def parse_ping(text: str) -> list[float]:
    """The rtt in ms of every echo reply in `ping` output."""
    return [float(m.group(1)) for m in _RTT.finditer(text)]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(values)
    if not s:
        raise ValueError("no values")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def iperf_tcp_mbits(result: dict[str, Any]) -> float:
    """Mbit/s the iperf3 receiver got, from the client's JSON (any number of streams)."""
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e6


def iperf_udp(result: dict[str, Any]) -> tuple[float, float]:
    """(datagrams per second the receiver got, loss %) from an iperf3 -u client's JSON.

    The receiver's figures travel back to the client at the end of the test: `sum_received`
    where iperf3 reports it (3.10+), else `sum` (packets sent and lost as the server saw).
    """
    end = result["end"]
    rec = end.get("sum_received") or end["sum"]
    seconds = float(rec.get("seconds") or (rec["end"] - rec["start"]))
    # `packets` is what the server counted by sequence number (sent), `lost_packets` the
    # gaps in it: the datagrams received are the difference (= bytes / datagram size).
    packets, lost = int(rec["packets"]), int(rec["lost_packets"])
    received = packets - lost
    loss = 100.0 * lost / packets if packets else 0.0
    return received / seconds if seconds else 0.0, loss


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Median of each figure per column over the rounds."""
    out: dict[str, dict[str, float | None]] = {}
    for key, *_ in FIGURES:
        cols: dict[str, list[float | None]] = {}
        for row in rows:
            if key in row:
                cols.setdefault(row["pair"], []).append(row[key])
        out[key] = {col: median(vals) for col, vals in cols.items()}
    return out


def format_table(med: dict[str, dict[str, float | None]], rounds: int) -> str:
    """The printed table: one line a figure, one column a pair, then ratios to up-up (and
    wgpy-wgpy to go-go)."""
    before = any("base-base" in v for v in med.values())  # a --baseline run
    cols = [p[0] for p in PAIRS if p[0] != "base-base" or before]
    # Ratios to the baseline, and wgpy-wgpy against Debian's build (the pure path's bar).
    ratios = [(c, BASELINE) for c in cols if c != BASELINE] + [
        ("wgpy-wgpy", DEBIAN), ("pure-pure", DEBIAN), ("up-wgpy2", "up-wgpy")] + (
        [("wgpy-wgpy", "base-base")] if before else [])
    head = ["figure (median of %d rounds)" % rounds, *cols,
            *[f"{a}/{b}" for a, b in ratios], "better"]
    lines = []
    for key, label, fmt, higher in FIGURES:
        vals = med.get(key, {})
        if not vals:
            continue
        cells = [label]
        for c in cols:
            v = vals.get(c)
            cells.append(fmt.format(v) if v is not None else "-")
        for a, b in ratios:
            r = ratio(vals.get(a), vals.get(b))
            cells.append(f"{r:.2f}" if r is not None else "-")
        cells.append("higher" if higher else "lower")
        lines.append(cells)
    widths = [max(len(str(row[i])) for row in [head, *lines]) for i in range(len(head))]
    fmt_row = lambda row: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    rule = "  ".join("-" * w for w in widths)
    notes = ("pairs are sender-receiver; handshake rows: the wgpy-wgpy column is wgpy as "
             "responder, up-up is upstream wireguard-go")
    return "\n".join([fmt_row(head), rule, *map(fmt_row, lines), notes])


# --- processes -----------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a daemon may one day use worker processes)."""
    kids, out, todo = _children(), [], [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, plus its live descendants and the
    children it has reaped (cutime + cstime), in seconds."""
    total = 0
    for i, p in enumerate(process_tree(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if i == 0:
            total += int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process, summed over it and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# --- one pair, one round -----------------------------------------------------------------------

def measure_pair(label: str, sender: str, receiver: str, seconds: int, udp_rate: str,
                 first_only: bool = False) -> dict[str, Any]:
    from compat.lab import Lab  # noqa: PLC0415

    dst = "10.79.0.2"
    row: dict[str, Any] = {"pair": label, "sender": sender, "receiver": receiver}
    with Lab() as lab:
        a, b = lab.namespace("ta"), lab.namespace("tb")
        lab.link(a, b, "192.168.79.1/24", "192.168.79.2/24")
        env = {"LOG_LEVEL": "error", **PAIR_ENV.get(label, {})}
        da = lab.daemon(a, sender, env=env)
        db = lab.daemon(b, receiver, env=env)
        lab.configure(da, "10.79.0.1/24", 51820)
        lab.configure(db, "10.79.0.2/24", 51820)
        lab.peer(da, db, "10.79.0.2/32", "192.168.79.2:51820")
        lab.peer(db, da, "10.79.0.1/32", "192.168.79.1:51820")
        assert da.proc is not None and db.proc is not None
        pa, pb = da.proc.pid, db.proc.pid

        t = time.monotonic()
        first = a.run("ping", "-c", "1", "-W", "5", dst, check=False, timeout=15)
        wall = (time.monotonic() - t) * 1000
        rtts = parse_ping(first.stdout)
        row["first_ping_ms"] = rtts[0] if rtts else None
        row["first_ping_wall_ms"] = wall
        if first_only:
            for d in (da, db):
                if not d.alive():
                    raise RuntimeError(f"{d.impl} {d.ifname} died:\n{d.log_tail()}")
            return row
        if not rtts:  # one retry so that the rest of the round can run
            a.run("ping", "-c", "3", "-i", "0.2", "-W", "2", dst, check=False, timeout=15)

        idle = parse_ping(a.run("ping", "-c", "20", "-i", "0.05", "-W", "1", dst,
                                check=False, timeout=15).stdout)
        row["ping_idle_ms"] = median(idle)

        server = b.popen("iperf3", "-s", "-B", dst, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            # TCP, one stream, with pings and CPU
            count = max(1, int((seconds - 1.0) / 0.05))
            cpu0 = (cpu_seconds(pa), cpu_seconds(pb), time.monotonic())
            client = a.popen("iperf3", "-c", dst, "-t", str(seconds), "-J",
                             "--connect-timeout", "3000", stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
            try:
                time.sleep(0.5)
                ping = a.run("ping", "-c", str(count), "-i", "0.05", "-W", "1", dst,
                             check=False, timeout=seconds + 15)
                out, err = client.communicate(timeout=seconds + 30)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait(5)
            cpu1 = (cpu_seconds(pa), cpu_seconds(pb), time.monotonic())
            if client.returncode != 0:
                raise RuntimeError(f"iperf3 TCP failed: {err.strip() or out[-500:]}")
            result = json.loads(out)
            row["tcp1_mbits"] = iperf_tcp_mbits(result)
            iperf_seconds = float(result["end"]["sum_received"]["seconds"])
            loaded = parse_ping(ping.stdout)
            row["ping_load_ms"] = median(loaded)
            row["ping_load_p90_ms"] = percentile(loaded, 90) if loaded else None
            row["ping_load_lost"] = count - len(loaded)
            wall_s = cpu1[2] - cpu0[2]
            row["cpu_send_s"], row["cpu_recv_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            row["cpu_send_cores"] = row["cpu_send_s"] / wall_s
            row["cpu_recv_cores"] = row["cpu_recv_s"] / wall_s
            cores = row["cpu_send_cores"] + row["cpu_recv_cores"]
            # Mbit/s over the iperf3 interval divided by cores over the (slightly longer)
            # wall interval: both are rates, so the few hundred ms of setup barely count.
            row["mbits_per_core"] = row["tcp1_mbits"] / cores if cores else None
            row["tcp1_iperf_seconds"] = iperf_seconds

            # TCP, four streams
            out4 = a.run("iperf3", "-c", dst, "-t", str(seconds), "-P", "4", "-J",
                         "--connect-timeout", "3000", timeout=seconds + 30)
            row["tcp4_mbits"] = iperf_tcp_mbits(json.loads(out4.stdout))

            # UDP, 1392-byte datagrams
            cpu0 = (cpu_seconds(pa), cpu_seconds(pb), time.monotonic())
            outu = a.run("iperf3", "-c", dst, "-u", "-l", "1392", "-b", udp_rate,
                         "-t", str(seconds), "-J", "--connect-timeout", "3000",
                         timeout=seconds + 30)
            cpu1 = (cpu_seconds(pa), cpu_seconds(pb), time.monotonic())
            row["udp_pps"], row["udp_loss_pct"] = iperf_udp(json.loads(outu.stdout))
            row["udp_cpu_send_cores"] = (cpu1[0] - cpu0[0]) / (cpu1[2] - cpu0[2])
            row["udp_cpu_recv_cores"] = (cpu1[1] - cpu0[1]) / (cpu1[2] - cpu0[2])
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(5)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(5)
        row["rss_send_mib"] = peak_rss_kib(pa) / 1024
        row["rss_recv_mib"] = peak_rss_kib(pb) / 1024
        for d in (da, db):
            if not d.alive():
                raise RuntimeError(f"{d.impl} {d.ifname} died:\n{d.log_tail()}")
    return row


def describe(row: dict[str, Any]) -> str:
    def f(key: str, fmt: str) -> str:
        v = row.get(key)
        return fmt.format(v) if v is not None else "-"
    return (f"{row['pair']:<10} tcp1 {f('tcp1_mbits', '{:.0f}')} tcp4 "
            f"{f('tcp4_mbits', '{:.0f}')} Mbit/s  udp {f('udp_pps', '{:.0f}')} pkt/s "
            f"({f('udp_loss_pct', '{:.1f}')}% lost)  ping {f('ping_idle_ms', '{:.3f}')}/"
            f"{f('ping_load_ms', '{:.2f}')}/{f('ping_load_p90_ms', '{:.2f}')} ms  first "
            f"{f('first_ping_ms', '{:.2f}')} ms  cpu {f('cpu_send_cores', '{:.2f}')}+"
            f"{f('cpu_recv_cores', '{:.2f}')}  rss {f('rss_send_mib', '{:.0f}')}/"
            f"{f('rss_recv_mib', '{:.0f}')} MiB")


# --- chart ---------------------------------------------------------------------------------------

# A bar colour for each pair (a --baseline run's base-base too).
CHART_COLORS = {"wgpy-wgpy": "#2b7bba", "up-up": "#555555", "wgpy-up": "#7fb3d5",
                "up-wgpy": "#a0a0a0", "go-go": "#c7c7c7", "pure-pure": "#9ecae1",
                "up-wgpy2": "#6baed6", "base-base": "#e6a23c"}


def draw_chart(med: dict[str, dict[str, float | None]], path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415 - the `bench` extra, only when charting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figures = [f for f in FIGURES if med.get(f[0])]
    ncols = 4
    nrows = (len(figures) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.9 * nrows), squeeze=False)
    for ax, (key, label, fmt, higher) in zip(axes.flat, figures):
        cols = [p[0] for p in PAIRS if med[key].get(p[0]) is not None]
        vals = [med[key][c] for c in cols]
        names = [c if not key.startswith("hs_") else
                 {v: k for k, v in HANDSHAKE_COLUMN.items()}[c] for c in cols]
        bars = ax.bar(names, vals, color=[CHART_COLORS[c] for c in cols])
        for bar, v in zip(bars, vals):
            ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=8)
        ax.tick_params(labelsize=7)
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right")  # eight pairs side by side
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(figures):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------------------

def handshake_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Handshake results as table rows: one per (responder, mode) result."""
    rows = []
    for r in results:
        row = {"pair": HANDSHAKE_COLUMN[r["impl"]], f"hs_{r['mode']}": r["rate"]}
        if r["mode"] == "paced":
            row["hs_paced_cores"] = r["responder_cores"]
        rows.append(row)
    return rows


def _git(*args: str) -> str:
    """What code was measured: the daemon runs from this working tree, edits included."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _interpreter() -> str:
    """Which Python runs the wgpy daemons: its build matters as much as a change to the
    packet path (measured here: a pure-Python loop 1.7x faster on Debian's python3, built
    with PGO and a static libpython, than on a default source build with --enable-shared).
    The README's install uses the system's python3."""
    base = Path(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    maps = Path("/proc/self/maps").read_text()  # this process runs the daemons' interpreter
    shared = "shared" if "libpython" in maps else "static"
    return f"{platform.python_version()} {base.resolve()} (libpython {shared})"


def run_title(meta: dict[str, Any]) -> str:
    return (f"wgpy vs wireguard-go, {meta['host']} ({meta['cpus']} CPUs), medians of "
            f"{meta['rounds']} rounds, {meta['seconds']} s per test, {meta['date']}"
            + (f"\nwgpy on Python {meta['interpreter']}" if meta.get("interpreter") else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="per iperf3 test")
    parser.add_argument("--handshake-seconds", type=float, default=5.0)
    parser.add_argument("--no-handshakes", action="store_true")
    parser.add_argument("--first-ping-only", action="store_true",
                        help="per pair only the first ping (no iperf3, no handshake rates)")
    parser.add_argument("--udp-rate", default="0", help="iperf3 -b for UDP (0: unlimited)")
    parser.add_argument("--pairs", default=",".join(p[0] for p in PAIRS),
                        help="comma-separated subset of " + ", ".join(p[0] for p in PAIRS))
    parser.add_argument("--baseline", type=Path,
                        help="another wgpy checkout for the pair base-base (before/after)")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART)
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--redraw", type=Path, help="draw the chart from a --json file only")
    args = parser.parse_args()

    if args.redraw:
        data = json.loads(args.redraw.read_text())
        rows = data["rows"] + handshake_rows(data["handshakes"])
        draw_chart(summarize(rows), args.chart, run_title(data["meta"]))
        print(f"chart: {args.chart}")
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    from compat import bench_handshakes  # noqa: PLC0415
    from compat.upstream import ensure_upstream  # noqa: PLC0415
    from wgpy import fastpath  # noqa: PLC0415

    upstream_path = ensure_upstream()  # on PATH as wireguard-go-upstream from here on

    wanted = args.pairs.split(",")
    if args.baseline is not None:
        if not (args.baseline / "wgpy" / "__init__.py").exists():
            sys.exit(f"--baseline {args.baseline}: no wgpy checkout there")
        PAIR_ENV["base-base"] = {"PYTHONPATH": str(args.baseline.resolve())}
        wanted.append("base-base")
    pairs = [p for p in PAIRS if p[0] in wanted and (p[0] != "base-base" or args.baseline)]
    items: list[tuple[str, ...]] = [("pair", *p) for p in pairs]
    if not args.no_handshakes and not args.first_ping_only:
        items += [("hs", impl, mode) for mode in bench_handshakes.MODES
                  for impl in ("wgpy", UPSTREAM)]
    meta = {"host": platform.node(), "cpus": os.cpu_count(), "rounds": args.rounds,
            "seconds": args.seconds, "handshake_seconds": args.handshake_seconds,
            "udp_rate": args.udp_rate, "kernel": platform.release(),
            "python": platform.python_version(), "interpreter": _interpreter(),
            "date": time.strftime("%Y-%m-%d"),
            "git": _git("describe", "--always", "--dirty"),
            "baseline": str(args.baseline) if args.baseline else None,
            "dirty_wgpy_files": _git("status", "--porcelain", "--", "wgpy").splitlines(),
            "wireguard_go": subprocess.run(["wireguard-go", "--version"], capture_output=True,
                                           text=True).stdout.splitlines()[0],
            "wireguard_go_upstream": subprocess.run(
                [upstream_path, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
            "wgpy_path": "pure Python" if os.environ.get("WGPY_PURE_PYTHON") == "1" else
            "compiled batch path" if fastpath.NATIVE else "pure Python (not built)"}
    rows: list[dict[str, Any]] = []
    hs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    started = time.monotonic()
    for rnd in range(args.rounds):
        k = rnd % len(items)
        for item in items[k:] + items[:k]:
            try:
                if item[0] == "pair":
                    row = measure_pair(*item[1:], seconds=args.seconds,
                                       udp_rate=args.udp_rate,
                                       first_only=args.first_ping_only)
                    row["round"] = rnd + 1
                    rows.append(row)
                    print(f"round {rnd + 1}  {describe(row)}", flush=True)
                else:
                    r = bench_handshakes.measure(item[1], item[2], args.handshake_seconds)
                    r["round"] = rnd + 1
                    hs.append(r)
                    print(f"round {rnd + 1}  handshakes {bench_handshakes.describe(r)}",
                          flush=True)
            except (RuntimeError, OSError, ValueError, KeyError,
                    subprocess.SubprocessError) as exc:
                # One failed measurement is reported and left out of the medians; the
                # round goes on (the lab has already removed what it built).
                errors.append({"round": rnd + 1, "item": list(item), "error": str(exc)})
                print(f"round {rnd + 1}  {' '.join(item)} FAILED: {exc}", flush=True)
    meta["elapsed_s"] = round(time.monotonic() - started)
    med = summarize(rows + handshake_rows(hs))
    print()
    print(run_title(meta))
    print(f"python: {meta['interpreter']}")
    print(f"wgpy: {meta['wgpy_path']}; up: {meta['wireguard_go_upstream']}; "
          f"go: {meta['wireguard_go']}")
    print(f"code: {meta['git']}" + (f"; uncommitted in wgpy/: {len(meta['dirty_wgpy_files'])} "
                                   "files" if meta["dirty_wgpy_files"] else ""))
    print(format_table(med, args.rounds))
    print(f"({meta['elapsed_s']} s; {len(errors)} failed measurements)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "handshakes": hs,
                                         "errors": errors},
                                        indent=1))
        print(f"raw results: {args.json}")
    if not args.no_chart:
        draw_chart(med, args.chart, run_title(meta))
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()

"""The UAPI under big configurations: wgpy beside wireguard-go in the same run. Run on
demand, as root (and under `flock /tmp/wgpy-bench.lock` on a shared machine):

    python compat/bench_uapi.py [--rounds 3] [--ping-count 300] [--no-ping | --no-config]

One namespace (made here, removed on exit, also on Ctrl-C or SIGTERM) holds both daemons
(LOG_LEVEL=error, so that neither pays for logging 130k lines). Two configurations, timed
on each daemon in turn with the stock `wg` (the order alternates between rounds):

- big: the kernel selftest's (netns.sh) one peer with 255*256 IPv4 /16 and as many IPv6
  /128 allowed IPs, 130,560 prefixes: `wg setconf`, `wg show IF allowed-ips` (checked:
  130,561 words), `wg showconf` (checked), `wg set IF peer KEY remove`;
- peers: 1,000 peers with 10 allowed IPs and an endpoint each: `wg setconf`, `wg show IF
  dump` (checked: 1,001 lines, 10,000 prefixes), `wg showconf`, and `wg setconf` of a
  config without peers (removes them all).

After each configuration's setconf and show, the resident memory of each daemon (VmRSS of
/proc/PID/status) is recorded; the peak (VmHWM) is read at the end; then each
configuration is applied once more to a fresh daemon of each kind, alone, for its VmRSS
and VmHWM. The daemons' CPU seconds per command are printed too. The interfaces stay
down and nothing is sent.

Then the ping check: per implementation, namespaces a and b joined by a veth pair; in a the
daemon under test with 1,000 peers x 130 allowed IPs plus the real peer, in b wireguard-go.
Pings from a through the tunnel (0.01 s apart), first idle, then while a thread runs
`wg show IF dump` on a's daemon in a loop; per round and implementation the median and p90
RTT of each and what the loop added. Every figure is printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.duo import BIG_COUNT, many_peers_config  # noqa: E402
from compat.duo import big_config  # noqa: E402
from compat.lab import Daemon, Lab, b64  # noqa: E402
from wgpy import crypto  # noqa: E402

IMPLS = ("wgpy", "wireguard-go")
BIG_OPS = ("setconf", "show allowed-ips", "showconf", "peer remove")
PEERS, PER_PEER = 1000, 10
PEERS_OPS = ("setconf", "show dump", "showconf", "remove all")
PING_PEERS, PING_PER_PEER = 1000, 130
TIMEOUT = 300.0


CPU: dict[str, list[float]] = {}  # "impl op" -> CPU seconds the daemon spent on it


def cpu_seconds(d: Daemon) -> float:
    """User + system CPU time of the daemon's process so far (all its threads)."""
    assert d.proc is not None
    fields = Path(f"/proc/{d.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(d: Daemon, *args: str) -> tuple[float, str]:
    cpu = cpu_seconds(d)
    start = time.perf_counter()
    out = d.ns.run("wg", *args, timeout=TIMEOUT).stdout
    wall = time.perf_counter() - start
    CPU.setdefault(f"{d.impl} {' '.join(a for a in args if a != d.ifname)}", []).append(
        cpu_seconds(d) - cpu)
    return wall, out


def status(d: Daemon, key: str) -> int:
    """VmRSS / VmHWM of the daemon's process, in KiB."""
    assert d.proc is not None
    text = Path(f"/proc/{d.proc.pid}/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB$", text, re.M)
    assert match, f"no {key} for pid {d.proc.pid}"
    return int(match[1])


def big_round(d: Daemon, conf: str, peer: str) -> dict[str, float]:
    times: dict[str, float] = {}
    times["setconf"], _ = timed(d, "setconf", d.ifname, conf)
    times["show allowed-ips"], shown = timed(d, "show", d.ifname, "allowed-ips")
    times["rss"] = status(d, "VmRSS")
    words = shown.split()
    if len(words) != BIG_COUNT + 1 or words[0] != peer:
        raise RuntimeError(f"{d.impl}: wg show allowed-ips gave {len(words)} words")
    times["showconf"], conf_text = timed(d, "showconf", d.ifname)
    listed = sum(line.count(",") + 1 for line in conf_text.splitlines()
                 if line.startswith("AllowedIPs = "))
    if listed != BIG_COUNT:
        raise RuntimeError(f"{d.impl}: wg showconf listed {listed} prefixes")
    times["peer remove"], _ = timed(d, "set", d.ifname, "peer", peer, "remove")
    return times


def peers_round(d: Daemon, conf: str, empty: str) -> dict[str, float]:
    times: dict[str, float] = {}
    times["setconf"], _ = timed(d, "setconf", d.ifname, conf)
    times["show dump"], dump = timed(d, "show", d.ifname, "dump")
    times["rss"] = status(d, "VmRSS")
    lines = dump.splitlines()
    prefixes = sum(len(line.split("\t")[3].split(",")) for line in lines[1:])
    if len(lines) != PEERS + 1 or prefixes != PEERS * PER_PEER:
        raise RuntimeError(f"{d.impl}: wg show dump: {len(lines)} lines, {prefixes} prefixes")
    times["showconf"], _ = timed(d, "showconf", d.ifname)
    times["remove all"], _ = timed(d, "setconf", d.ifname, empty)
    if d.ns.run("wg", "show", d.ifname, "peers").stdout.strip():
        raise RuntimeError(f"{d.impl}: peers left after setconf without peers")
    return times


def keys(n: int) -> list[str]:
    return [b64(crypto.public_key(crypto.generate_private_key())) for _ in range(n)]


# --- ping through the tunnel while `wg show dump` loops ---------------------------------------

def parse_ping(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", text)]


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


class PingRig:
    """Daemon `impl` in namespace a (many peers plus b) and wireguard-go in namespace b."""

    def __init__(self, lab: Lab, impl: str, index: int) -> None:
        self.impl = impl
        a, b = lab.namespace(f"pa{index}"), lab.namespace(f"pb{index}")
        lab.link(a, b, f"192.168.{90 + index}.1/24", f"192.168.{90 + index}.2/24")
        self.a = lab.daemon(a, impl, env={"LOG_LEVEL": "error"})
        self.b = lab.daemon(b, "wireguard-go", env={"LOG_LEVEL": "error"})
        lab.configure(self.a, "10.8.0.1/24", 51820)
        lab.configure(self.b, "10.8.0.2/24", 51820)
        path = lab.tmp / f"ping-peers-{index}.conf"
        path.write_text(many_peers_config(keys(PING_PEERS), PING_PER_PEER))
        self.a.wg("addconf", self.a.ifname, str(path))
        lab.peer(self.a, self.b, "10.8.0.2/32", f"192.168.{90 + index}.2:51820")
        lab.peer(self.b, self.a, "10.8.0.0/24", f"192.168.{90 + index}.1:51820")
        self.a.ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.2", check=False)

    def ping(self, count: int) -> list[float]:
        out = self.a.ns.run("ping", "-c", str(count), "-i", "0.01", "-W", "1", "10.8.0.2",
                            check=False, timeout=60 + count * 0.1).stdout
        return parse_ping(out)

    def ping_under_dump_loop(self, count: int) -> tuple[list[float], int]:
        stop = threading.Event()
        dumps = [0]
        failures: list[str] = []

        def loop() -> None:
            while not stop.is_set():
                p = self.a.ns.run("wg", "show", self.a.ifname, "dump", check=False,
                                  timeout=TIMEOUT)
                if p.returncode != 0 or p.stdout.count("\n") != PING_PEERS + 2:
                    failures.append(p.stderr or f"{p.stdout.count(chr(10))} lines")
                dumps[0] += 1

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            time.sleep(0.3)  # the loop is running
            rtts = self.ping(count)
        finally:
            stop.set()
            thread.join(TIMEOUT)
        if failures:
            raise RuntimeError(f"{self.impl}: wg show dump failed: {failures[:3]}")
        return rtts, dumps[0]


def ping_check(lab: Lab, rounds: int, count: int) -> None:
    print(f"\nping through the tunnel, {count} pings 0.01 s apart, idle and while "
          f"`wg show IF dump` loops ({PING_PEERS} peers x {PING_PER_PEER} allowed IPs + 1)")
    rigs = {impl: PingRig(lab, impl, i) for i, impl in enumerate(IMPLS)}
    head = ("idle med", "idle p90", "loop med", "loop p90", "+med", "+p90", "dumps/s")
    print(f"{'round':>5}  {'daemon':<13}" + "".join(f"{h:>10}" for h in head))
    added: dict[str, dict[str, list[float]]] = {impl: {"med": [], "p90": []} for impl in IMPLS}
    for r in range(rounds):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            rig = rigs[impl]
            idle = rig.ping(count)
            start = time.perf_counter()
            loaded, dumps = rig.ping_under_dump_loop(count)
            rate = dumps / (time.perf_counter() - start)
            if not idle or not loaded:
                print(f"{r + 1:>5}  {impl:<13} pings lost: idle {len(idle)}, loop {len(loaded)}")
                continue
            row = (statistics.median(idle), p90(idle), statistics.median(loaded), p90(loaded))
            added[impl]["med"].append(row[2] - row[0])
            added[impl]["p90"].append(row[3] - row[1])
            print(f"{r + 1:>5}  {impl:<13}" + "".join(f"{v:>10.3f}" for v in row)
                  + f"{row[2] - row[0]:>10.3f}{row[3] - row[1]:>10.3f}{rate:>10.1f}",
                  flush=True)
    for impl in IMPLS:
        if added[impl]["med"]:
            print(f"{impl}: RTT added by the dump loop, median over rounds: "
                  f"median {statistics.median(added[impl]['med']):.3f} ms, "
                  f"p90 {statistics.median(added[impl]['p90']):.3f} ms")


def fresh_memory(lab: Lab, big_conf: str, peers_conf: str) -> None:
    """Each configuration alone in a new daemon of each kind: VmRSS and VmHWM after its
    setconf and show (the rounds above run both configurations on the same daemons, so
    what one leaves behind, Go's heap or Python's arenas, shows in the other's figure)."""
    print(f"\n{'fresh daemon, MiB':<20}{'wgpy RSS':>10}{'HWM':>8}{'wg-go RSS':>11}{'HWM':>8}")
    for name, conf, show in (("big", big_conf, "allowed-ips"), ("peers", peers_conf, "dump")):
        ns = lab.namespace(f"m{name[0]}")
        row = []
        for impl in IMPLS:
            d = lab.daemon(ns, impl, env={"LOG_LEVEL": "error"})
            d.ns.run("wg", "setconf", d.ifname, conf, timeout=TIMEOUT)
            d.ns.run("wg", "show", d.ifname, show, timeout=TIMEOUT)
            row += [status(d, "VmRSS") / 1024, status(d, "VmHWM") / 1024]
            lab.stop(d)
        print(f"{name:<20}{row[0]:>10.1f}{row[1]:>8.1f}{row[2]:>11.1f}{row[3]:>8.1f}")


# --- main ---------------------------------------------------------------------------------------

def medians(title: str, ops: tuple[str, ...], results: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{title:<20}{'wgpy':>10}{'wireguard-go':>14}{'wgpy / wg-go':>14}")
    for op in ops:
        mine = statistics.median(results["wgpy"][op])
        theirs = statistics.median(results["wireguard-go"][op])
        print(f"{op:<20}{mine:>10.3f}{theirs:>14.3f}{mine / theirs:>13.2f}x")
    mine = statistics.median(results["wgpy"]["rss"]) / 1024
    theirs = statistics.median(results["wireguard-go"]["rss"]) / 1024
    print(f"{'VmRSS after show MiB':<20}{mine:>10.1f}{theirs:>14.1f}{mine / theirs:>13.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ping-count", type=int, default=300)
    parser.add_argument("--no-ping", action="store_true")
    parser.add_argument("--no-config", action="store_true", help="only the ping check")
    args = parser.parse_args()

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    big: dict[str, dict[str, list[float]]] = {
        impl: {op: [] for op in (*BIG_OPS, "rss")} for impl in IMPLS}
    many: dict[str, dict[str, list[float]]] = {
        impl: {op: [] for op in (*PEERS_OPS, "rss")} for impl in IMPLS}
    with Lab() as lab:
        if args.no_config:
            ping_check(lab, args.rounds, args.ping_count)
            return 0
        ns = lab.namespace("bu")
        daemons = {impl: lab.daemon(ns, impl, env={"LOG_LEVEL": "error"}) for impl in IMPLS}
        fresh = {impl: status(d, "VmRSS") for impl, d in daemons.items()}
        private = b64(crypto.generate_private_key())
        peer = keys(1)[0]
        big_conf = lab.tmp / "big.conf"
        big_conf.write_text(big_config(peer, private))
        peers_conf = lab.tmp / "peers.conf"
        peers_conf.write_text(many_peers_config(keys(PEERS), PER_PEER, private))
        empty_conf = lab.tmp / "empty.conf"
        empty_conf.write_text(f"[Interface]\nPrivateKey = {private}\n")
        for path in (big_conf, peers_conf, empty_conf):
            path.chmod(0o600)
        print(f"big: {BIG_COUNT} allowed IPs on one peer; peers: {PEERS} peers x {PER_PEER} "
              f"allowed IPs; {args.rounds} rounds; seconds, wall clock of the stock wg "
              "command; VmRSS in MiB after setconf + show")
        print(f"{'round':>5}  {'daemon':<13}{'config':<7}"
              + "".join(f"{op:>18}" for op in (*BIG_OPS, "VmRSS")))
        for r in range(args.rounds):
            order = IMPLS if r % 2 == 0 else IMPLS[::-1]
            for impl in order:
                for name, results, ops, times in (
                        ("big", big, BIG_OPS, big_round(daemons[impl], str(big_conf), peer)),
                        ("peers", many, PEERS_OPS,
                         peers_round(daemons[impl], str(peers_conf), str(empty_conf)))):
                    for op in (*ops, "rss"):
                        results[impl][op].append(times[op])
                    print(f"{r + 1:>5}  {impl:<13}{name:<7}"
                          + "".join(f"{times[op]:>18.3f}" for op in ops)
                          + f"{times['rss'] / 1024:>18.1f}", flush=True)
            for d in daemons.values():
                if not d.alive():
                    raise RuntimeError(f"{d.impl} died:\n{d.log_tail()}")
        print(f"(peers rows: {', '.join(PEERS_OPS)})")
        medians("big, median (s)", BIG_OPS, big)
        medians("peers, median (s)", PEERS_OPS, many)
        print(f"\n{'memory MiB':<20}{'wgpy':>10}{'wireguard-go':>14}")
        print(f"{'VmRSS fresh':<20}{fresh['wgpy'] / 1024:>10.1f}"
              f"{fresh['wireguard-go'] / 1024:>14.1f}")
        hwm = {impl: status(d, "VmHWM") / 1024 for impl, d in daemons.items()}
        print(f"{'VmHWM at the end':<20}{hwm['wgpy']:>10.1f}{hwm['wireguard-go']:>14.1f}")
        fresh_memory(lab, str(big_conf), str(peers_conf))
        print("\nCPU seconds of the daemon per command (all its threads), median")
        for key in sorted({k.split(" ", 1)[1] for k in CPU}, key=lambda k: k.split()[-1]):
            mine = statistics.median(CPU.get(f"wgpy {key}", [0.0]))
            theirs = statistics.median(CPU.get(f"wireguard-go {key}", [0.0]))
            name = key.replace(str(lab.tmp) + "/", "")
            print(f"  {name:<36}{mine:>8.3f}{theirs:>10.3f}")
        if not args.no_ping:
            ping_check(lab, args.rounds, args.ping_count)
    return 0


if __name__ == "__main__":
    sys.exit(main())

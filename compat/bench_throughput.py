"""One iperf3 TCP stream through wgpy <-> wgpy and through wireguard-go <-> wireguard-go,
in the same run, alternating, with the CPU each daemon used. Run on demand, as root:

    python compat/bench_throughput.py [--rounds 3] [--seconds 10]

Each round builds two namespaces joined by a veth pair, starts the two daemons, configures
them with stock `wg`, runs `iperf3 -c` from one namespace to the other through the tunnel,
and tears everything down. Prints each run, the medians, and wgpy's ratio to wireguard-go.
Traffic stays inside the namespaces the script creates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.lab import Daemon, Lab  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def one_run(impl: str, seconds: int) -> tuple[float, float, float]:
    """(Mbit/s received, CPU seconds of the sending side's daemon, of the receiving side's)."""
    with Lab() as lab:
        a, b = lab.namespace("ba"), lab.namespace("bb")
        lab.link(a, b, "192.168.79.1/24", "192.168.79.2/24")
        da, db = lab.daemon(a, impl, env={"LOG_LEVEL": "error"}), \
            lab.daemon(b, impl, env={"LOG_LEVEL": "error"})
        lab.configure(da, "10.79.0.1/24", 51820)
        lab.configure(db, "10.79.0.2/24", 51820)
        lab.peer(da, db, "10.79.0.2/32", "192.168.79.2:51820")
        lab.peer(db, da, "10.79.0.1/32", "192.168.79.1:51820")
        a.run("ping", "-c", "2", "-i", "0.2", "-W", "2", "10.79.0.2")
        server = b.popen("iperf3", "-s", "-1", "-B", "10.79.0.2", stdout=open(os.devnull, "w"),
                         stderr=open(os.devnull, "w"))
        time.sleep(0.3)
        cpu = [cpu_seconds(_pid(d)) for d in (da, db)]
        out = a.run("iperf3", "-c", "10.79.0.2", "-t", str(seconds), "-J",
                    "--connect-timeout", "3000", timeout=seconds + 30)
        cpu = [cpu_seconds(_pid(d)) - c for d, c in zip((da, db), cpu)]
        server.wait(10)
        result = json.loads(out.stdout)
        mbits = result["end"]["sum_received"]["bits_per_second"] / 1e6
        return mbits, cpu[0] / seconds, cpu[1] / seconds


def _pid(d: Daemon) -> int:
    """The daemon process itself (the Popen is `ip netns exec`, which execs it)."""
    assert d.proc is not None
    return d.proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {"wgpy": [], "wireguard-go": []}
    print(f"{'run':<6}{'implementation':<16}{'Mbit/s':>10}{'CPU sender':>12}{'CPU receiver':>14}")
    for r in range(args.rounds):
        for impl in (("wgpy", "wireguard-go") if r % 2 == 0 else ("wireguard-go", "wgpy")):
            mbits, cpu_a, cpu_b = one_run(impl, args.seconds)
            results[impl].append((mbits, cpu_a, cpu_b))
            print(f"{r + 1:<6}{impl:<16}{mbits:>10.0f}{cpu_a:>11.2f}c{cpu_b:>13.2f}c",
                  flush=True)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3))
           for k, v in results.items()}
    print()
    for impl, (mbits, cpu_a, cpu_b) in med.items():
        print(f"median {impl:<16}{mbits:>8.0f} Mbit/s   CPU {cpu_a:.2f} + {cpu_b:.2f} cores")
    print(f"ratio wgpy / wireguard-go: {med['wgpy'][0] / med['wireguard-go'][0]:.2f}")


if __name__ == "__main__":
    main()

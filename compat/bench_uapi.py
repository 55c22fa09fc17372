"""The UAPI under a big configuration: wgpy beside wireguard-go in the same run. Run on
demand, as root:

    python compat/bench_uapi.py [--rounds 3]

One namespace (made here, removed on exit, also on Ctrl-C or SIGTERM) holds both daemons
(LOG_LEVEL=error, so that neither pays for logging 130k lines). The configuration is the
kernel selftest's big one (netns.sh): one peer with 255*256 IPv4 /16 and as many IPv6 /128
allowed IPs, 130,560 prefixes. Each round times, on each daemon in turn (the order
alternates between rounds), with the stock `wg`:

- `wg setconf IF big.conf`            (the peer does not exist before)
- `wg show IF allowed-ips`            (checked: 130,561 words)
- `wg showconf IF`                    (checked: the same prefixes)
- `wg set IF peer KEY remove`         (drops the 130,560 prefixes)

and prints every run, then the medians and wgpy's time as a multiple of wireguard-go's.
No packet is sent: the interfaces stay down and the peer has no endpoint.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.duo import BIG_COUNT, big_config  # noqa: E402
from compat.lab import Daemon, Lab, b64  # noqa: E402
from wgpy import crypto  # noqa: E402

IMPLS = ("wgpy", "wireguard-go")
OPERATIONS = ("setconf", "show allowed-ips", "showconf", "peer remove")
COUNT = BIG_COUNT
TIMEOUT = 300.0


def timed(d: Daemon, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = d.ns.run("wg", *args, timeout=TIMEOUT).stdout
    return time.perf_counter() - start, out


def one_round(d: Daemon, conf: str, peer: str) -> dict[str, float]:
    times: dict[str, float] = {}
    times["setconf"], _ = timed(d, "setconf", d.ifname, conf)
    times["show allowed-ips"], shown = timed(d, "show", d.ifname, "allowed-ips")
    words = shown.split()
    if len(words) != COUNT + 1 or words[0] != peer:
        raise RuntimeError(f"{d.impl}: wg show allowed-ips gave {len(words)} words")
    times["showconf"], conf_text = timed(d, "showconf", d.ifname)
    listed = sum(line.count(",") + 1 for line in conf_text.splitlines()
                 if line.startswith("AllowedIPs = "))
    if listed != COUNT:
        raise RuntimeError(f"{d.impl}: wg showconf listed {listed} prefixes")
    times["peer remove"], _ = timed(d, "set", d.ifname, "peer", peer, "remove")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    results: dict[str, dict[str, list[float]]] = {
        impl: {op: [] for op in OPERATIONS} for impl in IMPLS}
    with Lab() as lab:
        ns = lab.namespace("bu")
        daemons = {impl: lab.daemon(ns, impl, env={"LOG_LEVEL": "error"}) for impl in IMPLS}
        peer = b64(crypto.public_key(crypto.generate_private_key()))
        conf = lab.tmp / "big.conf"
        conf.write_text(big_config(peer, b64(crypto.generate_private_key())))
        conf.chmod(0o600)
        print(f"{COUNT} allowed IPs on one peer; {args.rounds} rounds; seconds, wall clock "
              "of the stock wg command")
        print(f"{'round':>5}  {'daemon':<13}" + "".join(f"{op:>18}" for op in OPERATIONS))
        for r in range(args.rounds):
            order = IMPLS if r % 2 == 0 else IMPLS[::-1]
            for impl in order:
                times = one_round(daemons[impl], str(conf), peer)
                for op in OPERATIONS:
                    results[impl][op].append(times[op])
                print(f"{r + 1:>5}  {impl:<13}" + "".join(f"{times[op]:>18.3f}"
                                                        for op in OPERATIONS), flush=True)
            for d in daemons.values():
                if not d.alive():
                    raise RuntimeError(f"{d.impl} died:\n{d.log_tail()}")
    print()
    print(f"{'median (s)':<20}{'wgpy':>10}{'wireguard-go':>14}{'wgpy / wg-go':>14}")
    for op in OPERATIONS:
        mine = statistics.median(results["wgpy"][op])
        theirs = statistics.median(results["wireguard-go"][op])
        print(f"{op:<20}{mine:>10.3f}{theirs:>14.3f}{mine / theirs:>13.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

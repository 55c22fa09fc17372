"""The data path's per-packet cost in process, without system calls: one TCP stream's
segments (1,368-byte payloads, as a 1,420-byte MTU gives) sent by one in-memory peer and
received by the other, the receive side coalescing them into TUN writes as the device does.

    python bench/datapath.py [--batch 44] [--seconds 2]          # this interpreter's path
    python bench/datapath.py --both                                # compiled and pure, A/B

Prints microseconds per packet for each step: send (route excluded: stage, nonce, encrypt)
and receive (classify the run, decrypt, replay, source check, coalesce). With --both the
two paths run in alternating subprocesses (WGPY_PURE_PYTHON=1 for the pure one), three
rounds each, medians: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def measure(batch: int, seconds: float) -> dict[str, float]:
    from helpers import EP_A, IP_A, IP_B, Pair  # noqa: PLC0415
    from test_tunoffload import tcp_segment  # noqa: PLC0415
    from wgpy import fastpath  # noqa: PLC0415
    from wgpy.tunoffload import coalesce  # noqa: PLC0415

    pair = Pair()
    pair.handshake(0.0)
    segments, seq = [], 1
    for i in range(batch):
        segments.append(tcp_segment(seq, bytes(1368), ip_id=i, src=IP_A, sport=5001)
                        .replace(bytes([10, 0, 0, 2]), bytes(map(int, IP_B.split(".")))))
        seq += 1368
    # Confirm B's keypair with one packet, then time batches.
    pair.exchange(pair.pa.send_batch(segments[:1], 1.0), 1.0)
    peer_a, peer_b = pair.pa, pair.pb
    out: dict[str, float] = {"native": float(fastpath.NATIVE)}
    t_send = t_recv = 0.0
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        actions = peer_a.send_batch(segments, 2.0)
        t1 = time.perf_counter()
        datagrams = [d for a in actions if hasattr(a, "datagrams") for d in a.datagrams]
        keypair = pair.b.index.get(int.from_bytes(datagrams[0][4:8], "little"))[1]
        t2 = time.perf_counter()
        packets, _, _ = peer_b.consume_data_batch(keypair, datagrams, EP_A, 2.0)
        writes = coalesce(packets)
        t3 = time.perf_counter()
        assert len(packets) == batch and len(writes) <= 2, (len(packets), len(writes))
        t_send += t1 - t0
        t_recv += t3 - t2
        n += batch
    out["send_us"] = t_send / n * 1e6
    out["recv_us"] = t_recv / n * 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=44)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--both", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not args.both:
        r = measure(args.batch, args.seconds)
        print(f"{'compiled' if r['native'] else 'pure'} send {r['send_us']:.2f} us/packet, "
              f"receive {r['recv_us']:.2f} us/packet")
        return
    figures: dict[str, dict[str, list[float]]] = {"compiled": {}, "pure": {}}
    for _ in range(args.rounds):
        for name in ("compiled", "pure"):
            env = {**os.environ, "WGPY_PURE_PYTHON": "1" if name == "pure" else "0"}
            line = subprocess.run([sys.executable, __file__, "--batch", str(args.batch),
                                   "--seconds", str(args.seconds)], env=env, check=True,
                                  capture_output=True, text=True).stdout
            parts = line.split()
            figures[name].setdefault("send", []).append(float(parts[2]))
            figures[name].setdefault("receive", []).append(float(parts[5]))
    for name, f in figures.items():
        print(f"{name:<9} send {statistics.median(f['send']):.2f} us/packet, receive "
              f"{statistics.median(f['receive']):.2f} us/packet (medians of {args.rounds})")


if __name__ == "__main__":
    main()

"""What a step of the first packet's path costs when the process was idle before it.

Run on demand: `python bench/coldpath.py [--idle SECONDS] [--rounds N]`. No root, no I/O.

Why: a packet that meets an idle daemon (the first ping through a fresh tunnel, a ping
every second) finds the daemon's code and data evicted from the CPU caches by whatever ran
meanwhile, and Python touches many more cache lines per step than Go or C do. This prints,
for each step, the median time when it runs back to back ("hot"), and when it runs once
after the process slept `--idle` seconds ("after idle"), with their ratio. The first rows
are references for the machine itself: a Python call that does nothing, and one copy of
200 contiguous cache lines (12.8 KB, a memcpy); if they too are many times slower after
idle, the slowdown is the machine's cost per cache line missed, multiplied by how many
lines a step touches. Then the primitives of a handshake, then the core's steps for one
handshake and one data packet (`wgpy.noise.interface.Interface`, as in the daemon).

Measured on the 2-core development VM (idle 0.05 s, 9 rounds): a no-op call 0.1 us hot
against 10.6 us after idle, the 12.8 KB copy 0.7 against 30 us, one ChaCha20-Poly1305
encryption with a ready context 0.9 against 59 us, an X25519 33 against 121 us; the core's
steps of a first packet 113 + 162 + 103 us hot against 404 + 577 + 468 us after idle,
which is about half of wgpy's first ping there (2.6 ms; wireguard-go's whole first ping
1.4 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from ipaddress import ip_network
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from wgpy import crypto  # noqa: E402
from wgpy.noise.actions import SendBatch, SendDatagram  # noqa: E402
from wgpy.noise.interface import Interface  # noqa: E402
from wgpy.noise.warmup import rehearse  # noqa: E402

_A, _B = ("192.0.2.1", 51820), ("192.0.2.2", 51820)  # documentation addresses, never used
_PING = bytes.fromhex("45000054000040004001b6a20a0000010a000002") + bytes(64)


class _Pair:
    """Two fresh interfaces, peers of each other: a fresh tunnel."""

    def __init__(self) -> None:
        self.a, self.b = (Interface(crypto.generate_private_key()),
                          Interface(crypto.generate_private_key()))
        self.pa = self.a.add_peer(self.b.identity.public)
        self.pb = self.b.add_peer(self.a.identity.public)
        self.pa.endpoint, self.pb.endpoint = _B, _A
        self.a.allowed_ips.insert(ip_network("10.0.0.2/32"), self.pa)
        self.b.allowed_ips.insert(ip_network("10.0.0.1/32"), self.pb)
        self.now = 1000.0

    def initiation(self) -> bytes:
        sent = self.pa.send_batch([_PING], self.now)
        return next(x.data for x in sent if type(x) is SendDatagram)

    def response(self, initiation: bytes) -> bytes:
        return next(x.data for x in self.b.receive(initiation, _A, self.now)
                    if type(x) is SendDatagram)

    def data(self, response: bytes) -> list[bytes]:
        return [d for x in self.a.receive(response, _B, self.now) if type(x) is SendBatch
                for d in x.datagrams]


def _steps() -> list[tuple[str, Callable[[], Callable[[], object]]]]:
    """(name, setup): setup prepares fresh inputs and returns the step to time."""
    key, nonce, payload = os.urandom(32), bytes(12), os.urandom(32)
    private, public = crypto.generate_private_key(), crypto.public_key(
        crypto.generate_private_key())
    lines = bytearray(1 << 24)
    ctx = ChaCha20Poly1305(key)

    view = memoryview(lines)[1 << 23:(1 << 23) + 200 * 64]

    def touch() -> bytes:
        return bytes(view)  # one memcpy over the 200 lines

    def initiation_step() -> Callable[[], object]:
        return _Pair().initiation

    def response_step() -> Callable[[], object]:
        pair = _Pair()
        initiation = pair.initiation()
        return lambda: pair.response(initiation)

    def data_step() -> Callable[[], object]:
        pair = _Pair()
        response = pair.response(pair.initiation())
        return lambda: pair.data(response)

    return [
        ("python call doing nothing", lambda: lambda: None),
        ("copy of 200 cache lines (12.8 KB)", lambda: touch),
        ("BLAKE2s of 64 bytes", lambda: lambda: crypto.hash(payload + payload)),
        ("ChaCha20-Poly1305, ready context", lambda: lambda: ctx.encrypt(nonce, payload, b"")),
        ("X25519 DH", lambda: lambda: crypto.dh(private, public)),
        ("X25519 public key", lambda: lambda: crypto.public_key(private)),
        ("core: initiation for a packet", initiation_step),
        ("core: initiation -> response", response_step),
        ("core: response -> first data", data_step),
    ]


def measure(setup: Callable[[], Callable[[], object]], idle: float, rounds: int
            ) -> tuple[float, float]:
    hot, cold = [], []
    for _ in range(rounds):
        step = setup()
        step()  # a first run, untimed
        step = setup()
        t = time.perf_counter_ns()
        step()
        hot.append(time.perf_counter_ns() - t)
    for _ in range(rounds):
        step = setup()
        time.sleep(idle)
        t = time.perf_counter_ns()
        step()
        cold.append(time.perf_counter_ns() - t)
    return statistics.median(hot) / 1000, statistics.median(cold) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=0.05,
                        help="seconds asleep before each 'after idle' run (default 0.05)")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if not 0 < args.idle <= 10 or not 1 <= args.rounds <= 1000:
        parser.error("--idle in (0, 10], --rounds in [1, 1000]")
    rehearse()
    print(f"median of {args.rounds} runs; 'after idle': each run after {args.idle} s asleep")
    print(f"{'step':38} {'hot us':>9} {'after idle us':>14} {'ratio':>7}")
    for name, setup in _steps():
        hot, cold = measure(setup, args.idle, args.rounds)
        print(f"{name:38} {hot:9.1f} {cold:14.1f} {cold / hot:6.1f}x")


if __name__ == "__main__":
    main()

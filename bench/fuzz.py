"""On-demand fuzzing of the four targets of tests/test_properties.py, without hypothesis'
overhead: seeded random mutations in a loop, bounded in count and time.

    .venv/bin/python bench/fuzz.py [--target messages|receive|coalesce|uapi|fastpath|all]
                                   [--count 1000000] [--seconds 900] [--seed 1]

Targets (the invariants are those of the property tests):
- messages: near-messages through `classify`/`parse`, against the written-out rule;
- receive: real initiation/response/cookie reply/transport data from two in-memory peers,
  flipped, truncated, extended or retyped, through `Interface.receive`: never raises, only
  Action types, and a change to authenticated bytes or the size is always dropped;
- coalesce: random interleavings of three TCP flows (gaps, PSH/FIN, byte flips that break
  checksums or headers) through `coalesce`: never raises, every byte accounted for, and every
  50th batch split again by `segment` gives back exactly the packets;
- uapi: request streams of valid, invalid and junk lines through `ServerConnection`, whole and
  in random pieces: never raises, the same events either way;
- fastpath: one random batch of each operation of the compiled batch path (seal, open, split,
  coalesce; tests/fastpath_cases.py) through it and through its pure-Python twin: equal
  results, exceptions included. `--module PATH` loads the compiled module from a file, such
  as the AddressSanitizer/UBSan build .ci/run makes and runs 10^5 batches on.

Prints inputs, seconds and inputs/s per target; each failure with its seed, input index and
the input itself (hex) as reproducer. Exit status 1 if anything failed. Not part of the suite.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import EP_A, EP_B, IP_A, IP_B, Pair, ipv4, sent  # noqa: E402
from test_properties import (  # noqa: E402
    ACTIONS, feed, model_classify, mutate,
)
from fastpath_cases import one_batch  # noqa: E402
from test_tunoffload import tcp_segment  # noqa: E402
from wgpy import messages  # noqa: E402
from wgpy.constants import COOKIE_REPLY_SIZE, INITIATION_SIZE, RESPONSE_SIZE  # noqa: E402
from wgpy.noise.actions import Drop, WriteToTun  # noqa: E402
from wgpy.tunoffload import NO_OFFLOAD, coalesce, segment  # noqa: E402

MAX_FAILURES = 10


# --- messages -------------------------------------------------------------------------------------

def messages_inputs(rng: random.Random) -> Iterator[bytes]:
    sizes = [0, 1, 3, 4, 31, 32, 33, 63, 64, 91, 92, 93, 147, 148, 149, 1500]
    words = [0, 1, 2, 3, 4, 5, 0x101, 0x01000001, 0xFFFFFFFF]
    while True:
        size = rng.choice(sizes) if rng.random() < 0.8 else rng.randrange(200)
        body = rng.randbytes(size)
        if rng.random() < 0.8 and size >= 4:
            body = rng.choice(words).to_bytes(4, "little") + body[4:]
        yield body


def messages_check(data: bytes) -> None:
    kind = messages.classify(data)
    assert kind == model_classify(data), "classify disagrees with the rule"
    if kind is not None:
        assert messages.parse(data).type == kind


# --- receive --------------------------------------------------------------------------------------

class Receive:
    def __init__(self) -> None:
        pair = Pair()
        init = sent(pair.pa.initiate(0.0))[0]
        cookie = sent(pair.b.receive(init, EP_A, 0.0, under_load=True))[0]
        resp = sent(pair.b.receive(init, EP_A, 0.0))[0]
        pair.exchange(pair.a.receive(resp, EP_B, 0.0), 0.0)
        data = sent(pair.pa.send(ipv4(IP_A, IP_B, b"payload" * 20), 1.0))[0]
        self.pair = pair
        self.real = [("initiation", init, "b", INITIATION_SIZE - 16),
                     ("response", resp, "a", RESPONSE_SIZE - 16),
                     ("cookie", cookie, "a", COOKIE_REPLY_SIZE),
                     ("data", data, "b", len(data))]

    def inputs(self, rng: random.Random) -> Iterator[tuple[int, list[tuple[str, int, int]], bool]]:
        while True:
            ops = []
            for _ in range(rng.randint(1, 4)):
                op = rng.choice(("flip", "flip", "flip", "truncate", "extend", "type"))
                n = rng.randrange(6) if op == "type" else rng.randrange(
                    1, 64) if op == "extend" else rng.randrange(4000)
                ops.append((op, n, rng.randint(1, 255)))
            yield rng.randrange(4), ops, rng.random() < 0.3

    def check(self, item: tuple[int, list[tuple[str, int, int]], bool]) -> None:
        which, ops, under_load = item
        name, original, side, protected = self.real[which]
        data = mutate(original, ops)
        iface, src = (self.pair.b, EP_A) if side == "b" else (self.pair.a, EP_B)
        actions = iface.receive(data, src, 2.0, under_load)
        assert all(isinstance(a, ACTIONS) for a in actions), "unknown action"
        if len(data) != len(original) or data[:protected] != original[:protected]:
            assert any(isinstance(a, Drop) for a in actions), f"mutated {name} not dropped"
            assert not any(isinstance(a, WriteToTun) for a in actions)


# --- coalesce -------------------------------------------------------------------------------------

class Coalesce:
    def __init__(self) -> None:
        # Three flows per family, 64 consecutive segments each (some shorter, some PSH).
        rng = random.Random(7)
        self.flows: list[list[bytes]] = []
        for v6 in (False, True):
            for flow in range(3):
                seq, out = 1000 + flow * 99991, []
                for i in range(64):
                    size = 1000 if rng.random() < 0.8 else rng.choice([1, 99, 536, 999])
                    flags = 0x18 if rng.random() < 0.1 else (0x11 if rng.random() < 0.02 else 0x10)
                    out.append(tcp_segment(seq, rng.randbytes(size), v6=v6, ip_id=100 + i,
                                           flags=flags, sport=5000 + flow))
                    seq += size
                self.flows.append(out)
        self.n = 0

    def inputs(self, rng: random.Random) -> Iterator[list[bytes]]:
        while True:
            family = rng.randrange(2) * 3
            cursors = [rng.randrange(64) for _ in range(3)]
            batch = []
            for _ in range(rng.randint(1, 24)):
                f = rng.randrange(3) if rng.random() < 0.3 else 0
                flow = self.flows[family + f]
                if rng.random() < 0.05:
                    cursors[f] += rng.randint(1, 3)  # a gap
                p = flow[cursors[f] % 64]
                cursors[f] += 1
                if rng.random() < 0.1:
                    b = bytearray(p)
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                    p = bytes(b)
                batch.append(p)
            yield batch

    def check(self, batch: list[bytes]) -> None:
        writes = coalesce(batch)
        self.n += 1
        if self.n % 50 == 0:
            back = [q for w in writes for q in segment(b"".join(bytes(b) for b in w))]
            assert back == batch, "coalesce then segment changed the packets"
            return
        got = 0
        for w in writes:
            if bytes(w[0]) == NO_OFFLOAD:
                got += len(w[1])
            else:
                hdr = len(w[1]) + len(w[2])
                got += sum(len(b) for b in w[3:]) + hdr * (len(w) - 3)
        assert got == sum(len(p) for p in batch), "bytes lost or invented"


# --- uapi -----------------------------------------------------------------------------------------

KEY = "ab" * 32
LINES = [
    "set=1", "get=1", "", "\r", "private_key=" + KEY, "private_key=" + KEY + " ",
    "listen_port=51820", "listen_port=99999", "fwmark=0", "replace_peers=true",
    "public_key=" + KEY, "public_key=" + "cd" * 32, "preshared_key=" + "00" * 32,
    "endpoint=1.2.3.4:51820", "endpoint=[fe80::1%lo]:1", "endpoint=[::1]:x",
    "allowed_ip=10.0.0.0/8", "allowed_ip=10.1.2.3/32", "allowed_ip=fd00::/64",
    "allowed_ip=-10.0.0.0/8", "allowed_ip=300.0.0.0/8", "replace_allowed_ips=true",
    "persistent_keepalive_interval=25", "update_only=true", "remove=true",
    "protocol_version=1", "bogus=1", "no equals sign", "set=1\r",
]


def uapi_inputs(rng: random.Random) -> Iterator[tuple[bytes, list[int]]]:
    while True:
        parts = []
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.05:
                parts.append(rng.randbytes(rng.randint(1, 40)))
            else:
                parts.append(rng.choice(LINES).encode() + b"\n")
        data = b"".join(parts)
        yield data, [rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 8))]


def uapi_check(item: tuple[bytes, list[int]]) -> None:
    data, cuts = item
    assert feed(data, cuts) == feed(data, []), "events depend on how the bytes were cut"


# --- fastpath: the compiled batch path against its pure-Python twin ----------------------------

NATIVE: list[ModuleType] = []  # the compiled module under test (--module, else wgpy._fastpath)


def load_native(path: str | None) -> ModuleType:
    """The compiled module from `path` (an ASan/UBSan build, say), else the installed one."""
    if path is None:
        from wgpy import _fastpath  # type: ignore[attr-defined]  # noqa: PLC0415
        return _fastpath
    spec = importlib.util.spec_from_file_location("wgpy._fastpath", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fastpath_inputs(rng: random.Random) -> Iterator[int]:
    while True:
        yield rng.getrandbits(64)  # one batch of each operation, from its own seed


def fastpath_check(seed: int) -> None:
    diffs = one_batch(random.Random(seed), NATIVE[0])
    assert not diffs, diffs


# --- the loop -------------------------------------------------------------------------------------

def targets() -> dict[str, Callable[[], tuple[Callable[[random.Random], Iterator[Any]],
                                               Callable[[Any], None]]]]:
    def receive() -> tuple[Any, Any]:
        r = Receive()
        return r.inputs, r.check

    def coal() -> tuple[Any, Any]:
        c = Coalesce()
        return c.inputs, c.check

    return {"messages": lambda: (messages_inputs, messages_check), "receive": receive,
            "coalesce": coal, "uapi": lambda: (uapi_inputs, uapi_check),
            "fastpath": lambda: (fastpath_inputs, fastpath_check)}


def run(name: str, count: int, seconds: float, seed: int) -> int:
    inputs, check = targets()[name]()
    rng = random.Random(seed)
    failures = done = 0
    start = time.monotonic()
    deadline = start + seconds
    for i, item in enumerate(inputs(rng)):
        if i >= count or (i & 1023 == 0 and time.monotonic() > deadline):
            break
        try:
            check(item)
        except Exception:
            failures += 1
            print(f"FAIL {name} seed={seed} input={i}: {item!r}"[:2000])
            traceback.print_exc()
            if failures >= MAX_FAILURES:
                break
        done = i + 1
    elapsed = time.monotonic() - start
    print(f"{name}: {done} inputs in {elapsed:.1f} s, {done / elapsed:,.0f} inputs/s, "
          f"{failures} failures", flush=True)
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=[*targets(), "all"], default="all")
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=900.0, help="per target")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--module", help="fastpath: the compiled module's file (default: the "
                    "installed wgpy._fastpath)")
    args = ap.parse_args()
    names = list(targets()) if args.target == "all" else [args.target]
    if "fastpath" in names:
        NATIVE.append(load_native(args.module))
    failed = sum(run(n, args.count, args.seconds, args.seed) for n in names)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

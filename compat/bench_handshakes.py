"""Handshakes per second that a daemon completes as a responder, wgpy beside wireguard-go.
Run on demand, as root (compat/bench_throughput.py calls it for its table):

    python compat/bench_handshakes.py [--rounds 3] [--seconds 5] [--mode paced|flood|both]

Method. Each measurement builds two namespaces joined by a veth pair: the responder runs the
daemon under test (LOG_LEVEL=error) configured by stock `wg` with PEERS peers (default 1000;
public keys only, no endpoints), the client namespace runs this script's client, plain
Python on wgpy's sans-IO primitives (`wgpy.crypto`, `wgpy.noise.handshake`). The client's
veth carries SOURCES IPv4 addresses (default 1024) and it sends every initiation from one UDP
socket, choosing its source address per datagram with IP_PKTINFO, round-robin.

- Pre-generation, before the clock starts: per peer one static key and one ephemeral key,
  so the first half of the Noise initiation (e, es, s, ss) is computed once per peer; each
  initiation then differs only in its TAI64N timestamp (strictly increasing per peer, as
  the responder requires), its AEAD, its sender index (unique per initiation) and its
  mac1. Reusing the ephemeral is what a real initiator must not do, but the responder
  cannot tell and does all of its work (DH es, ss is its precomputation, a fresh ephemeral,
  DH ee and se, the AEADs, the index table, a new keypair) for every message; it is what
  keeps X25519 in Python (~40 us) out of the client's per-message cost.
- Timed run: a closed loop with at most WINDOW initiations outstanding. A peer has at most
  one initiation outstanding and sends its next one no sooner than 21 ms after the
  response to the previous one arrived, so the responder's flood guard (50 initiations/s
  per peer, kernel INITIATIONS_PER_SECOND, wireguard-go HandshakeInitationRate) never
  fires; an initiation unanswered after 1 s counts as lost and frees its slot.
- Responses are counted when their receiver index names an outstanding initiation, over
  SECONDS after a 1 s warm-up; afterwards a sample of up to 64 of them is checked in full
  (mac1, and the Noise response decrypts: ee, se, psk, empty payload) with the initiator's
  keys, and the run fails if any of the sample is invalid.
- Two modes. `paced`: WINDOW 64, below the "under load" threshold of both responders (1/8
  of the handshake queue: 128 in wireguard-go, 512 in wgpy), so no cookies and no rate
  limiter: the responder's plain handshake capacity with its queue never empty. `flood`:
  WINDOW 1024, over both thresholds: the responder is under load, answers messages
  without a valid mac2 with cookie replies and rate-limits each source address (20/s,
  burst 5). The client consumes each cookie reply (XChaCha20-Poly1305 under
  HASH("cookie--" || responder's public key), the rejected message's mac1 as associated
  data), keeps the cookie per source address, resends the rejected initiation with mac2
  and adds mac2 to every later message from that address; 1024 sources keep the rate
  limiter's ceiling (about 20k/s) above both responders. Cookie replies are counted and
  reported, so one can see that the mode did put the responder under load.

Each result also gives the responder daemon's CPU (cores) over the timed window.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wgpy import crypto  # noqa: E402
from wgpy.constants import IDENTIFIER, LABEL_COOKIE, LABEL_MAC1  # noqa: E402
from wgpy.noise.handshake import HandshakeError, initialize, read_response  # noqa: E402
from wgpy.tai64n import timestamp  # noqa: E402

MODES = {"paced": 64, "flood": 1024}  # mode -> window of outstanding initiations
DEFAULT_PEERS = 1000
DEFAULT_SOURCES = 1024
WARMUP = 1.0
LOST_AFTER = 1.0
PEER_SPACING = 0.021  # s between a response and that peer's next initiation (> 20 ms)
SAMPLE = 64
MAX_RATE = 40_000  # initiations pre-generated per second of run (the measurable ceiling)
PORT = 51820
# The veth: client 10.213.255.253/16, responder 10.213.255.254/16. The client's source
# addresses are 10.215.x.y/32 on its veth, routed by the responder via the client's veth
# address, so that the responder's namespace needs one neighbour entry, not one per source
# (the neighbour table's gc_thresh3 is 1024 by default).
LINK = "10.213.255"
RESPONDER_IP = f"{LINK}.254"
SOURCE_NET = "10.215"

_INIT_HEAD = struct.Struct("<II32s48s28s")  # type, sender, ephemeral, static, timestamp
_U32 = struct.Struct("<I")
_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux <netinet/in.h>; Python 3.13 names it


# --- the initiator's side, pre-computed --------------------------------------------------------

@dataclass
class PeerMaterial:
    """One client peer: its keys and the part of the initiation that does not change."""

    static_private: bytes
    static_public: bytes
    ephemeral_private: bytes
    ephemeral_public: bytes
    static_ct: bytes
    ck: bytes  # chaining key after e, es, s, ss
    h: bytes  # hash after e, es, s (before the timestamp)
    key: bytes  # the AEAD key for the timestamp

    @classmethod
    def make(cls, static_private: bytes, responder_public: bytes) -> PeerMaterial:
        s_priv = crypto.clamp(static_private)
        s_pub = crypto.public_key(s_priv)
        e_priv = crypto.generate_private_key()
        e_pub = crypto.public_key(e_priv)
        ck, h = initialize(IDENTIFIER, responder_public)
        ck, h = crypto.kdf1(ck, e_pub), crypto.hash(h + e_pub)  # e
        ck, key = crypto.kdf2(ck, crypto.dh(e_priv, responder_public))  # es
        static_ct = crypto.aead_encrypt(key, 0, s_pub, h)  # s
        h = crypto.hash(h + static_ct)
        ck, key = crypto.kdf2(ck, crypto.dh(s_priv, responder_public))  # ss
        return cls(s_priv, s_pub, e_priv, e_pub, static_ct, ck, h, key)

    def initiation(self, sender: int, ts: bytes, mac1_key: bytes) -> bytes:
        """The initiation with this timestamp and sender index, mac1 set, mac2 zero."""
        ts_ct = crypto.aead_encrypt(self.key, 0, ts, self.h)
        body = _INIT_HEAD.pack(1, sender, self.ephemeral_public, self.static_ct, ts_ct)
        return body + crypto.mac(mac1_key, body) + bytes(16)

    def check_response(self, initiation: bytes, response: bytes) -> bool:
        """Is `response` a valid answer to `initiation` (mac1, then the Noise message)?"""
        if len(response) != 92 or response[0] != 2 or response[1:4] != bytes(3):
            return False
        if _U32.unpack_from(response, 8)[0] != _U32.unpack_from(initiation, 4)[0]:
            return False
        if crypto.mac(crypto.hash(LABEL_MAC1 + self.static_public), response[:60]) \
                != response[60:76]:
            return False
        ts_ct = initiation[88:116]
        h = crypto.hash(self.h + ts_ct)
        try:
            read_response(self.ck, h, self.ephemeral_private, self.static_private,
                          response[12:44], crypto.ZERO_KEY, response[44:60])
        except HandshakeError:
            return False
        return True


def timestamps(base_ns: int, count: int) -> list[bytes]:
    """`count` strictly increasing TAI64N timestamps from the wall-clock time `base_ns`
    (the nanoseconds field counts up from the whitened base; responders compare bytes)."""
    first = timestamp(base_ns)
    seconds, nanos = first[:8], int.from_bytes(first[8:], "big")
    assert nanos + count < 1_000_000_000
    return [seconds + (nanos + k + 1).to_bytes(4, "big") for k in range(count)]


def sender_index(peer: int, k: int, peers: int) -> int:
    return (k * peers + peer + 1) & 0xFFFFFFFF


def pregenerate(material: list[PeerMaterial], responder_public: bytes, per_peer: int
                ) -> list[list[bytes]]:
    mac1_key = crypto.hash(LABEL_MAC1 + responder_public)
    stamps = timestamps(time.time_ns(), per_peer)
    n = len(material)
    return [[m.initiation(sender_index(p, k, n), stamps[k], mac1_key)
             for k in range(per_peer)] for p, m in enumerate(material)]


# --- the client, run inside its namespace ------------------------------------------------------

def source_addresses(count: int) -> list[str]:
    return [f"{SOURCE_NET}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def client(args: argparse.Namespace) -> dict[str, object]:
    """The timed closed loop; prints 'START' and 'END' lines around the timed window."""
    spec = json.loads(Path(args.client).read_text())
    responder_public = bytes.fromhex(spec["responder_public"])
    window, seconds = spec["window"], spec["seconds"]
    t0 = time.monotonic()
    material = [PeerMaterial.make(bytes.fromhex(k), responder_public) for k in spec["keys"]]
    n = len(material)
    per_peer = max(2, int(MAX_RATE * (seconds + WARMUP) / n) + 1)
    msgs = pregenerate(material, responder_public, per_peer)
    pregen = time.monotonic() - t0
    cookie_key = crypto.hash(LABEL_COOKIE + responder_public)
    sources = [socket.inet_aton(a) for a in source_addresses(spec["sources"])]
    dest = (spec["responder_ip"], spec["port"])

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)

    ready: deque[int] = deque(range(n))
    cooling: deque[tuple[float, int]] = deque()  # (ready at, peer), in time order
    next_k = [0] * n
    outstanding: dict[int, tuple[int, int, float, bytes]] = {}  # idx -> peer, src, sent, msg
    cookies: dict[int, bytes] = {}  # source number -> cookie
    sample: list[tuple[int, bytes, bytes]] = []
    counted = sent = lost = cookie_replies = bad_cookies = unmatched = 0
    rr = 0
    clock = time.monotonic

    def send(msg: bytes, src: int) -> None:
        cookie = cookies.get(src)
        if cookie is not None:
            msg = msg[:132] + crypto.mac(cookie, msg[:132])
        try:
            sock.sendmsg([msg], [(socket.IPPROTO_IP, IP_PKTINFO,
                                  _PKTINFO.pack(0, sources[src], b"\0\0\0\0"))], 0, dest)
        except (BlockingIOError, ConnectionRefusedError):
            pass  # counted as lost after LOST_AFTER

    print("START", flush=True)
    start = clock()
    cpu_start = time.process_time()
    begin, end = start + WARMUP, start + WARMUP + seconds
    next_expiry = start + 0.1
    now = start
    iterations = 0
    while now < end and iterations < 50_000_000:
        iterations += 1
        while len(outstanding) < window and ready:
            p = ready.popleft()
            k = next_k[p]
            if k >= per_peer:
                continue  # this peer has used up its pre-generated initiations
            next_k[p] = k + 1
            msg = msgs[p][k]
            src = rr
            rr = (rr + 1) % len(sources)
            send(msg, src)
            sent += 1
            outstanding[sender_index(p, k, n)] = (p, src, now, msg)
        if not outstanding and not ready and not cooling:
            break  # every initiation used up
        select.select([sock], [], [], 0.002)
        now = clock()
        while True:
            try:
                data = sock.recv(256)
            except BlockingIOError:
                break
            if len(data) == 92 and data[0] == 2:
                o = outstanding.pop(_U32.unpack_from(data, 8)[0], None)
                if o is None:
                    unmatched += 1
                    continue
                if begin <= now < end:
                    counted += 1
                    if len(sample) < SAMPLE and random.random() < 0.05:
                        sample.append((o[0], o[3], data))
                cooling.append((now + PEER_SPACING, o[0]))
            elif len(data) == 64 and data[0] == 3:
                idx = _U32.unpack_from(data, 4)[0]
                o = outstanding.get(idx)
                if o is None:
                    unmatched += 1
                    continue
                cookie_replies += 1
                try:
                    cookies[o[1]] = crypto.xaead_decrypt(cookie_key, data[8:32], data[32:64],
                                                         o[3][116:132])
                except crypto.InvalidTag:
                    bad_cookies += 1
                    continue
                send(o[3], o[1])  # the rejected initiation again, now with mac2
                outstanding[idx] = (o[0], o[1], now, o[3])
            else:
                unmatched += 1
        if now >= next_expiry:
            next_expiry = now + 0.1
            for idx in [i for i, o in outstanding.items() if now - o[2] > LOST_AFTER]:
                lost += 1
                cooling.append((now + PEER_SPACING, outstanding.pop(idx)[0]))
            cooling = deque(sorted(cooling))
        while cooling and cooling[0][0] <= now:
            ready.append(cooling.popleft()[1])
    elapsed = min(now, end) - begin
    client_cores = (time.process_time() - cpu_start) / (now - start)
    print("END", flush=True)
    sock.close()
    exhausted = sum(1 for k in next_k if k >= per_peer)
    verified = sum(material[p].check_response(m, r) for p, m, r in sample)
    return {
        "responses": counted, "seconds": elapsed,
        "rate": counted / elapsed if elapsed > 0 else 0.0,
        "sent": sent, "lost": lost, "cookie_replies": cookie_replies,
        "bad_cookies": bad_cookies, "unmatched": unmatched, "window": window, "peers": n,
        "sources": len(sources), "pregenerated": per_peer * n, "pregen_seconds": pregen,
        "peers_exhausted": exhausted, "sampled": len(sample), "verified": verified,
        "client_cores": client_cores,
    }


# --- the measurement, run as root --------------------------------------------------------------

def add_addresses(ns_name: str, dev: str, addresses: list[str]) -> None:
    batch = "".join(f"addr add {a}/32 dev {dev}\n" for a in addresses)
    subprocess.run(["ip", "-n", ns_name, "-batch", "-"], input=batch, text=True, check=True,
                   capture_output=True, timeout=60)


def measure(impl: str, mode: str = "paced", seconds: float = 5.0, peers: int = DEFAULT_PEERS,
            sources: int = DEFAULT_SOURCES) -> dict[str, object]:
    """One fresh responder of `impl`, one client run; returns the client's figures plus the
    responder's CPU cores over the run and its peak RSS."""
    from compat.bench_throughput import cpu_seconds, peak_rss_kib  # noqa: PLC0415
    from compat.lab import Lab, b64  # noqa: PLC0415

    window = MODES[mode]
    with Lab() as lab, tempfile.TemporaryDirectory(prefix="wgpy-hs-") as tmp:
        c, r = lab.namespace("hc"), lab.namespace("hr")
        lab.link(c, r, f"{LINK}.253/16", f"{RESPONDER_IP}/16")
        dev = next(line.split(":")[1].strip().split("@")[0]
                   for line in c.run("ip", "-o", "link").stdout.splitlines()
                   if "@" in line and line.split(":")[1].strip().startswith("va"))
        add_addresses(c.name, dev, source_addresses(sources))
        r.run("ip", "route", "add", f"{SOURCE_NET}.0.0/16", "via", f"{LINK}.253")
        d = lab.daemon(r, impl, env={"LOG_LEVEL": "error"})
        lab.configure(d, "10.214.0.1/24", PORT)
        keys = [crypto.generate_private_key() for _ in range(peers)]
        conf = Path(tmp, "peers.conf")
        conf.write_text("".join(f"[Peer]\nPublicKey = {b64(crypto.public_key(k))}\n\n"
                                for k in keys))
        d.wg("addconf", d.ifname, str(conf))
        spec = Path(tmp, "client.json")
        spec.write_text(json.dumps({
            "responder_public": d.public_key.hex(), "keys": [k.hex() for k in keys],
            "window": window, "seconds": seconds, "sources": sources,
            "responder_ip": RESPONDER_IP, "port": PORT}))
        assert d.proc is not None
        proc = c.popen(sys.executable, str(Path(__file__).resolve()), "--client", str(spec),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 120 + seconds
            cpu0 = t0 = None
            cpu1 = t1 = None
            line = ""
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                if line.strip() == "START":
                    cpu0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
                elif line.strip() == "END":
                    cpu1, t1 = cpu_seconds(d.proc.pid), time.monotonic()
                    break
            rest, err = proc.communicate(timeout=max(10.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        if proc.returncode != 0 or cpu1 is None:
            raise RuntimeError(f"handshake client failed ({proc.returncode}): {err[-2000:]}")
        result = json.loads(rest.strip().splitlines()[-1])
        result["impl"], result["mode"] = impl, mode
        assert cpu0 is not None and t0 is not None and t1 is not None
        result["responder_cores"] = (cpu1 - cpu0) / (t1 - t0)
        result["responder_rss_kib"] = peak_rss_kib(d.proc.pid)
        if result["sampled"] and result["verified"] != result["sampled"]:
            raise RuntimeError(f"{impl}: {result['sampled'] - result['verified']} of "
                               f"{result['sampled']} sampled responses did not verify")
        return result


def describe(r: dict[str, object]) -> str:
    return (f"{r['impl']:<13}{r['mode']:<7}{r['rate']:>9.0f}/s  responder "
            f"{r['responder_cores']:.2f} cores, client {r['client_cores']:.2f}  "
            f"sent {r['sent']}  lost {r['lost']}  "
            f"cookies {r['cookie_replies']}  verified {r['verified']}/{r['sampled']}  "
            f"exhausted {r['peers_exhausted']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument("--peers", type=int, default=DEFAULT_PEERS)
    parser.add_argument("--sources", type=int, default=DEFAULT_SOURCES)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(client(args)), flush=True)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    modes = list(MODES) if args.mode == "both" else [args.mode]
    rates: dict[tuple[str, str], list[float]] = {}
    for rnd in range(args.rounds):
        impls = ("wgpy", "wireguard-go") if rnd % 2 == 0 else ("wireguard-go", "wgpy")
        for mode in modes:
            for impl in impls:
                r = measure(impl, mode, args.seconds, args.peers, args.sources)
                rates.setdefault((impl, mode), []).append(float(r["rate"]))  # type: ignore
                print(f"round {rnd + 1}  {describe(r)}", flush=True)
    for mode in modes:
        a = statistics.median(rates[("wgpy", mode)])
        b = statistics.median(rates[("wireguard-go", mode)])
        print(f"median {mode}: wgpy {a:.0f}/s, wireguard-go {b:.0f}/s, ratio {a / b:.2f}")


if __name__ == "__main__":
    main()

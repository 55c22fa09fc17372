"""An hour of churn, on demand (not in the suite): two wgpy daemons and today's wireguard-go
carry verified traffic while everything around them changes.

    sudo .venv/bin/python compat/soak.py                 # one hour, a table every 5 minutes
    sudo .venv/bin/python compat/soak.py --minutes 10 --interval 1

Theory of operation. Three network namespaces: the hub `a` runs wgpy, `b` runs wgpy and `c`
runs upstream wireguard-go (compat/upstream.py builds it when missing); `a` is a peer of
both, over a veth each. Four flows run the whole time, each a process of this script in the
sending or receiving namespace:

    tcp a->b (wgpy to wgpy), tcp c->a (wireguard-go to wgpy), paced
    udp b->a, udp a->c, paced datagrams

Every byte is checked: a TCP stream is a known pseudo-random pattern (byte i of a
connection is PATTERN[i mod P], P prime so reads never align with it), a datagram carries
its sequence number and a BLAKE2b digest, and its payload is derived from the sequence
number. A mismatch counts as corrupted. Around the traffic:

- rekeys happen on their own (REKEY_AFTER_TIME, 120 s);
- every --roam seconds `b` moves to another address on its veth and `c` to another
  listen port: `a` must follow both endpoints from authenticated packets;
- every second a peer is added to `a` with `wg set` and the one before removed;
- every 100 ms `wg show IF dump` reads `a` and `b` (and `a`'s dumps count handshakes);
- every --flap seconds `a`'s link goes down for two seconds and comes back.

Each --interval a line per figure: bytes delivered and verified per flow, corrupted bytes,
drops by reason (wgpy's metrics), handshakes, and each daemon's RSS, open fds and threads.
It fails (exit 1) on a corrupted byte, a flow that delivered nothing in an interval, a dead
daemon or a wgpy thread role gone, or a wgpy daemon's RSS or open fds more than 10 % above
what they were at the end of the first interval (wireguard-go's are shown, not judged: its
heap follows Go's garbage collector).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PORT = 51820
METRICS = "127.0.0.1:9586"
P = 65521  # the pattern's period: prime, so no read size lines up with it
CHUNK = 16384
DATAGRAM = 1200
UDP_HEAD = struct.Struct("!Q8s")  # sequence number, BLAKE2b-64 of the payload
WGPY_ROLES = ("datapath", "handshake", "timers", "uapi_accept", "netlink", "metrics")
GROWTH = 1.10  # RSS and open fds may not grow past this after the first interval


def pattern(seed: int = 0x50AC) -> bytes:
    """The traffic's bytes: P pseudo-random bytes, then enough again to slice any read
    without wrapping."""
    rng = random.Random(seed)
    base = rng.randbytes(P)
    return base + base[:CHUNK * 4]


def datagram_payload(seq: int, pat: bytes) -> bytes:
    start = (seq * 7919) % P
    return pat[start:start + DATAGRAM]


def make_datagram(seq: int, pat: bytes) -> bytes:
    payload = datagram_payload(seq, pat)
    return UDP_HEAD.pack(seq, hashlib.blake2b(payload, digest_size=8).digest()) + payload


def check_datagram(data: bytes, pat: bytes) -> tuple[int | None, bool]:
    """(sequence number or None, whole and as sent)."""
    if len(data) != UDP_HEAD.size + DATAGRAM:
        return None, False
    seq, digest = UDP_HEAD.unpack_from(data)
    payload = data[UDP_HEAD.size:]
    ok = hashlib.blake2b(payload, digest_size=8).digest() == digest \
        and payload == datagram_payload(seq, pat)
    return seq, ok


def check_stream(offset: int, data: bytes, pat: bytes) -> int:
    """Bytes of `data` (received at stream `offset`) that differ from the pattern; reads
    are at most CHUNK * 4 bytes."""
    start = offset % P
    expected = pat[start:start + len(data)]
    if expected == data:
        return 0
    return sum(1 for x, y in zip(expected, data) if x != y)


# --- the traffic roles, run in a namespace as `soak.py _role ...` --------------------------------

def _report(every: float, state: dict[str, int], stop: threading.Event) -> None:
    while not stop.wait(every):
        print(json.dumps(state), flush=True)


def role_tcp_sink(address: str, port: int) -> None:
    pat = pattern()
    state = {"bytes": 0, "bad": 0, "conns": 0}
    stop = threading.Event()
    threading.Thread(target=_report, args=(1.0, state, stop), daemon=True).start()
    server = socket.create_server((address, port), reuse_port=False)
    while True:
        conn, _ = server.accept()
        state["conns"] += 1
        offset = 0
        with conn:
            try:
                while True:
                    data = conn.recv(CHUNK * 2)
                    if not data:
                        break
                    state["bad"] += check_stream(offset, data, pat)
                    offset += len(data)
                    state["bytes"] += len(data)
            except OSError:
                pass


def role_tcp_source(address: str, port: int, rate: float) -> None:
    pat = pattern()
    state = {"bytes": 0, "reconnects": 0}
    stop = threading.Event()
    threading.Thread(target=_report, args=(1.0, state, stop), daemon=True).start()
    while True:
        try:
            sock = socket.create_connection((address, port), timeout=30)
        except OSError:
            time.sleep(1)
            state["reconnects"] += 1
            continue
        offset, started, sent = 0, time.monotonic(), 0
        try:
            with sock:
                while True:
                    start = offset % P
                    sock.sendall(pat[start:start + CHUNK])
                    offset += CHUNK
                    sent += CHUNK
                    state["bytes"] += CHUNK
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            state["reconnects"] += 1
            time.sleep(1)


def role_udp_sink(address: str, port: int) -> None:
    pat = pattern()
    state = {"bytes": 0, "bad": 0, "datagrams": 0, "highest": -1}
    stop = threading.Event()
    threading.Thread(target=_report, args=(1.0, state, stop), daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    while True:
        data = sock.recv(65536)
        seq, ok = check_datagram(data, pat)
        if not ok:
            state["bad"] += len(data)
            continue
        state["datagrams"] += 1
        state["bytes"] += len(data)
        state["highest"] = max(state["highest"], seq or 0)


def role_udp_source(address: str, port: int, rate: float) -> None:
    pat = pattern()
    state = {"sent": 0, "errors": 0}
    stop = threading.Event()
    threading.Thread(target=_report, args=(1.0, state, stop), daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    started, seq = time.monotonic(), 0
    while True:
        try:
            sock.sendto(make_datagram(seq, pat), (address, port))
            state["sent"] += 1
        except OSError:
            state["errors"] += 1
        seq += 1
        ahead = seq / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)


ROLES = {"_tcp_sink": role_tcp_sink, "_tcp_source": role_tcp_source,
         "_udp_sink": role_udp_sink, "_udp_source": role_udp_source}


# --- the orchestra -----------------------------------------------------------------------------

class Reader:
    """The last JSON line a role process printed."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.last: dict[str, int] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.last = json.loads(line)
            except ValueError:
                pass


@dataclass
class Watch:
    """What one daemon looks like from /proc."""

    name: str
    pid: int
    wgpy: bool
    first: dict[str, int] = field(default_factory=dict)

    def sample(self) -> dict[str, Any]:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            roles = set()
            for task in os.listdir(f"/proc/{self.pid}/task"):
                try:
                    roles.add(Path(f"/proc/{self.pid}/task/{task}/comm").read_text().strip())
                except OSError:
                    pass
        except OSError:
            return {"alive": False}
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return {"alive": True, "rss_kib": rss, "fds": fds, "threads": threads, "roles": roles}


def scrape_drops(ns_name: str) -> dict[str, float]:
    """wgpy_dropped_packets_total by reason, read inside namespace `ns_name`."""
    from wgpy.testing.lab import in_netns  # noqa: PLC0415

    out: dict[str, float] = {}
    try:
        with in_netns(ns_name):
            text = urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=5).read().decode()
    except OSError:
        return out
    for m in re.finditer(r'^wgpy_dropped_packets_total\{[^}]*reason="([^"]+)"[^}]*\} (\S+)$',
                         text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def diff(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        from compat.lab import Lab  # noqa: PLC0415
        from compat.upstream import UPSTREAM, ensure_upstream  # noqa: PLC0415

        ensure_upstream()
        self.args = args
        self.lab = Lab()
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.handshakes = {"a-b": 0, "a-c": 0}
        self.events = {"roams": 0, "flaps": 0, "peers_added": 0, "dumps": 0, "dump_errors": 0}
        lab = self.lab
        self.ns_a, self.ns_b, self.ns_c = (lab.namespace(x) for x in ("sa", "sb", "sc"))
        ab, ac = lab.subnet(), lab.subnet()

        def v4(net: Any, n: int) -> str:
            return str(net.host(n)[0]).split("/")[0]
        self.a_to_b, self.b_addr, self.b_other = v4(ab, 1), v4(ab, 2), v4(ab, 3)
        self.a_to_c, self.c_addr = v4(ac, 1), v4(ac, 2)
        _, self.vb = lab.link(self.ns_a, self.ns_b, self.a_to_b + "/24", self.b_addr + "/24")
        # Deleting a subnet's first address deletes the others of it too, unless they are
        # promoted: b's roam adds the new address, then deletes the old one.
        self.ns_b.sysctl(f"net.ipv4.conf.{self.vb}.promote_secondaries", 1)
        lab.link(self.ns_a, self.ns_c, self.a_to_c + "/24", self.c_addr + "/24")
        env = {"LOG_LEVEL": "error", "WGPY_METRICS_ADDRESS": METRICS}
        self.a = lab.daemon(self.ns_a, "wgpy", env=env)
        self.b = lab.daemon(self.ns_b, "wgpy", env=env)
        self.c = lab.daemon(self.ns_c, UPSTREAM, env={"LOG_LEVEL": "error"})
        tunnel = lab.subnet()
        self.ta, self.tb, self.tc = (v4(tunnel, n) for n in (1, 2, 3))
        for d, addr in ((self.a, self.ta), (self.b, self.tb), (self.c, self.tc)):
            lab.configure(d, addr + "/24", PORT)
        self.c_port = PORT
        lab.peer(self.a, self.b, self.tb + "/32", f"{self.b_addr}:{PORT}")
        lab.peer(self.a, self.c, self.tc + "/32", f"{self.c_addr}:{PORT}")
        lab.peer(self.b, self.a, self.ta + "/32", f"{self.a_to_b}:{PORT}",
                 "persistent-keepalive", "25")
        lab.peer(self.c, self.a, self.ta + "/32", f"{self.a_to_c}:{PORT}",
                 "persistent-keepalive", "25")
        self.watches = [Watch("a", self.a.proc.pid, True),  # type: ignore[union-attr]
                        Watch("b", self.b.proc.pid, True),  # type: ignore[union-attr]
                        Watch("c", self.c.proc.pid, False)]  # type: ignore[union-attr]
        self.roles: dict[str, tuple[Reader, Reader]] = {}

    def role(self, ns: Any, *argv: str) -> Reader:
        proc = ns.popen(sys.executable, str(Path(__file__).resolve()), *argv,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return Reader(proc)

    def start_traffic(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        tcp_rate = self.args.tcp_mbits * 1e6 / 8
        udp_rate = str(self.args.udp_pps)
        # (flow, receiving namespace, sink, sending namespace, source, address, port)
        flows = [("tcp a->b", self.ns_b, "_tcp_sink", self.ns_a, "_tcp_source", self.tb, 5201),
                 ("tcp c->a", self.ns_a, "_tcp_sink", self.ns_c, "_tcp_source", self.ta, 5202),
                 ("udp b->a", self.ns_a, "_udp_sink", self.ns_b, "_udp_source", self.ta, 5203),
                 ("udp a->c", self.ns_c, "_udp_sink", self.ns_a, "_udp_source", self.tc, 5204)]
        for name, rx_ns, sink, tx_ns, source, addr, port in flows:
            rx = self.role(rx_ns, sink, addr, str(port))
            time.sleep(0.3)  # the sink listens first
            rate = str(tcp_rate) if source == "_tcp_source" else udp_rate
            tx = self.role(tx_ns, source, addr, str(port), rate)
            self.roles[name] = (rx, tx)

    # --- the churn, each in a thread of its own -------------------------------------------------

    def every(self, period: float, body: Any) -> threading.Thread:
        def loop() -> None:
            due = time.monotonic() + period
            while not self.stop.wait(max(due - time.monotonic(), 0)):
                due += period
                try:
                    body()
                except Exception as exc:  # noqa: BLE001 - reported, the soak goes on
                    self.failures.append(f"{body.__name__}: {exc}")
        thread = threading.Thread(target=loop, name=body.__name__, daemon=True)
        thread.start()
        return thread

    def roam(self) -> None:
        """b to its other address on the veth (a learns it from b's next packet), c to
        another listen port."""
        old, new = self.b_addr, self.b_other
        self.ns_b.run("ip", "addr", "add", new + "/24", "dev", self.vb)
        self.b_addr, self.b_other = new, old
        self.ns_b.run("ip", "addr", "del", old + "/24", "dev", self.vb)
        self.c_port = PORT + 1 if self.c_port == PORT else PORT
        self.c.wg("set", self.c.ifname, "listen-port", str(self.c_port))
        self.events["roams"] += 1

    def churn_peer(self) -> None:
        from wgpy import crypto  # noqa: PLC0415
        from wgpy.testing.lab import b64  # noqa: PLC0415

        key = b64(crypto.public_key(crypto.generate_private_key()))
        n = self.events["peers_added"] % 60000
        self.a.wg("set", self.a.ifname, "peer", key, "allowed-ips",
                  f"10.254.{n // 250}.{n % 250 + 1}/32", "endpoint", "192.0.2.1:51820")
        previous = getattr(self, "_churned", None)
        if previous:
            self.a.wg("set", self.a.ifname, "peer", previous, "remove")
        self._churned = key
        self.events["peers_added"] += 1

    def dumps(self) -> None:
        last = getattr(self, "_last_hs", {})
        for d in (self.a, self.b):
            out = subprocess.run(["wg", "show", d.ifname, "dump"], capture_output=True,
                                 text=True, timeout=10)
            self.events["dumps"] += 1
            if out.returncode != 0:
                self.events["dump_errors"] += 1
                continue
            if d is self.a:
                for line in out.stdout.splitlines()[1:]:
                    fields = line.split("\t")
                    peer = {self.b.public_key_b64: "a-b", self.c.public_key_b64: "a-c"}.get(
                        fields[0])
                    if peer is None:
                        continue
                    if fields[4] != "0" and last.get(peer) not in (None, fields[4]):
                        self.handshakes[peer] += 1
                    last[peer] = fields[4]
        self._last_hs = last

    def flap(self) -> None:
        self.ns_a.run("ip", "link", "set", self.a.ifname, "down")
        time.sleep(2)
        self.ns_a.run("ip", "link", "set", self.a.ifname, "up")
        self.events["flaps"] += 1

    # --- the report ------------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        self.start_traffic()
        threads = [self.every(args.roam, self.roam), self.every(1.0, self.churn_peer),
                   self.every(0.1, self.dumps), self.every(args.flap, self.flap)]
        drops_before = {w.name: scrape_drops(ns.name) for w, ns in
                        zip(self.watches[:2], (self.ns_a, self.ns_b))}
        bytes_before = {name: 0 for name in self.roles}
        hs_before = dict(self.handshakes)
        first: dict[str, dict[str, int]] = {}
        print(f"soak: {args.minutes} min, a table line every {args.interval} min; "
              f"roam every {args.roam:.0f} s, link flap every {args.flap:.0f} s", flush=True)
        ok = True
        intervals = max(int(args.minutes / args.interval), 1)
        started = time.monotonic()
        for n in range(1, intervals + 1):
            if self.stop.wait(max(started + n * args.interval * 60 - time.monotonic(), 0)):
                break
            row: list[str] = [f"{n * args.interval:6.1f} min"]
            problems: list[str] = []
            for name, (rx, tx) in self.roles.items():
                got = rx.last.get("bytes", 0)
                if rx.last.get("bad", 0):
                    problems.append(f"{name}: {rx.last['bad']} corrupted bytes")
                if got <= bytes_before[name]:
                    problems.append(f"{name}: nothing delivered this interval")
                row.append(f"{name} {(got - bytes_before[name]) / 1e6:8.1f} MB")
                bytes_before[name] = got
                for proc in (rx.proc, tx.proc):
                    if proc.poll() is not None:
                        problems.append(f"{name}: a traffic process exited")
            row.append("handshakes " + " ".join(
                f"{k} {v - hs_before[k]}" for k, v in self.handshakes.items()))
            hs_before = dict(self.handshakes)
            for w, ns in zip(self.watches[:2], (self.ns_a, self.ns_b)):
                now = scrape_drops(ns.name)
                dropped = diff(now, drops_before[w.name])
                drops_before[w.name] = now
                row.append(f"drops {w.name} " + (", ".join(
                    f"{k} {v:.0f}" for k, v in sorted(dropped.items())) or "none"))
            for w in self.watches:
                s = w.sample()
                if not s["alive"]:
                    problems.append(f"daemon {w.name} is gone")
                    continue
                if w.wgpy:
                    missing = [r for r in WGPY_ROLES if r not in s["roles"]]
                    if missing:
                        problems.append(f"daemon {w.name}: threads gone: {', '.join(missing)}")
                if n == 1:
                    first[w.name] = {"rss_kib": s["rss_kib"], "fds": s["fds"]}
                elif w.wgpy:  # wireguard-go's heap is Go's business: shown, not judged
                    for key in ("rss_kib", "fds"):
                        if s[key] > first[w.name][key] * GROWTH:
                            problems.append(f"daemon {w.name}: {key} {s[key]} grew more than "
                                            f"10 % over {first[w.name][key]}")
                row.append(f"{w.name}: {s['rss_kib'] / 1024:.1f} MiB {s['fds']} fds "
                           f"{s['threads']} threads")
            problems += self.failures
            self.failures.clear()
            print("  |  ".join(row), flush=True)
            if problems:
                ok = False
                print("  FAIL: " + "; ".join(problems), flush=True)
        print(f"events: {json.dumps(self.events)}", flush=True)
        print("soak " + ("passed" if ok else "FAILED"), flush=True)
        self.stop.set()
        for thread in threads:
            thread.join(10)
        return 0 if ok else 1

    def close(self) -> None:
        self.stop.set()
        for proc in getattr(self, "procs", []):
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.lab.close()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        role, address, port, *rest = sys.argv[1:]
        ROLES[role](address, int(port), *map(float, rest))  # type: ignore[operator]
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0, help="minutes per table line")
    parser.add_argument("--roam", type=float, default=60.0, help="seconds between roams")
    parser.add_argument("--flap", type=float, default=300.0,
                        help="seconds between link flaps of a")
    parser.add_argument("--tcp-mbits", type=float, default=40.0, help="per TCP flow")
    parser.add_argument("--udp-pps", type=float, default=500.0, help="per UDP flow")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM, and SIGINT also where a shell started us in the background (it ignores
    # SIGINT there): stop, and remove the lab on the way out.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    soak = Soak.__new__(Soak)
    try:
        soak.__init__(args)  # type: ignore[misc]
        return soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    sys.exit(main())

"""Random batches for the batch path's differential fuzz: the same batch goes to the
compiled module and to its pure-Python twin (wgpy.fastpath), and the results must be equal,
exceptions included. Used by tests/test_fastpath.py (a few thousand batches) and by
`bench/fuzz.py --target fastpath` (10^5 in CI on an ASan/UBSan build, more on demand)."""

from __future__ import annotations

import random
import struct
from types import ModuleType
from typing import Any, Callable

from test_tunoffload import tcp_segment
from wgpy import fastpath
from wgpy.constants import REJECT_AFTER_MESSAGES
from wgpy.replay import ReplayFilter
from wgpy.tunoffload import py_coalesce

_VNET = struct.Struct("<BBHHHH")


def _checksum(data: bytes, acc: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    acc += sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return 0xFFFF - acc


def tcp_packet(rng: random.Random, payload: int, v6: bool, options: int = 0,
               flags: int = 0x18, valid: bool = True) -> bytes:
    """A TCP segment with correct checksums (unless `valid` is false)."""
    opts = bytes(rng.getrandbits(8) for _ in range(options * 4))
    tcp_len = 20 + len(opts)
    data = rng.randbytes(payload)
    tcp = bytearray(struct.pack("!HHLLBBHHH", rng.getrandbits(16), 5201, rng.getrandbits(32),
                                rng.getrandbits(32), (tcp_len // 4) << 4, flags, 500, 0, 0)
                    + opts)
    if v6:
        s, d = rng.randbytes(16), rng.randbytes(16)
        pseudo = s + d + struct.pack("!LxxxB", tcp_len + payload, 6)
        struct.pack_into("!H", tcp, 16, _checksum(pseudo + bytes(tcp) + data))
        ip = struct.pack("!LHBB", 0x60000000, tcp_len + payload, 6, 64) + s + d
    else:
        s, d = rng.randbytes(4), rng.randbytes(4)
        pseudo = s + d + struct.pack("!xBH", 6, tcp_len + payload)
        struct.pack_into("!H", tcp, 16, _checksum(pseudo + bytes(tcp) + data))
        hdr = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + tcp_len + payload,
                                    rng.getrandbits(16), 0x4000, 64, 6, 0) + s + d)
        struct.pack_into("!H", hdr, 10, _checksum(bytes(hdr)))
        ip = bytes(hdr)
    packet = bytearray(ip + bytes(tcp) + data)
    if not valid:
        packet[rng.randrange(len(packet))] ^= 1 << rng.randrange(8)
    return bytes(packet)


def py_csum_ok(packet: bytes, ip_len: int) -> bool:
    """A TCP segment's IPv4 header and TCP checksums (pseudo header included) verify."""
    n = len(packet)
    if ip_len == 20:
        return (_checksum(packet[:20]) == 0
                and _checksum(packet[12:20] + struct.pack("!xBH", 6, n - 20) + packet[20:]) == 0)
    return _checksum(packet[8:40] + struct.pack("!LxxxB", n - 40, 6) + packet[40:]) == 0


def coalesce_batch(rng: random.Random) -> list[bytes]:
    """Decrypted packets as a TUN would receive them: runs of up to three TCP flows of one
    family (mostly full segments, some short, PSH, FIN or URG, gaps, options), interleaved,
    now and then a bit flipped, a length changed or a packet that is not TCP at all."""
    v6 = rng.random() < 0.4
    flows = []
    for f in range(rng.randint(1, 3)):
        seq = rng.getrandbits(32)
        options = rng.choice([b"", b"", bytes([1, 1, 8, 10]) + rng.randbytes(8)])
        flows.append([seq, f, options])
    batch = []
    for _ in range(rng.randint(0, 70)):
        flow = flows[0] if rng.random() < 0.7 else rng.choice(flows)
        size = 1000 if rng.random() < 0.8 else rng.choice([1, 99, 999, 1001, 1400])
        flags = rng.choice([0x10] * 12 + [0x18, 0x18, 0x11, 0x30, 0x50, 0x90, 0x02])
        p = tcp_segment(flow[0] & 0xFFFFFFFF, rng.randbytes(size), v6=v6,
                        ip_id=rng.getrandbits(16), flags=flags, sport=5000 + flow[1],
                        options=flow[2])
        flow[0] += size + (rng.randint(1, 2000) if rng.random() < 0.05 else 0)
        r = rng.random()
        if r < 0.05:
            b = bytearray(p)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            p = bytes(b)
        elif r < 0.07:
            p = p[:rng.randrange(len(p) + 1)]
        elif r < 0.09:
            p = rng.randbytes(rng.randint(0, 100))
        batch.append(p)
    return batch


def tso_read(rng: random.Random) -> bytes:
    """A TUN read as the kernel hands it with TSO on: a virtio-net header and a TCP
    super-packet (checksum left partial, NEEDS_CSUM), or a plain packet, often mangled."""
    v6 = rng.random() < 0.4
    mss = rng.choice([rng.randint(1, 1500), 1368, 1380, 1440])
    payload = rng.randint(1, min(65000, mss * rng.randint(1, 48)))
    packet = bytearray(tcp_packet(rng, payload, v6, rng.choice([0, 0, 3, 10]),
                                  rng.choice([0x10, 0x18, 0x19, 0x90, 0x98])))
    ip_len = 40 if v6 else 20
    kind = rng.random()
    if kind < 0.15:  # no offload at all
        header = _VNET.pack(0, 0, 0, 0, 0, 0)
    elif kind < 0.3:  # a plain packet with its checksum left to us
        header = _VNET.pack(1, 0, 0, 0, ip_len, 16)
    else:
        header = _VNET.pack(1, 4 if v6 else 1, ip_len + 20, mss, ip_len, 16)
    read = bytearray(header + packet)
    for _ in range(rng.choice([0, 0, 0, 1, 2])):  # mangle the header or the packet
        if rng.random() < 0.5:
            read[rng.randrange(_VNET.size)] = rng.getrandbits(8)
        else:
            read[rng.randrange(len(read))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.05:
        read = read[:rng.randrange(len(read) + 1)]
    return bytes(read)


def _outcome(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except (ValueError, TypeError, OverflowError) as exc:
        return ("error", type(exc).__name__)


def inner_packet(rng: random.Random, sources: list[bytes]) -> bytes:
    """An IP packet as a peer sends it: IPv4 or IPv6 from one of `sources` (or another),
    now and then empty (a keepalive), with a wrong length or no IP at all."""
    r = rng.random()
    if r < 0.05:
        return b""
    if r < 0.1:
        return rng.randbytes(rng.randint(1, 60))
    source = rng.choice(sources) if rng.random() < 0.9 else rng.randbytes(rng.choice([4, 16]))
    payload = rng.randbytes(rng.randint(0, 1300))
    if len(source) == 4:
        header = bytearray(struct.pack("!BBHHHBB2x4s4s", 0x45, 0, 20 + len(payload), 0,
                                       0x4000, 64, 6, source, bytes(4)))
        at = 2
    else:
        header = bytearray(struct.pack("!LHBB16s16s", 0x60000000, len(payload), 6, 64,
                                       source, bytes(16)))
        at = 4
    if rng.random() < 0.1:  # a length beyond the packet, or below the header
        struct.pack_into("!H", header, at, rng.getrandbits(16))
    return bytes(header) + payload


def receive_case(rng: random.Random, native: ModuleType) -> list[str]:
    """One run of transport data through `receive` and `py_receive`: replayed, reordered,
    forged, cut and far-future counters, keepalives, bad inner packets, foreign sources."""
    key = rng.randbytes(32)
    sources = [rng.randbytes(4), rng.randbytes(16), rng.randbytes(4)]
    allowed = set(sources[:2])
    py_replay, c_replay = ReplayFilter(), native.Replay()
    for _ in range(rng.randint(0, 3)):  # a window that has seen something already
        c = rng.getrandbits(rng.choice([4, 12, 20]))
        assert py_replay.validate(c, REJECT_AFTER_MESSAGES) == c_replay.validate(
            c, REJECT_AFTER_MESSAGES)
    base = rng.getrandbits(rng.choice([4, 13, 40]))
    packets = [inner_packet(rng, sources) for _ in range(rng.randint(0, 40))]
    messages = fastpath.py_seal(key, 7, base, packets, rng.choice([0, 1420]))
    for i in range(len(messages)):
        r = rng.random()
        if r < 0.05:
            messages[i] = messages[rng.randrange(len(messages))]  # a replay
        elif r < 0.08:
            m = bytearray(messages[i])
            m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
            messages[i] = bytes(m)
        elif r < 0.1:
            messages[i] = messages[i][:rng.randrange(40)]
    if rng.random() < 0.2:
        rng.shuffle(messages)
    limit = REJECT_AFTER_MESSAGES if rng.random() < 0.9 else base + rng.randint(0, 20)
    asked: list[list[bytes]] = [[], []]
    a = native.receive(key, messages, c_replay, limit,
                       lambda s: asked[0].append(s) or s in allowed)
    b = fastpath.py_receive(key, messages, py_replay, limit,
                            lambda s: asked[1].append(s) or s in allowed)
    diffs = []
    if a != b:
        diffs.append(f"receive differs: {a[1:]} against {b[1:]}")
    # accept, after open, on fresh windows: the same as receive
    plains = native.open(key, messages)
    c2, p2 = native.Replay(), ReplayFilter()
    if native.accept(plains, messages, c2, limit, lambda s: s in allowed) != \
            fastpath.py_accept(plains, messages, p2, limit, lambda s: s in allowed):
        diffs.append("accept differs")
    if asked[0] != asked[1]:
        diffs.append("receive asked about other sources")
    probe = rng.getrandbits(rng.choice([8, 16, 64]))
    if c_replay.validate(probe, limit) != py_replay.validate(probe, limit):
        diffs.append(f"the replay windows differ after the run (probe {probe})")
    return diffs


def one_batch(rng: random.Random, native: ModuleType) -> list[str]:
    """Run one random batch of each operation through both; the differences, described."""
    diffs: list[str] = []
    key = rng.randbytes(32)
    index, counter = rng.getrandbits(32), rng.getrandbits(rng.choice([8, 32, 63]))
    mtu = rng.choice([0, 1280, 1420, 1500, rng.randint(1, 2000)])
    packets = [rng.randbytes(rng.choice([0, rng.randint(1, 64), rng.randint(1, 2100)]))
               for _ in range(rng.randint(0, 8))]
    a = _outcome(native.seal, key, index, counter, packets, mtu)
    b = _outcome(fastpath.py_seal, key, index, counter, packets, mtu)
    if a != b:
        diffs.append(f"seal differs: mtu {mtu}, lengths {[len(p) for p in packets]}")
    sealed = list(b[1]) if b[0] == "ok" else []
    for i in range(len(sealed)):
        r = rng.random()
        if r < 0.2:
            m = bytearray(sealed[i])
            m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
            sealed[i] = bytes(m)
        elif r < 0.3:
            sealed[i] = sealed[i][:rng.randrange(len(sealed[i]) + 1)]
    opener = key if rng.random() < 0.9 else rng.randbytes(32)
    if _outcome(native.open, opener, sealed) != _outcome(fastpath.py_open, opener, sealed):
        diffs.append(f"open differs: lengths {[len(m) for m in sealed]}")
    read = tso_read(rng)
    if _outcome(native.split, read) != _outcome(fastpath.py_split, read):
        diffs.append(f"split differs: {read[:10].hex()} + {len(read) - 10} bytes")
    diffs += receive_case(rng, native)
    # runs: datagrams of a GRO receive cut at the segment size
    received = b"".join(rng.choice(sealed + [b"\x01" * 148, b"\x04\0\0\0" + bytes(20),
                                             b"\x04\0\0\0\x09\0\0\0" + bytes(140)])
                        for _ in range(rng.randint(0, 30)) if sealed) or rng.randbytes(100)
    segment = rng.choice([len(received) or 1, 148, 32, 1452, rng.randint(1, 200)])
    if _outcome(native.runs, received, segment) != _outcome(fastpath.py_runs, received, segment):
        diffs.append(f"runs differs: segment {segment}, {len(received)} bytes")
    packets = coalesce_batch(rng)
    want = [b"".join(bytes(b) for b in w) for w in py_coalesce(packets)]
    if native.coalesce(packets) != want:
        diffs.append(f"coalesce differs: {[p.hex() for p in packets]}"[:4000])
    return diffs

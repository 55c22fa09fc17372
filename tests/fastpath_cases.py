"""Random batches for the batch path's differential fuzz: the same batch goes to the
compiled module and to its pure-Python twin (wgpy.fastpath), and the results must be equal,
exceptions included. Used by tests/test_fastpath.py (a few thousand batches) and by
`bench/fuzz.py --target fastpath` (10^5 in CI on an ASan/UBSan build, more on demand)."""

from __future__ import annotations

import random
import struct
from types import ModuleType
from typing import Any, Callable

from wgpy import fastpath

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
    segment = tcp_packet(rng, rng.randint(0, 1400), rng.random() < 0.4,
                         valid=rng.random() < 0.6)
    ip_len = rng.choice([20, 40, 20 if segment[0] >> 4 == 4 else 40])
    if native.csum_ok(segment, ip_len) != fastpath.py_csum_ok(segment, ip_len):
        diffs.append(f"csum_ok differs: {segment.hex()} ip_len {ip_len}")
    return diffs

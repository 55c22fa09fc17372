"""TCP coalescing for TUN writes: what `coalesce` merges, the kernel's GSO (modelled by
`segment`) must split back into exactly the packets that went in."""

from __future__ import annotations

import ipaddress
import random
import struct

from wgpy.tunoffload import NO_OFFLOAD, VNET_HDR, coalesce, py_coalesce, segment


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total


def tcp_segment(seq: int, payload: bytes, *, v6: bool = False, ip_id: int = 0,
                flags: int = 0x10, src: str = "10.0.0.1", sport: int = 5000,
                options: bytes = b"") -> bytes:
    tcp_len = 20 + len(options)
    tcp = bytearray(struct.pack("!HHLLBBHHH", sport, 5201, seq, 77, (tcp_len // 4) << 4, flags,
                                500, 0, 0) + options)
    if v6:
        s, d = ipaddress.ip_address("fd00::1" if src == "10.0.0.1" else "fd00::9").packed, \
            ipaddress.ip_address("fd00::2").packed
        pseudo = s + d + struct.pack("!LxxxB", tcp_len + len(payload), 6)
        struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp) + payload))
        return struct.pack("!LHBB", 0x60000000, tcp_len + len(payload), 6, 64) + s + d \
            + bytes(tcp) + payload
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address("10.0.0.2").packed
    pseudo = s + d + struct.pack("!xBH", 6, tcp_len + len(payload))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp) + payload))
    ip = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + tcp_len + len(payload), ip_id,
                               0x4000, 64, 6, 0) + s + d)
    struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
    return bytes(ip) + bytes(tcp) + payload


def stream(n: int, mss: int = 1000, last: int | None = None, **kw: object) -> list[bytes]:
    rng = random.Random(n)
    sizes = [mss] * n
    if last is not None:
        sizes[-1] = last
    out, seq = [], 1000
    for i, size in enumerate(sizes):
        out.append(tcp_segment(seq, rng.randbytes(size), ip_id=100 + i, **kw))  # type: ignore[arg-type]
        seq += size
    return out


def roundtrip(packets: list[bytes]) -> list[bytes]:
    return [p for w in coalesce(packets) for p in segment(b"".join(bytes(b) for b in w))]


def test_a_run_of_segments_becomes_one_write() -> None:
    packets = stream(20, last=300)
    writes = py_coalesce(packets)
    assert len(writes) == 1
    flags, gso, hdr_len, mss, start, off = VNET_HDR.unpack(bytes(writes[0][0]))
    assert (flags, gso, hdr_len, mss, start, off) == (1, 1, 40, 1000, 20, 16)
    assert roundtrip(packets) == packets


def test_ipv6_and_options() -> None:
    packets = stream(10, v6=True, options=b"\x01\x01\x08\x0a" + bytes(8))
    writes = py_coalesce(packets)
    assert len(writes) == 1 and VNET_HDR.unpack(bytes(writes[0][0]))[1] == 4
    assert roundtrip(packets) == packets


def test_what_must_not_merge() -> None:
    a = stream(3)
    gap = tcp_segment(99999, bytes(1000), ip_id=103)  # sequence gap
    other_flow = tcp_segment(4000, bytes(1000), ip_id=104, sport=6000)
    syn = tcp_segment(1, b"x", flags=0x02)
    udp = bytes([0x45, 0, 0, 28]) + bytes(4) + bytes([64, 17, 0, 0]) + bytes(8) + bytes(8)
    packets = a + [gap, other_flow, syn, udp]
    writes = py_coalesce(packets)
    assert len(writes) == 5  # the run of three, then four packets alone
    assert all(bytes(w[0]) == NO_OFFLOAD for w in writes[1:])
    assert roundtrip(packets) == packets


def test_push_and_short_segments_end_a_super_packet() -> None:
    packets = stream(4, flags=0x18)  # every segment pushed: nothing merges after it
    assert len(py_coalesce(packets)) == 4
    packets = stream(3, last=10) + [tcp_segment(1000 + 2010, bytes(1000), ip_id=200)]
    writes = py_coalesce(packets)
    assert len(writes) == 2 and roundtrip(packets) == packets


def test_at_most_64k() -> None:
    packets = stream(100, mss=1400)
    writes = py_coalesce(packets)
    assert all(sum(len(b) for b in w) - 10 <= 65535 for w in writes)
    assert len(writes) == 3 and roundtrip(packets) == packets

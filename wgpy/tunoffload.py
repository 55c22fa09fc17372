"""TCP segment coalescing for TUN writes with a virtio-net header (the GRO half of the
TUN offloads), sans-IO.

Writing to a TUN costs a trip through the receiving TCP stack per write, and that, not
the crypto, is what bounds a userspace WireGuard's receive path. With IFF_VNET_HDR every
TUN read and write starts with a 10-byte `virtio_net_hdr`; a write may then carry one TCP
"super-packet" that stands for many MSS-sized segments (GSO_TCPV4/GSO_TCPV6, checksum left
to the kernel with NEEDS_CSUM), which the stack takes in once, as the kernel's own GRO
would hand it over. wireguard-go does the same (tun/offload_linux.go).

`coalesce(packets)` turns decrypted IP packets, in order, into the iovec lists of TUN
writes. Consecutive TCP segments of one flow merge when GRO would merge them (the kernel's
tcp_gro_receive, wireguard-go's tcpPacketsCanCoalesce and ipHeadersCanCoalesce): the same
addresses and ports, ACK number, window, TCP options, data offset and reserved bits, urgent
pointer, and IP header fields the segmentation copies from the first segment to all (IPv4
TOS with its ECN bits, DF and the reserved flag, TTL; IPv6 version, traffic class, flow
label, hop limit); contiguous sequence numbers; only ACK (and PSH on the last) set, so no
URG, CWR or ECE; equal payload sizes except a shorter last one; at most 64 KB in all.
Everything else is written alone behind a zero header.

A super-packet goes to the kernel with NEEDS_CSUM: the kernel fills in checksums instead of
verifying them, so a segment whose checksum is wrong would come out "repaired". Before a
segment joins a super-packet, its IPv4 header checksum and its TCP checksum (with the pseudo
header) are verified, as wireguard-go does (checksumValid); one that fails is written alone
and left for the kernel to drop. The one's complement sum of 16-bit words is congruent to
the region read as one big-endian integer modulo 0xFFFF (2**16 = 1 mod 0xFFFF): a segment
costs one `int.from_bytes` and a reduction by digit-aligned folds and one `%` (about 2 us
for 1420 bytes here; a loop over 16-bit words costs 10-17). Segments written alone are not
checked: the kernel verifies those itself. The compiled batch path (wgpy/_fastpath.c) does
all of this in C, each write one buffer.

Reads carry a zero header too (we do not ask the kernel for TSO on reads).
"""

from __future__ import annotations

import struct

from wgpy import fastpath

__all__ = ["VNET_HDR_SIZE", "NO_OFFLOAD", "coalesce", "py_coalesce", "segment"]

VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_off
VNET_HDR_SIZE = VNET_HDR.size
NO_OFFLOAD = bytes(VNET_HDR_SIZE)
F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4
TCP_CSUM_OFFSET = 16
MAX_SUPER = 65535  # IPv4 total length / IPv6 payload length limit
MAX_SEGMENTS = 64
_ACK, _PSH = 0x10, 0x08
_H = struct.Struct("!H")
_L = struct.Struct("!L")
_IP4_WORDS = struct.Struct("!10H")


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack("!%dH" % (len(data) // 2), data))


def _tcp_info(p: bytes) -> tuple[int, int, int] | None:
    """(ip header length, tcp header length, payload length) of a plain TCP segment that
    GRO could merge (ACK, optionally PSH; no fragments, no IPv4 options, no IPv6
    extension headers), else None."""
    n = len(p)
    if n < 40:
        return None
    first = p[0]
    if first == 0x45:
        if p[9] != 6 or p[6] & 0x3F or p[7] or _H.unpack_from(p, 2)[0] != n:
            return None
        ip_len = 20
    elif first >> 4 == 6:
        if n < 60 or p[6] != 6 or _H.unpack_from(p, 4)[0] + 40 != n:
            return None
        ip_len = 40
    else:
        return None
    tcp_len = (p[ip_len + 12] >> 4) * 4
    if tcp_len < 20 or p[ip_len + 13] & ~_PSH != _ACK:
        return None
    payload = n - ip_len - tcp_len
    return (ip_len, tcp_len, payload) if payload > 0 else None


# Everything that must be equal for two segments to merge. IPv4: TOS, the flags byte (DF,
# reserved; MF and the offset are zero), TTL, addresses. IPv6: version, traffic class and
# flow label, hop limit, addresses. TCP: ports, ACK number, data offset with the reserved
# bits, window, urgent pointer (the flags are checked in `_tcp_info`).
_KEY4 = struct.Struct("!xB4xBxB3x8s4s4x4sBx2s2x2s")
_KEY6 = struct.Struct("!4s3xB32s4s4x4sBx2s2x2s")
_from_bytes = int.from_bytes
# Fold widths in bits: multiples of 16 (a fold keeps the value modulo 0xFFFF) and of 30
# (CPython's digit, so the shifts move whole digits). Folding a 1408-byte sum down to 720
# bits before the `%` takes that step from 1.6 us to 0.75 us here.
_FOLDS = [(w, (1 << w) - 1) for w in (46080, 23040, 11520)]
_M5760, _M2880, _M1440, _M720 = ((1 << w) - 1 for w in (5760, 2880, 1440, 720))


def _ip_ok(p: bytes, ip_len: int) -> bool:
    """The IPv4 header checksum verifies (IPv6 has none): the header sums to 0xFFFF."""
    return ip_len != 20 or _from_bytes(p[:20], "big") % 0xFFFF == 0


def _tcp_sum(p: bytes, ip_len: int) -> int:
    """A number congruent modulo 0xFFFF to the one's complement sum over the TCP pseudo
    header (addresses, protocol 6, TCP length), header and payload: 0 if it verifies."""
    region = p[12:] if ip_len == 20 else p[8:]  # the addresses, then the TCP segment
    total = _from_bytes(region, "big")
    if len(region) & 1:
        total <<= 8  # an odd last byte is the high byte of a zero-padded word
    return total + 6 + len(p) - ip_len


def _is_zero_mod_ffff(total: int) -> bool:
    if total.bit_length() > 11520:  # more than one MTU-sized segment's worth
        for width, mask in _FOLDS:
            while total.bit_length() > width:
                total = (total >> width) + (total & mask)
    total = (total >> 5760) + (total & _M5760)
    total = (total >> 2880) + (total & _M2880)
    total = (total >> 1440) + (total & _M1440)
    total = (total >> 720) + (total & _M720)
    return total % 0xFFFF == 0


def _flow_key(p: bytes, ip_len: int, tcp_len: int) -> tuple[object, ...]:
    key = _KEY4.unpack_from(p) if ip_len == 20 else _KEY6.unpack_from(p)
    if tcp_len > 20:
        return key + (p[ip_len + 20:ip_len + tcp_len],)  # TCP options
    return key


def coalesce(packets: list[bytes]) -> list[list[bytes]]:
    """The TUN writes (each a list of buffers for writev) for `packets`, in order: on the
    compiled batch path one buffer each, made by `wgpy._fastpath.coalesce`, which follows
    `py_coalesce` exactly (tests/fastpath_cases.py fuzzes one against the other)."""
    if fastpath.coalesce is not None:  # the compiled batch path
        return [[write] for write in fastpath.coalesce(packets)]
    return py_coalesce(packets)


def py_coalesce(packets: list[bytes]) -> list[list[bytes]]:
    """`coalesce` in Python: the pure path, and the compiled one's reference."""
    writes: list[list[bytes]] = []
    group: list[bytes] = []  # segments of the open super-packet
    key: tuple[object, ...] = ()
    next_seq = size = total = ip_len = tcp_len = 0
    psh = False
    # Each segment's checksums are verified as it joins (group[0]'s when the second comes).
    # Not one sum per group: two bad segments can cancel out in a sum of sums (two single-bit
    # errors do, one time in 32), and each bad one must stay out.

    def flush() -> None:
        if len(group) == 1:
            writes.append([NO_OFFLOAD, group[0]])
        elif group:
            writes.append(_super_packet(group, ip_len, tcp_len, size, total, psh))
        group.clear()

    for p in packets:
        info = _tcp_info(p)
        if info is None:
            flush()
            writes.append([NO_OFFLOAD, p])
            continue
        p_ip, p_tcp, payload = info
        seq = _L.unpack_from(p, p_ip + 4)[0]
        if group:
            if (seq == next_seq and payload <= size and p_ip == ip_len and p_tcp == tcp_len
                    and total + payload <= MAX_SUPER and len(group) < MAX_SEGMENTS
                    and _flow_key(p, p_ip, p_tcp) == key):
                if len(group) == 1 and not (_ip_ok(group[0], ip_len)
                                            and _is_zero_mod_ffff(_tcp_sum(group[0], ip_len))):
                    flush()  # alone, for the kernel to drop; this one opens a new group
                if group:
                    if p_ip == 20:
                        if _from_bytes(p[:20], "big") % 0xFFFF:  # the IPv4 header checksum
                            flush()
                            writes.append([NO_OFFLOAD, p])  # alone, for the kernel to drop
                            continue
                        region = _from_bytes(p[12:], "big")  # as in _tcp_sum, inlined
                    else:
                        region = _from_bytes(p[8:], "big")
                    if payload & 1:
                        region <<= 8
                    if not _is_zero_mod_ffff(region + 6 + p_tcp + payload):
                        flush()
                        writes.append([NO_OFFLOAD, p])  # alone, for the kernel to drop
                        continue
                    group.append(p)
                    total += payload
                    next_seq = (seq + payload) & 0xFFFFFFFF
                    psh = bool(p[p_ip + 13] & _PSH)
                    if payload < size or psh:
                        flush()  # a short or pushed segment ends the super-packet
                    continue
            else:
                flush()
        ip_len, tcp_len, size = p_ip, p_tcp, payload
        total = ip_len + tcp_len + payload
        key = _flow_key(p, p_ip, p_tcp)
        next_seq = (seq + payload) & 0xFFFFFFFF
        psh = bool(p[p_ip + 13] & _PSH)
        group.append(p)
        if psh:
            flush()
    flush()
    return writes


def _super_packet(group: list[bytes], ip_len: int, tcp_len: int, mss: int, total: int,
                  psh: bool) -> list[bytes]:
    first = group[0]
    hdr_len = ip_len + tcp_len
    ip = bytearray(first[:ip_len])
    tcp = bytearray(first[ip_len:hdr_len])
    tcp_total = total - ip_len
    if ip_len == 20:
        _H.pack_into(ip, 2, total)
        _H.pack_into(ip, 10, 0)
        _H.pack_into(ip, 10, 0xFFFF - _fold(sum(_IP4_WORDS.unpack(ip))))
        pseudo = _sum16(bytes(ip[12:20])) + 6 + tcp_total
        gso = GSO_TCPV4
    else:
        _H.pack_into(ip, 4, tcp_total)
        pseudo = _sum16(bytes(ip[8:40])) + 6 + tcp_total
        gso = GSO_TCPV6
    if psh:
        tcp[13] |= _PSH
    _H.pack_into(tcp, TCP_CSUM_OFFSET, _fold(pseudo))  # the kernel completes it
    vnet = VNET_HDR.pack(F_NEEDS_CSUM, gso, hdr_len, mss, ip_len, TCP_CSUM_OFFSET)
    iov: list[bytes] = [vnet, bytes(ip), bytes(tcp)]
    iov.extend(memoryview(p)[hdr_len:] for p in group)  # type: ignore[misc]
    return iov


def segment(write: bytes) -> list[bytes]:
    """The inverse, for tests: split one TUN write (header included) back into IP packets
    with their checksums filled in, as the kernel's GSO would."""
    flags, gso, hdr_len, mss, csum_start, csum_off = VNET_HDR.unpack_from(write)
    data = write[VNET_HDR_SIZE:]
    if gso == GSO_NONE:
        return [data]
    ip_len = csum_start
    ip, tcp, payload = data[:ip_len], data[ip_len:hdr_len], data[hdr_len:]
    out = []
    seq = _L.unpack_from(tcp, 4)[0]
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        t = bytearray(tcp)
        _L.pack_into(t, 4, (seq + n * mss) & 0xFFFFFFFF)
        if not last:
            t[13] &= ~_PSH
        seg_ip = bytearray(ip)
        tcp_total = len(t) + len(chunk)
        if gso == GSO_TCPV4:
            _H.pack_into(seg_ip, 2, ip_len + tcp_total)
            _H.pack_into(seg_ip, 4, (_H.unpack_from(ip, 4)[0] + n) & 0xFFFF)
            _H.pack_into(seg_ip, 10, 0)
            _H.pack_into(seg_ip, 10, 0xFFFF - _fold(sum(_IP4_WORDS.unpack(seg_ip))))
            pseudo = _sum16(bytes(seg_ip[12:20])) + 6 + tcp_total
        else:
            _H.pack_into(seg_ip, 4, tcp_total)
            pseudo = _sum16(bytes(seg_ip[8:40])) + 6 + tcp_total
        _H.pack_into(t, csum_off, 0)
        _H.pack_into(t, csum_off, 0xFFFF - _fold(pseudo + _sum16(bytes(t) + chunk)))
        out.append(bytes(seg_ip) + bytes(t) + chunk)
    return out

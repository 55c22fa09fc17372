"""TCP segment coalescing for TUN writes with a virtio-net header (the GRO half of the
TUN offloads), sans-IO.

Writing to a TUN costs a trip through the receiving TCP stack per write, and that, not
the crypto, is what bounds a userspace WireGuard's receive path. With IFF_VNET_HDR every
TUN read and write starts with a 10-byte `virtio_net_hdr`; a write may then carry one TCP
"super-packet" that stands for many MSS-sized segments (GSO_TCPV4/GSO_TCPV6, checksum left
to the kernel with NEEDS_CSUM), which the stack takes in once, as the kernel's own GRO
would hand it over. wireguard-go does the same (tun/offload_linux.go).

`coalesce(packets)` turns decrypted IP packets, in order, into the iovec lists of TUN
writes. Consecutive TCP segments of one flow merge when GRO would merge them: the same
addresses, ports, ACK number, window, TCP options and IP TTL/TOS; contiguous sequence
numbers; only ACK (and PSH on the last) set; equal payload sizes except a shorter last one;
at most 64 KB in all. Everything else is written alone behind a zero header. Reads carry a
zero header too (we do not ask the kernel for TSO on reads), which `strip` removes.
"""

from __future__ import annotations

import struct

__all__ = ["VNET_HDR_SIZE", "NO_OFFLOAD", "coalesce", "segment"]

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


# Everything that must be equal for two segments to merge: TOS and TTL (traffic class,
# flow label and hop limit), addresses, ports, ACK number and window.
_KEY4 = struct.Struct("!xB6xB3x8s4s4x4s2x2s")
_KEY6 = struct.Struct("!4s3xB32s4s4x4s2x2s")


def _flow_key(p: bytes, ip_len: int, tcp_len: int) -> tuple[object, ...]:
    key = _KEY4.unpack_from(p) if ip_len == 20 else _KEY6.unpack_from(p)
    if tcp_len > 20:
        return key + (p[ip_len + 20:ip_len + tcp_len],)  # TCP options
    return key


def coalesce(packets: list[bytes]) -> list[list[bytes]]:
    """The TUN writes (each a list of buffers for writev) for `packets`, in order."""
    writes: list[list[bytes]] = []
    group: list[bytes] = []  # segments of the open super-packet
    key: tuple[object, ...] = ()
    next_seq = size = total = ip_len = tcp_len = 0
    psh = False

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
                group.append(p)
                total += payload
                next_seq = (seq + payload) & 0xFFFFFFFF
                psh = bool(p[p_ip + 13] & _PSH)
                if payload < size or psh:
                    flush()  # a short or pushed segment ends the super-packet
                continue
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

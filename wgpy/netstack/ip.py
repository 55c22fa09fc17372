"""IPv4 and IPv6 packets carrying TCP and UDP, for the userspace stack.

Theory of operation: the stack sees whole IP packets, as a TUN does. `parse` takes one
apart into an `Inbound` (addresses as packed bytes, the transport protocol, its header and
payload), checking what a host checks before its transport layer sees a packet: version,
lengths, the IPv4 header checksum and the TCP/UDP checksum over the pseudo-header (RFC 9293
section 3.1, RFC 768, RFC 8200 section 8.1). Anything it cannot take is a ValueError with
the reason, which the stack counts as a drop. Not supported, as a drop: IPv4 fragments and
options are fine to receive (options are skipped) but fragments are not reassembled, and
IPv6 extension headers are not walked (a packet whose next header is not TCP or UDP is not
for us). The tunnel's MTU is known to both ends, so the stack never sends fragments.

`tcp_packet` and `udp_packet` build what the stack sends: a 20-byte IPv4 header (DF set,
TTL 64) or a 40-byte IPv6 header (hop limit 64) and the transport header with its checksum.

The checksum is the project's one (`wgpy.packets.internet_checksum`, summed by `array`
in C).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wgpy.constants import IPV4_HEADER_MIN, IPV6_HEADER_SIZE, TCP_HEADER_MIN, UDP_HEADER_SIZE
from wgpy.packets import internet_checksum

__all__ = ["PROTO_TCP", "PROTO_UDP", "Inbound", "checksum", "parse", "tcp_packet",
           "udp_packet"]

PROTO_TCP = 6
PROTO_UDP = 17
_DEFAULT_TTL = 64
_DF = 0x4000

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")


def checksum(*parts: bytes) -> int:
    """RFC 1071 (`wgpy.packets.internet_checksum`) over the concatenation of `parts`."""
    return internet_checksum(b"".join(parts))


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


@dataclass(frozen=True)
class Inbound:
    """A packet for the transport layer: addresses packed (4 or 16 bytes)."""
    src: bytes
    dst: bytes
    proto: int
    segment: bytes  # the TCP or UDP header and payload, checksum verified


def parse(packet: bytes) -> Inbound:
    """Check an IP packet and hand back its TCP or UDP segment; ValueError says why not."""
    if not packet:
        raise ValueError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < IPV4_HEADER_MIN:
            raise ValueError("short IPv4 header")
        (ver_ihl, _tos, total, _ident, frag, _ttl, proto, _csum, src,
         dst) = _IPV4.unpack_from(packet)
        ihl = (ver_ihl & 0x0F) * 4
        if ihl < IPV4_HEADER_MIN or total < ihl or total > len(packet):
            raise ValueError("bad IPv4 lengths")
        if checksum(packet[:ihl]):
            raise ValueError("bad IPv4 header checksum")
        if frag & 0x3FFF:
            raise ValueError("IPv4 fragment (not reassembled)")
        segment = packet[ihl:total]
    elif version == 6:
        if len(packet) < IPV6_HEADER_SIZE:
            raise ValueError("short IPv6 header")
        _vtf, length, proto, _hops, src, dst = _IPV6.unpack_from(packet)
        if IPV6_HEADER_SIZE + length > len(packet):
            raise ValueError("bad IPv6 payload length")
        segment = packet[IPV6_HEADER_SIZE:IPV6_HEADER_SIZE + length]
    else:
        raise ValueError(f"IP version {version}")
    if proto == PROTO_TCP:
        if len(segment) < TCP_HEADER_MIN:
            raise ValueError("short TCP header")
    elif proto == PROTO_UDP:
        if len(segment) < UDP_HEADER_SIZE or _UDP.unpack_from(segment)[2] != len(segment):
            raise ValueError("bad UDP length")
        if version == 4 and _UDP.unpack_from(segment)[3] == 0:
            return Inbound(src, dst, proto, segment)  # IPv4 UDP may go without a checksum
    else:
        raise ValueError(f"protocol {proto} is not TCP or UDP")
    if checksum(_pseudo(src, dst, proto, len(segment)), segment):
        raise ValueError("bad TCP checksum" if proto == PROTO_TCP else "bad UDP checksum")
    return Inbound(src, dst, proto, segment)


def _ip(src: bytes, dst: bytes, proto: int, segment: bytes) -> bytes:
    if len(src) == 4:
        header = bytearray(_IPV4.pack(0x45, 0, IPV4_HEADER_MIN + len(segment), 0, _DF,
                                      _DEFAULT_TTL, proto, 0, src, dst))
        struct.pack_into("!H", header, 10, checksum(bytes(header)))
        return bytes(header) + segment
    return _IPV6.pack(6 << 28, len(segment), proto, _DEFAULT_TTL, src, dst) + segment


def tcp_packet(src: bytes, dst: bytes, header: bytes, payload: bytes = b"") -> bytes:
    """An IP packet with a TCP segment; `header` has a zero checksum field (offset 16)."""
    total = len(header) + len(payload)
    csum = checksum(_pseudo(src, dst, PROTO_TCP, total), header, payload)
    return _ip(src, dst, PROTO_TCP, header[:16] + struct.pack("!H", csum) + header[18:]
               + payload)


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """An IP packet with a UDP datagram (checksum always set, as IPv6 requires)."""
    length = UDP_HEADER_SIZE + len(payload)
    csum = checksum(_pseudo(src, dst, PROTO_UDP, length), _UDP.pack(sport, dport, length, 0),
                    payload) or 0xFFFF
    return _ip(src, dst, PROTO_UDP, _UDP.pack(sport, dport, length, csum) + payload)

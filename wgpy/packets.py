"""Minimal IPv4 / ICMP echo packets: what `wgpy.Tunnel.ping` and the wire-proof tests send.

The sans-IO core moves whole IP packets between "the TUN" and its peers; a TUN-less peer
and the compat tests play the TUN themselves, so they need an ICMP echo request the peer's
kernel will answer, recognise the echo reply it sends back, and answer an echo request
that `ping` sends through wireguard-go. Everything here is plain RFC 791 / RFC 792:

- `internet_checksum` is the RFC 1071 one's-complement sum;
- `ipv4_packet` builds a 20-byte IPv4 header (no options, DF set) with a correct checksum
  in front of a payload;
- `icmp_echo` builds an ICMP echo request (type 8) or reply (type 0) with its checksum;
- `parse_ipv4` / `parse_icmp_echo` take them apart again, verifying lengths and checksums
  (a ValueError says what is wrong);
- `echo_request` and `echo_reply_for` are the two packets the tests actually need.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from array import array
from dataclasses import dataclass

__all__ = [
    "PROTO_ICMP", "ICMP_ECHO_REPLY", "ICMP_ECHO_REQUEST",
    "IPv4Packet", "IcmpEcho",
    "internet_checksum", "ipv4_packet", "icmp_echo", "parse_ipv4", "parse_icmp_echo",
    "echo_request", "echo_reply_for",
]

PROTO_ICMP = 1
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8

_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # RFC 791 header without options
_ICMP_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_SWAP = sys.byteorder == "little"


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the one's complement of the one's-complement sum of 16-bit words, summed
    in native order by `array` and byte-swapped at the end on a little-endian host (RFC 1071
    2(B): the sum does not depend on byte order)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(array("H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _SWAP:
        total = ((total & 0xFF) << 8) | (total >> 8)
    return ~total & 0xFFFF


def ipv4_packet(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64,
                ident: int = 0) -> bytes:
    """An IPv4 packet: a 20-byte header (DF, no options, correct checksum) + payload."""
    header = bytearray(_IPV4.pack(
        0x45, 0, _IPV4.size + len(payload), ident, 0x4000, ttl, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed))
    struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
    return bytes(header) + payload


def icmp_echo(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    """An ICMP echo request (kind 8) or reply (kind 0) message with its checksum."""
    body = _ICMP_ECHO.pack(kind, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


@dataclass(frozen=True)
class IPv4Packet:
    src: str
    dst: str
    proto: int
    ttl: int
    ident: int
    payload: bytes


@dataclass(frozen=True)
class IcmpEcho:
    kind: int
    code: int
    ident: int
    seq: int
    data: bytes


def parse_ipv4(packet: bytes) -> IPv4Packet:
    """Take an IPv4 packet apart, checking version, lengths and the header checksum."""
    if len(packet) < _IPV4.size:
        raise ValueError(f"{len(packet)} bytes is too short for an IPv4 header")
    (ver_ihl, _tos, total, ident, _frag, ttl, proto, _csum, src,
     dst) = _IPV4.unpack_from(packet)
    if ver_ihl >> 4 != 4:
        raise ValueError(f"IP version {ver_ihl >> 4}, not 4")
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < _IPV4.size or total < ihl or total > len(packet):
        raise ValueError(f"bad IPv4 lengths: ihl {ihl}, total {total}, have {len(packet)}")
    if internet_checksum(packet[:ihl]) != 0:
        raise ValueError("bad IPv4 header checksum")
    return IPv4Packet(str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst)),
                      proto, ttl, ident, packet[ihl:total])


def parse_icmp_echo(message: bytes) -> IcmpEcho:
    """Take an ICMP echo request/reply apart, checking its checksum."""
    if len(message) < _ICMP_ECHO.size:
        raise ValueError(f"{len(message)} bytes is too short for an ICMP echo")
    if internet_checksum(message) != 0:
        raise ValueError("bad ICMP checksum")
    kind, code, _csum, ident, seq = _ICMP_ECHO.unpack_from(message)
    return IcmpEcho(kind, code, ident, seq, message[_ICMP_ECHO.size:])


def echo_request(src: str, dst: str, ident: int, seq: int, data: bytes,
                 ip_ident: int = 0) -> bytes:
    """An IPv4 ICMP echo request from `src` to `dst`."""
    return ipv4_packet(src, dst, PROTO_ICMP, icmp_echo(ICMP_ECHO_REQUEST, ident, seq, data),
                       ident=ip_ident)


def echo_reply_for(request: bytes) -> bytes:
    """The echo reply a host would send to this IPv4 echo request: addresses swapped,
    type 0, same identifier, sequence and data, both checksums recomputed."""
    ip = parse_ipv4(request)
    if ip.proto != PROTO_ICMP:
        raise ValueError(f"protocol {ip.proto} is not ICMP")
    echo = parse_icmp_echo(ip.payload)
    if echo.kind != ICMP_ECHO_REQUEST:
        raise ValueError(f"ICMP type {echo.kind} is not an echo request")
    return ipv4_packet(ip.dst, ip.src, PROTO_ICMP,
                       icmp_echo(ICMP_ECHO_REPLY, echo.ident, echo.seq, echo.data),
                       ident=ip.ident)

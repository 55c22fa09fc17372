"""DNS queries for A and AAAA records (RFC 1035), sans-IO: what `wgpy proxy` needs to
resolve a name through the tunnel's DNS server.

`query(name, qtype, ident)` builds a recursive query; `answers(reply, ident, qtype)` takes
a reply apart and hands back the addresses of that type in its answer section (a resolver
puts the CNAME chain's end there too), or raises `DnsError` naming the reason (the RCODE's
name, a truncated or malformed message, a reply to another query). Compression pointers
(section 4.1.4) are followed with a bound, so a looping message cannot hang us.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["A", "AAAA", "DnsError", "query", "answers"]

A, AAAA = 1, 28
_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_RCODES = {1: "format error", 2: "server failure", 3: "no such name (NXDOMAIN)",
           4: "not implemented", 5: "refused"}


class DnsError(Exception):
    pass


def query(name: str, qtype: int, ident: int) -> bytes:
    """A query with recursion desired (RD) for `name` (IDNA-encoded if not ASCII)."""
    try:
        labels = name.rstrip(".").encode("idna").split(b".")
    except UnicodeError:
        raise DnsError(f"not a domain name: {name!r}") from None
    if not all(0 < len(label) < 64 for label in labels) or len(name) > 253:
        raise DnsError(f"not a domain name: {name!r}")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return _HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, _IN)


def _skip_name(msg: bytes, pos: int) -> int:
    """The offset after the (possibly compressed) name at `pos`."""
    for _ in range(128):
        if pos >= len(msg):
            raise DnsError("truncated name")
        length = msg[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + length
    raise DnsError("name too long")


def answers(reply: bytes, ident: int, qtype: int) -> list[str]:
    if len(reply) < _HEADER.size:
        raise DnsError("reply too short")
    rid, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(reply)
    if rid != ident or not flags & 0x8000:
        raise DnsError("not the reply to our query")
    if flags & 0x0200:
        raise DnsError("reply truncated (TC): too many records for UDP")
    rcode = flags & 0xF
    if rcode:
        raise DnsError(_RCODES.get(rcode, f"RCODE {rcode}"))
    pos = _HEADER.size
    for _ in range(qdcount):
        pos = _skip_name(reply, pos) + 4
    found = []
    for _ in range(ancount):
        pos = _skip_name(reply, pos)
        if pos + 10 > len(reply):
            raise DnsError("truncated record")
        rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", reply, pos)
        pos += 10
        rdata = reply[pos:pos + rdlength]
        if len(rdata) != rdlength:
            raise DnsError("truncated record data")
        pos += rdlength
        if rclass == _IN and rtype == qtype and rdlength == (4 if qtype == A else 16):
            found.append(str(ipaddress.ip_address(rdata)))
    return found

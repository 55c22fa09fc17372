"""IP prefixes as small immutable values: parsed from and printed to UAPI text quickly.

Theory of operation: a big configuration carries one ``allowed_ip=`` line per prefix
(the kernel selftest's has 130,560), so what one line costs decides how long ``wg setconf``
and ``wg show`` take. Building an `ipaddress` network per line costs several
microseconds. A `Prefix` here is one int that packs the three things a prefix is::

    address << 9 | length << 1 | family        (family: 0 for IPv4, 1 for IPv6)

with the host bits of the address cleared (wireguard-go masks a prefix when it stores
it). An int is immutable, hashable, cheaper to make than any object with fields, and not
tracked by the garbage collector, and the same int is the key of the allowed-IPs table's
per-peer index (`wgpy.allowedips`): a parsed line goes into the table as it is, and
``get`` prints straight from it. `make_prefix`, `prefix_parts` and `prefix_network`
convert; `prefix_of` takes an `ipaddress` network.

Parsing (`parse_prefix_bytes`) has fast paths for the forms `wg` sends: a dotted quad with
canonical octets and a canonical length, and IPv6 made only of hex fields and colons.
Validation there is by exact dictionary lookup (``b"255"`` is an octet, ``b"01"`` is
not), so the fast path can only accept what Go's ``netip.ParsePrefix`` accepts. Anything
else (signed or zero-padded lengths, embedded IPv4, zones, garbage) goes to the
wireguard-go-exact parser in `uapi.values`, which decides acceptance and the error.

Printing (`format_prefix`) follows ``netip.Prefix.String``: dotted quads for IPv4;
RFC 5952 for IPv6 (lowercase, no leading zeros, the longest run of two or more zero
fields as ``::``, the first one on ties) and ``::ffff:a.b.c.d`` for IPv4-mapped
addresses.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from typing import Final, TypeAlias

from uapi.values import IPNetwork, parse_prefix

__all__ = [
    "MASK4",
    "MASK6",
    "Prefix",
    "format_ipv6",
    "format_prefix",
    "format_prefix_lines",
    "is_dotted_quad",
    "parse_allowed_ip_run",
    "make_prefix",
    "parse_prefix_bytes",
    "prefix_network",
    "prefix_of",
    "prefix_parts",
]

MASK4: Final = [((1 << n) - 1) << (32 - n) for n in range(33)]
MASK6: Final = [((1 << n) - 1) << (128 - n) for n in range(129)]

#: ``address << 9 | length << 1 | family`` (see the module docstring).
Prefix: TypeAlias = int


def make_prefix(bits: int, value: int, length: int) -> Prefix:
    """The prefix of `length` bits of `value`, an address of `bits` (32 or 128) bits; the
    host bits are cleared. ValueError for a width, length or address out of range."""
    if bits == 32:
        masks = MASK4
    elif bits == 128:
        masks = MASK6
    else:
        raise ValueError(f"address width must be 32 or 128, not {bits}")
    if not 0 <= length <= bits:
        raise ValueError(f"prefix length {length} out of range for {bits} bits")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"address {value} out of range for {bits} bits")
    return (value & masks[length]) << 9 | length << 1 | (bits == 128)


def prefix_parts(prefix: Prefix) -> tuple[int, int, int]:
    """``(bits, address, length)`` of a prefix: 32 or 128, the masked address, the length."""
    return (128 if prefix & 1 else 32), prefix >> 9, (prefix >> 1) & 0xFF


def prefix_network(prefix: Prefix) -> IPNetwork:
    """The same prefix as an `ipaddress` network."""
    if prefix & 1:
        return IPv6Network((prefix >> 9, (prefix >> 1) & 0xFF))
    return IPv4Network((prefix >> 9, (prefix >> 1) & 0xFF))


def prefix_of(network: IPNetwork | Prefix) -> Prefix:
    """The `Prefix` of an `ipaddress` network (host bits cleared); a Prefix as it is."""
    if isinstance(network, int):
        return network
    if isinstance(network, IPv4Network):
        bits = 32
    elif isinstance(network, IPv6Network):
        bits = 128
    else:
        raise TypeError(f"expected a Prefix or an ipaddress network, got {type(network).__name__}")
    return make_prefix(bits, int(network.network_address), network.prefixlen)


# ---------------------------------------------------------------------------------
# Parsing

# Canonical decimal text -> value: exactly the octets Go's parseIPv4 takes (no sign, no
# leading zero) and the lengths that need no fallback.
_OCTET: Final = {str(i).encode(): i for i in range(256)}
_LEN4: Final = {str(i).encode(): i for i in range(33)}
_LEN6: Final = {str(i).encode(): i for i in range(129)}
_HEX_AND_COLON: Final = b"0123456789abcdefABCDEF:"


def _ipv6_plain(addr: bytes) -> int | None:
    """An IPv6 address of hex fields and colons only; None where the exact parser must
    decide (it accepts or rejects; this never accepts what Go rejects)."""
    if addr.translate(None, _HEX_AND_COLON):
        return None  # other characters: '.', '%', garbage
    return _ipv6_hex(addr)


def _ipv6_hex(addr: bytes) -> int | None:
    """`_ipv6_plain` for text known to hold only hex digits and colons."""
    head, sep, tail = addr.partition(b"::")
    try:
        if not sep:
            fields = head.split(b":")
            if len(fields) != 8:
                return None
            value = 0
            for f in fields:
                n = int(f, 16)  # only hex digits here; b"" raises
                if n > 0xFFFF:
                    return None
                value = (value << 16) | n
            return value
        if len(head) <= 4 and len(tail) <= 4 and b":" not in head and b":" not in tail:
            # "x::y", "x::", "::y", "::": the common short forms, at most one field a side
            return (int(head, 16) << 112 if head else 0) | (int(tail, 16) if tail else 0)
        if b"::" in tail:
            return None
        left = head.split(b":") if head else []
        right = tail.split(b":") if tail else []
        if len(left) + len(right) > 7:
            return None
        value = 0
        for f in left:
            n = int(f, 16)
            if n > 0xFFFF:
                return None
            value = (value << 16) | n
        value <<= 16 * (8 - len(left))
        shift = 16 * len(right)
        for f in right:
            n = int(f, 16)
            if n > 0xFFFF:
                return None
            shift -= 16
            value |= n << shift
        return value
    except ValueError:  # an empty field (":::", a leading or trailing single ':')
        return None


def is_dotted_quad(text: bytes) -> bool:
    """Whether `text` is an IPv4 address exactly as Go's parser takes it (four canonical
    decimal octets), checked by lookups alone."""
    parts = text.split(b".")
    if len(parts) != 4:
        return False
    o = _OCTET
    return parts[0] in o and parts[1] in o and parts[2] in o and parts[3] in o


def parse_prefix_bytes(text: bytes) -> Prefix:
    """``netip.ParsePrefix`` of an ``allowed_ip`` value, masked; ValueError if Go rejects it."""
    addr, sep, length = text.rpartition(b"/")
    if sep:
        parts = addr.split(b".")
        if len(parts) == 4:
            o = _OCTET
            try:
                a, b, c, d = parts
                n = _LEN4[length]
                value = (o[a] << 24) | (o[b] << 16) | (o[c] << 8) | o[d]
            except KeyError:
                pass
            else:
                return (value & MASK4[n]) << 9 | n << 1
        elif len(parts) == 1:
            n6 = _LEN6.get(length)
            if n6 is not None:
                v6 = _ipv6_plain(addr)
                if v6 is not None:
                    return (v6 & MASK6[n6]) << 9 | n6 << 1 | 1
    return prefix_of(parse_prefix(text.decode("latin-1")))


# A run of lines that look like "allowed_ip=ADDRESS/LENGTH" (checked exactly below), and
# one such line in its parts: the short IPv6 forms "x::y", "x::", "::y", "::" as their two
# fields (at most four hex digits each, so below 2^16), anything else as a whole. One
# C-level match finds where the run ends, one findall splits it.
_RUN: Final = re.compile(rb"(?:allowed_ip=[0-9a-fA-F:.]{2,39}/[0-9]{1,3}\n)+")
_LINE: Final = re.compile(
    rb"allowed_ip=(?:([0-9a-fA-F]{0,4})::([0-9a-fA-F]{0,4})|([0-9a-fA-F:.]+))/([0-9]+)\n")


def parse_allowed_ip_run(lines: bytes) -> tuple[list[Prefix], int]:
    """The prefixes of the ``allowed_ip=`` lines that open `lines` (complete lines, each
    ended by ``\\n``), and how many bytes they take.

    Only the fast paths are taken: the run stops before the first line that is another
    key, a removal (``-``), ends in ``\\r``, or needs the exact parser (odd forms, errors).
    """
    prefixes: list[Prefix] = []
    run = _RUN.match(lines)
    if run is None:
        return prefixes, 0
    add = prefixes.append
    o, len4, len6, mask4, mask6 = _OCTET, _LEN4, _LEN6, MASK4, MASK6
    items = _LINE.findall(lines, 0, run.end())
    for head, tail, addr, length in items:
        if not addr:  # "head::tail"
            n = len6.get(length)
            if n is None:
                break
            v = (int(head, 16) << 112 if head else 0) | (int(tail, 16) if tail else 0)
            add((v & mask6[n]) << 9 | n << 1 | 1)
            continue
        parts = addr.split(b".")
        if len(parts) == 4:
            try:
                a, b, c, d = parts
                n = len4[length]
                v = (o[a] << 24) | (o[b] << 16) | (o[c] << 8) | o[d]
            except KeyError:
                break
            add((v & mask4[n]) << 9 | n << 1)
        else:
            n6 = len6.get(length)
            if n6 is None or len(parts) != 1:
                break
            v6 = _ipv6_hex(addr)
            if v6 is None:
                break
            add((v6 & mask6[n6]) << 9 | n6 << 1 | 1)
    else:
        return prefixes, run.end()
    # Stopped early: each line taken is "allowed_ip=" + its parts + "/" + "\n", and "::".
    taken = items[: len(prefixes)]
    return prefixes, sum(len(h) + len(t) + len(a) + len(n) + (13 if a else 15)
                         for h, t, a, n in taken)


# ---------------------------------------------------------------------------------
# Printing

_UNPACK8H: Final = struct.Struct(">8H").unpack
# ":0:0:0:" for a run of three zero fields, with the colons on both sides.
_ZERO_RUN: Final = [""] * 2 + [":" + "0:" * n for n in range(2, 9)]


def _dotted(v: int) -> str:
    return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"


_MIDDLE: Final = ((1 << 96) - 1) << 16  # fields 1 to 6 (of 0 to 7)
_MIDDLE5: Final = ((1 << 80) - 1) << 32  # fields 1 to 5


def format_ipv6(value: int) -> str:
    """``netip.Addr.String`` of a 128-bit address (no zone)."""
    # Two shapes that need no search: fields 1-6 all zero (x::y, with x or y possibly
    # zero too), and fields 1-5 zero with field 6 not (x::y:z, ::y:z): the longest run is
    # there, and it reaches field 0 when that is zero.
    if not value & _MIDDLE:
        head, tail = value >> 112, value & 0xFFFF
        return f"{head:x}::{tail:x}" if head and tail else (
            f"{head:x}::" if head else f"::{tail:x}" if tail else "::")
    if not value & _MIDDLE5:
        head = value >> 112
        if head:
            return f"{head:x}::{(value >> 16) & 0xFFFF:x}:{value & 0xFFFF:x}"
        return f"::{(value >> 16) & 0xFFFF:x}:{value & 0xFFFF:x}"
    if value >> 32 == 0xFFFF:
        return "::ffff:" + _dotted(value & 0xFFFFFFFF)
    fields = _UNPACK8H(value.to_bytes(16, "big"))
    text = "%x:%x:%x:%x:%x:%x:%x:%x" % fields
    zeros = fields.count(0)
    if zeros < 2:
        return text
    # The longest run is at most as long as the number of zero fields: try the longest
    # first; find() gives the leftmost, which RFC 5952 picks on ties.
    padded = ":" + text + ":"
    for run in range(zeros, 1, -1):
        pattern = _ZERO_RUN[run]
        i = padded.find(pattern)
        if i >= 0:
            return padded[1:i] + "::" + padded[i + len(pattern) : -1]
    return text


def format_prefix(prefix: Prefix) -> str:
    """``netip.Prefix.String``: ``10.0.0.0/8``, ``fd00::/8``, ``::ffff:0.0.0.0/96``."""
    v, n = prefix >> 9, (prefix >> 1) & 0xFF
    if prefix & 1:
        return f"{format_ipv6(v)}/{n}"
    return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}/{n}"


def format_prefix_lines(key: bytes, prefixes: Iterable[Prefix]) -> bytes:
    """``key=PREFIX\\n`` for every prefix, as one byte string (``b""`` for none)."""
    texts: list[str] = []
    add = texts.append
    for p in prefixes:
        v, n = p >> 9, (p >> 1) & 0xFF
        if p & 1:
            add(f"{format_ipv6(v)}/{n}")
        else:
            add(f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}/{n}")
    if not texts:
        return b""
    head = key.decode("ascii") + "="
    return (head + ("\n" + head).join(texts) + "\n").encode("ascii")

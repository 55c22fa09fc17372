"""Value syntax of the UAPI, parsed and printed exactly as wireguard-go does.

Theory of operation: wireguard-go parses every ``set`` value with a Go standard
library function, and the reference (Debian's wireguard-go 0.0.20220316, built with
Go 1.19) was probed to pin down the corner cases. Python's own parsers differ in
small ways (``int()`` takes ``+``, ``_``, spaces and non-ASCII digits;
``bytes.fromhex`` skips spaces; `ipaddress` rejects ``00001::`` and prints
``::ffff:1.2.3.4`` as ``::ffff:102:304``), so this module re-implements the Go
rules:

- keys: ``hex.DecodeString`` and an exact length of 32 bytes; upper and lower case
  hex are both accepted, nothing else (no spaces, no ``0x``).
- unsigned numbers: ``strconv.ParseUint(s, 10, bits)``: ASCII digits only, leading
  zeros allowed, no sign, no spaces, not empty.
- prefix lengths: ``strconv.Atoi``: like the above, but an optional ``+`` or ``-``
  sign is allowed (``/+8``, ``/-0`` and ``/0008`` are accepted by the reference).
- addresses: ``netip.ParseAddr``: dotted quads without leading zeros; IPv6 with at
  most one ``::``, hex fields of any length whose value fits 16 bits, an embedded
  IPv4 only in the last 32 bits, and an optional non-empty ``%zone``.
- prefixes: ``netip.ParsePrefix``: split at the last ``/``; zones are rejected; the
  host bits may be set (wireguard-go masks them when it inserts the prefix).
- endpoints: ``netip.ParseAddrPort``: split at the last ``:``; IPv6 must be
  bracketed and IPv4 must not; no host names.

Printing follows ``netip.Addr.String``: RFC 5952 for IPv6 (longest run of two or
more zero fields compressed, first on ties) and ``::ffff:a.b.c.d`` for IPv4-mapped
addresses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = [
    "IPNetwork",
    "clamp_private_key",
    "format_addr",
    "format_endpoint",
    "format_network",
    "parse_addr",
    "parse_addr_port",
    "parse_atoi",
    "parse_hex_key",
    "parse_prefix",
    "parse_uint",
    "resolve_zone",
]

IPNetwork = IPv4Network | IPv6Network

_HEX_KEY = re.compile(rb"[0-9a-fA-F]{64}")
_DIGITS = re.compile(rb"[0-9]+")
_SIGNED_DIGITS = re.compile(rb"[+-]?[0-9]+")
# A dotted quad exactly as Go's parseIPv4 accepts it (no leading zeros).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(r"\.".join([_OCTET] * 4))
_IPV4_PREFIX = re.compile(r"\.".join([_OCTET] * 4) + r"/(3[0-2]|[12]?[0-9])")
_HEX_FIELD = re.compile(r"[0-9a-fA-F]+")
_HEXVAL = {c: int(c, 16) for c in "0123456789abcdefABCDEF"}
_V4MAPPED = 0xFFFF << 32


# ---------------------------------------------------------------------------------
# Keys and numbers


def parse_hex_key(value: bytes) -> bytes | None:
    """32 bytes from exactly 64 hex digits (any case), or None if malformed."""
    if _HEX_KEY.fullmatch(value) is None:
        return None
    return bytes.fromhex(value.decode("ascii"))


def clamp_private_key(key: bytes) -> bytes:
    """Curve25519 clamping, as wireguard-go applies to every non-zero private key."""
    k = bytearray(key)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


def parse_uint(value: bytes, bits: int) -> int | None:
    """``strconv.ParseUint(value, 10, bits)``; None where Go returns an error."""
    if _DIGITS.fullmatch(value) is None:
        return None
    return _bounded(value, 1 << bits)


def parse_atoi(value: bytes) -> int | None:
    """``strconv.Atoi(value)`` on a 64-bit platform; None where Go returns an error."""
    if _SIGNED_DIGITS.fullmatch(value) is None:
        return None
    negative = value[:1] == b"-"
    if value[:1] in (b"+", b"-"):
        value = value[1:]
    magnitude = _bounded(value, 1 << 63 if not negative else (1 << 63) + 1)
    if magnitude is None:
        return None
    return -magnitude if negative else magnitude


def _bounded(digits: bytes, limit: int) -> int | None:
    # Strip leading zeros first: int() refuses more than 4300 digits, Go does not care.
    digits = digits.lstrip(b"0") or b"0"
    if len(digits) > 40:
        return None
    n = int(digits)
    return n if n < limit else None


# ---------------------------------------------------------------------------------
# Addresses


def parse_addr(s: str) -> tuple[IPv4Address | IPv6Address, str]:
    """``netip.ParseAddr``: the address and its zone ("" if none); ValueError if bad."""
    for ch in s:
        if ch == ".":
            return IPv4Address(_parse_ipv4(s)), ""
        if ch == ":":
            value, zone = _parse_ipv6(s)
            return IPv6Address(value), zone
        if ch == "%":
            raise ValueError(f"missing IPv6 address: {s!r}")
    raise ValueError(f"unable to parse IP: {s!r}")


def _parse_ipv4(s: str) -> int:
    if _IPV4.fullmatch(s) is None:
        raise ValueError(f"invalid IPv4 address: {s!r}")
    a, b, c, d = s.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def _parse_ipv6(text: str) -> tuple[int, str]:
    if "." not in text and "%" not in text:
        fast = _parse_ipv6_plain(text)
        if fast is not None:
            return fast, ""
    return _parse_ipv6_go(text)


def _parse_ipv6_plain(s: str) -> int | None:
    """Fast path for IPv6 without zone or embedded IPv4; None means "let the
    exact parser decide" (it then raises with Go's message)."""
    head, sep, tail = s.partition("::")
    if "::" in tail:
        return None
    fields = head.split(":") if head else []
    rest = tail.split(":") if tail else []
    if sep:
        if len(fields) + len(rest) > 7:
            return None
    elif len(fields) != 8:
        return None
    value = 0
    for f in fields:
        if _HEX_FIELD.fullmatch(f) is None:
            return None
        n = int(f, 16)
        if n > 0xFFFF:
            return None
        value = (value << 16) | n
    if sep:
        value <<= 16 * (8 - len(fields) - len(rest))
        for f in rest:
            if _HEX_FIELD.fullmatch(f) is None:
                return None
            n = int(f, 16)
            if n > 0xFFFF:
                return None
            value = (value << 16) | n
    return value


def _parse_ipv6_go(text: str) -> tuple[int, str]:
    """A transcription of Go's ``netip.parseIPv6`` (zones, embedded IPv4, errors)."""
    s = text
    zone = ""
    i = s.find("%")
    if i != -1:
        s, zone = s[:i], s[i + 1 :]
        if not zone:
            raise ValueError(f"zone must be a non-empty string: {text!r}")
    fields: list[int] = []  # 16-bit fields, in order
    ellipsis = -1  # index into fields where '::' stands
    if s.startswith("::"):
        ellipsis = 0
        s = s[2:]
        if not s:
            return 0, zone
    while len(fields) < 8:
        off = 0
        acc = 0
        n = len(s)
        while off < n:
            v = _HEXVAL.get(s[off])
            if v is None:
                break
            acc = (acc << 4) | v
            if acc > 0xFFFF:
                raise ValueError(f"IPv6 field has value >=2^16: {text!r}")
            off += 1
        if off == 0:
            raise ValueError(f"each colon-separated field must have a digit: {text!r}")
        if off < n and s[off] == ".":
            if ellipsis < 0 and len(fields) != 6:
                raise ValueError(f"embedded IPv4 address must end the address: {text!r}")
            if len(fields) > 6:
                raise ValueError(f"no room for an embedded IPv4 address: {text!r}")
            v4 = _parse_ipv4(s)
            fields.append(v4 >> 16)
            fields.append(v4 & 0xFFFF)
            s = ""
            break
        fields.append(acc)
        s = s[off:]
        if not s:
            break
        if s[0] != ":":
            raise ValueError(f"unexpected character, want colon: {text!r}")
        if len(s) == 1:
            raise ValueError(f"colon must be followed by more characters: {text!r}")
        s = s[1:]
        if s[0] == ":":
            if ellipsis >= 0:
                raise ValueError(f"multiple :: in address: {text!r}")
            ellipsis = len(fields)
            s = s[1:]
            if not s:
                break
    if s:
        raise ValueError(f"trailing garbage after address: {text!r}")
    if len(fields) < 8:
        if ellipsis < 0:
            raise ValueError(f"address string too short: {text!r}")
        fields[ellipsis:ellipsis] = [0] * (8 - len(fields))
    elif ellipsis >= 0:
        raise ValueError(f"the :: must expand to at least one field of zeros: {text!r}")
    value = 0
    for f in fields:
        value = (value << 16) | f
    return value, zone


def parse_prefix(s: str) -> IPNetwork:
    """``netip.ParsePrefix``, returned masked (as wireguard-go stores it)."""
    m = _IPV4_PREFIX.fullmatch(s)
    if m is not None:  # the common case, fast
        a, b, c, d, bits = m.groups()
        value = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
        return IPv4Network((value, int(bits)), strict=False)
    i = s.rfind("/")
    if i < 0:
        raise ValueError(f"no '/': {s!r}")
    addr, zone = parse_addr(s[:i])
    if zone:
        raise ValueError(f"IPv6 zones cannot be present in a prefix: {s!r}")
    bits = parse_atoi(s[i + 1 :].encode("latin-1"))
    if bits is None:
        raise ValueError(f"bad prefix length: {s!r}")
    if bits < 0 or bits > addr.max_prefixlen:
        raise ValueError(f"prefix length out of range: {s!r}")
    if isinstance(addr, IPv4Address):
        return IPv4Network((int(addr), bits), strict=False)
    return IPv6Network((int(addr), bits), strict=False)


def parse_addr_port(s: str) -> tuple[IPv4Address | IPv6Address, int, str]:
    """``netip.ParseAddrPort``: (address, port, zone); ValueError if malformed."""
    i = s.rfind(":")
    if i < 0:
        raise ValueError(f"not an ip:port: {s!r}")
    host, port_text = s[:i], s[i + 1 :]
    if not host:
        raise ValueError(f"no IP: {s!r}")
    if not port_text:
        raise ValueError(f"no port: {s!r}")
    bracketed = False
    if host[0] == "[":
        if len(host) < 2 or host[-1] != "]":
            raise ValueError(f"missing ]: {s!r}")
        host = host[1:-1]
        bracketed = True
    port = parse_uint(port_text.encode("latin-1"), 16)
    if port is None:
        raise ValueError(f"invalid port {port_text!r} parsing {s!r}")
    addr, zone = parse_addr(host)
    if bracketed and isinstance(addr, IPv4Address):
        raise ValueError(f"square brackets can only be used with IPv6 addresses: {s!r}")
    if not bracketed and isinstance(addr, IPv6Address):
        raise ValueError(f"IPv6 addresses must be surrounded by square brackets: {s!r}")
    return addr, port, zone


def resolve_zone(zone: str, if_nametoindex: Callable[[str], int | None]) -> int:
    """The scope id for an endpoint's ``%zone``, as the reference's Linux bind does.

    wireguard-go 0.0.20220316 (``conn/bind_linux.go`` ``zoneToUint32``) first looks
    the zone up as an interface name, then falls back to ``ParseUint(zone, 10, 32)``
    (any number, even an unused index). ``if_nametoindex`` is the lookup (for example
    `socket.if_nametoindex`); it may raise OSError or return None for "no such name".
    Raises ValueError when neither works (the device then answers EINVAL).
    """
    if not zone:
        return 0
    try:
        index = if_nametoindex(zone)
    except (OSError, ValueError):
        index = None
    if index is not None:
        return index
    n = parse_uint(zone.encode("utf-8", "surrogateescape"), 32)
    if n is None:
        raise ValueError(f"unknown interface {zone!r}")
    return n


# ---------------------------------------------------------------------------------
# Printing


def format_addr(addr: IPv4Address | IPv6Address, zone: str = "") -> str:
    """``netip.Addr.String``."""
    if isinstance(addr, IPv4Address):
        return str(addr)
    value = int(addr)
    if value >> 32 == 0xFFFF:
        text = "::ffff:" + str(IPv4Address(value & 0xFFFFFFFF))
    else:
        text = addr.compressed
        if "%" in text:  # an IPv6Address built with a scope id
            text = text.split("%", 1)[0]
    return f"{text}%{zone}" if zone else text


def format_network(net: IPNetwork) -> str:
    """``netip.Prefix.String`` of a network (``::ffff:0.0.0.0/96``, ``10.0.0.0/8``)."""
    if isinstance(net, IPv4Network):
        return str(net)
    addr = net.network_address
    if int(addr) >> 32 == 0xFFFF:
        return f"{format_addr(addr)}/{net.prefixlen}"
    return str(net)


def format_endpoint(host: str, port: int, *, keep_zone: bool = False) -> str:
    """An endpoint as the reference prints it: ``1.2.3.4:51820`` or ``[::1]:51820``.

    `host` may carry a ``%zone`` (as `socket` reports link-local peers). The
    reference's Linux bind drops the zone when it prints an endpoint; pass
    ``keep_zone=True`` for the ``[fe80::1%eth0]:51820`` form of newer wireguard-go.
    A host that does not parse as an address is printed as given.
    """
    if ":" not in host and "%" not in host:
        # No IPv6: a dotted quad that parses prints as given (Go's parser takes only the
        # canonical form), and one that does not is printed as given too.
        return f"{host}:{port}"
    text, _, zone = host.partition("%")
    try:
        addr, _ = parse_addr(text)
    except ValueError:
        addr = None
    if addr is None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(addr, IPv4Address):
        return f"{format_addr(addr)}:{port}"
    return f"[{format_addr(addr, zone if keep_zone else '')}]:{port}"

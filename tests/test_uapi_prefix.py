"""uapi.prefix: the fast prefix parser and printer agree with the wireguard-go-exact ones.

The exact parser (`uapi.values.parse_prefix`) encodes Go's ``netip.ParsePrefix`` and is
tested against the reference elsewhere; here the fast paths are checked against it on
random and adversarial text, and the printer against `ipaddress` and `format_network`.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest

from uapi.prefix import (
    Prefix,
    make_prefix,
    prefix_network,
    prefix_parts,
    format_ipv6,
    format_prefix,
    format_prefix_lines,
    is_dotted_quad,
    parse_allowed_ip_run,
    parse_prefix_bytes,
    prefix_of,
)
from uapi.operations import PeerEndpoint
from uapi.protocol import SetRequestError, parse_set_line
from uapi.values import _IPV4, format_addr, format_network, parse_addr_port, parse_prefix


def exact(text: bytes) -> Prefix | None:
    try:
        return prefix_of(parse_prefix(text.decode("latin-1")))
    except ValueError:
        return None


def fast(text: bytes) -> Prefix | None:
    try:
        return parse_prefix_bytes(text)
    except ValueError:
        return None


def random_v6(rng: random.Random) -> int:
    """Addresses with many zero fields (runs to compress), mapped and compatible ones."""
    kind = rng.random()
    if kind < 0.1:
        return (0xFFFF << 32) | rng.getrandbits(32)
    if kind < 0.15:
        return rng.getrandbits(32)
    value = 0
    for _ in range(8):
        value = (value << 16) | rng.choice([0, 0, 0, 1, 0xFFFF, rng.getrandbits(16)])
    return value


ODD = [
    "", "/", "1.2.3.4", "1.2.3.4/", "/8", "1.2.3.4/33", "1.2.3.4/+8", "1.2.3.4/-0",
    "1.2.3.4/08", "1.2.3.4/0008", "01.2.3.4/8", "1.2.3.256/8", "1.2.3/8", "1.2.3.4.5/8",
    "1.2.3.4/8/8", " 1.2.3.4/8", "1.2.3.4/8 ", "1.2.3.4/8\r", "-1.2.3.4/8", "1.2.3.-4/8",
    "::/0", "::/129", "::/-0", ":::/0", "::1/128", "1::/16", "1:2:3:4:5:6:7:8/128",
    "1:2:3:4:5:6:7::/128", "1:2:3:4:5:6:7:8::/128", "::1:2:3:4:5:6:7:8/128",
    "1:2:3:4:5:6:7/128", "1::2::3/64", ":1::/64", "1::2:/64", "00001::/16", "10000::/16",
    "0x1::/16", "1_0::/16", "+1::/16", " 1::/16", "1:: /16", "fe80::1%eth0/64",
    "::ffff:1.2.3.4/96", "::ffff:1.2.3.4/128", "::1.2.3.4/128", "1:2:3:4:5:6:1.2.3.4/128",
    "1.2.3.4::/64", "FD00::/8", "fD00::aB/64", "::ffff:01.2.3.4/128", "ff::ff/0x10",
    "é::/16", "1.2.3.٤/8", "٤::/16",
]


@pytest.mark.parametrize("text", ODD)
def test_odd_prefixes_parse_as_the_exact_parser_decides(text: str) -> None:
    data = text.encode("utf-8")
    assert fast(data) == exact(data)


def test_random_prefixes_parse_as_the_exact_parser_decides() -> None:
    rng = random.Random(20220316)
    alphabet = "0123456789abcdefABCDEF:./%-+ x"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 24)))
        data = text.encode()
        assert fast(data) == exact(data), text
    for _ in range(20000):
        bits = rng.choice([32, 128])
        value = rng.getrandbits(32) if bits == 32 else random_v6(rng)
        length = rng.randrange(bits + 1)
        net = (IPv4Network if bits == 32 else IPv6Network)((value, length), strict=False)
        for text in (f"{net.network_address}/{length}", f"{net.network_address.exploded}/{length}",
                     format_network(net)):
            assert fast(text.encode()) == make_prefix(bits, value, length), text


def test_prefix_values() -> None:
    p = make_prefix(32, 0x0A010203, 8)
    assert p == 0x0A000000 << 9 | 8 << 1 and prefix_parts(p) == (32, 0x0A000000, 8)
    assert prefix_network(p) == ip_network("10.0.0.0/8")
    assert prefix_of(ip_network("10.1.2.3/8", strict=False)) == p
    assert prefix_of(p) is p
    assert format_prefix(p) == "10.0.0.0/8"
    six = make_prefix(128, 1, 128)
    assert six & 1 and prefix_parts(six) == (128, 1, 128)
    assert prefix_network(six) == ip_network("::1/128")
    assert make_prefix(128, 0, 0) != make_prefix(32, 0, 0)  # ::/0 is not 0.0.0.0/0
    for bad in [(64, 0, 0), (32, 0, 33), (32, 1 << 32, 0), (128, -1, 0)]:
        with pytest.raises(ValueError):
            make_prefix(*bad)
    with pytest.raises(TypeError):
        prefix_of("10.0.0.0/8")  # type: ignore[arg-type]


def test_printing_matches_ipaddress_and_go() -> None:
    rng = random.Random(7)
    for _ in range(50000):
        value = random_v6(rng)
        length = rng.randrange(129)
        net = IPv6Network((value, length), strict=False)
        assert format_prefix(make_prefix(128, value, length)) == format_network(net)
        if value >> 32 != 0xFFFF:  # netip prints IPv4-mapped addresses dotted
            assert format_ipv6(value) == IPv6Address(value).compressed
        value4 = rng.getrandbits(32)
        text = f"{IPv4Network(value4).network_address}/32"
        assert format_prefix(make_prefix(32, value4, 32)) == text
    assert format_ipv6((0xFFFF << 32) | 0x01020304) == "::ffff:1.2.3.4"
    assert format_ipv6(0x01020304) == "::102:304"
    assert format_ipv6(0) == "::" and format_ipv6(1) == "::1"
    assert format_ipv6(0x00010000000000000001000000000001) == "1::1:0:0:1"  # first on ties
    assert format_ipv6(0x00010000000100000000000000000001) == "1:0:1::1"  # longest run
    assert format_ipv6(0x00010000000100000001000000010000) == "1:0:1:0:1:0:1:0"  # no lone ::
    assert format_prefix_lines(b"allowed_ip", []) == b""
    assert format_prefix_lines(b"allowed_ip", [make_prefix(32, 0, 0), make_prefix(128, 0, 0)]) == (
        b"allowed_ip=0.0.0.0/0\nallowed_ip=::/0\n")


def run_lines(lines: list[bytes]) -> tuple[list[Prefix], int]:
    return parse_allowed_ip_run(b"".join(line + b"\n" for line in lines))


def test_a_run_is_what_line_by_line_parsing_gives() -> None:
    rng = random.Random(3)
    pool = [b"allowed_ip=" + t.encode() for t in ODD] + [
        b"allowed_ip=10.0.0.1/32", b"allowed_ip=fd00::1/128", b"allowed_ip=-10.0.0.0/8",
        b"endpoint=1.2.3.4:5", b"allowed_ip=1.2.3.4/32\r", b"", b"allowed_ip",
        b"allowed_ip=10.0.0.0/8=", b"allowed_ips=10.0.0.0/8"]
    for _ in range(3000):
        lines = [rng.choice(pool) for _ in range(rng.randrange(1, 8))]
        prefixes, consumed = run_lines(lines)
        assert len(prefixes) <= len(lines)
        assert consumed == sum(len(line) + 1 for line in lines[: len(prefixes)])
        for line, prefix in zip(lines, prefixes):
            op = parse_set_line(line, True)
            assert not isinstance(op, SetRequestError)
            assert prefix_of(op.network) == prefix  # type: ignore[union-attr]


def test_a_run_of_canonical_lines_is_taken_whole() -> None:
    rng = random.Random(4)
    nets = [IPv4Network((rng.getrandbits(32), rng.randrange(33)), strict=False)
            for _ in range(300)]
    nets += [IPv6Network((random_v6(rng), rng.randrange(129)), strict=False) for _ in range(300)]
    nets = [n for n in nets if n.version == 4 or "." not in format_network(n)]  # not mapped
    rng.shuffle(nets)
    lines = [b"allowed_ip=" + format_network(n).encode() for n in nets]
    prefixes, consumed = run_lines(lines + [b"endpoint=1.2.3.4:5"])
    assert prefixes == [prefix_of(n) for n in nets]
    assert consumed == sum(len(line) + 1 for line in lines)
    assert run_lines([b"endpoint=1.2.3.4:5", lines[0]]) == ([], 0)


@pytest.mark.parametrize("text", [
    "1.2.3.4:5", "255.255.255.255:65535", "0.0.0.0:0", "1.2.3.4:00051820", "01.2.3.4:5",
    "1.2.3.4:65536", "1.2.3.4:+5", "1.2.3.4:", ":5", "1.2.3.4", "[1.2.3.4]:5", "1.2.3:5",
    "1.2.3.4.5:6", "1.2.3.4:5:6", "1.2.3.4 :5", "1.2.3.256:5", "[::1]:5", "::1:5",
])
def test_dotted_endpoints_parse_as_the_exact_parser_decides(text: str) -> None:
    op = parse_set_line(b"endpoint=" + text.encode(), True)
    try:
        addr, port, zone = parse_addr_port(text)
    except ValueError:
        assert isinstance(op, SetRequestError) and op.errno == -22
    else:
        assert op == PeerEndpoint(format_addr(addr), port, zone or None)
    assert is_dotted_quad(text.rpartition(":")[0].encode()) == (
        _IPV4.fullmatch(text.rpartition(":")[0]) is not None)

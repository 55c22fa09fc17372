"""Go-exact value parsing and printing (uapi.values): numbers, keys, addresses, prefixes."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from uapi.values import (
    _parse_ipv6_go,
    _parse_ipv6_plain,
    format_addr,
    format_endpoint,
    format_network,
    parse_addr,
    parse_addr_port,
    parse_atoi,
    parse_hex_key,
    parse_prefix,
    parse_uint,
    resolve_zone,
)


@pytest.mark.parametrize(
    ("text", "bits", "value"),
    [(b"0", 16, 0), (b"65535", 16, 65535), (b"65536", 16, None), (b"00065535", 16, 65535),
     (b"", 16, None), (b"+1", 16, None), (b"-0", 16, None), (b" 1", 16, None),
     (b"1_0", 16, None), (b"\xd9\xa1", 16, None), (b"0" * 5000 + b"1", 32, 1),
     (b"9" * 5000, 32, None), (b"4294967295", 32, 4294967295), (b"4294967296", 32, None)],
)
def test_parse_uint(text: bytes, bits: int, value: int | None) -> None:
    assert parse_uint(text, bits) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"8", 8), (b"+8", 8), (b"-8", -8), (b"-0", 0), (b"008", 8), (b"", None), (b"+", None),
     (b"-", None), (b"+-8", None), (b" 8", None), (b"0x8", None), (b"9" * 30, None)],
)
def test_parse_atoi(text: bytes, value: int | None) -> None:
    assert parse_atoi(text) == value


def test_parse_hex_key() -> None:
    assert parse_hex_key(b"Ab" * 32) == bytes([0xAB]) * 32
    for bad in [b"ab" * 31, b"ab" * 33, b"ab" * 31 + b"a ", b" " + b"ab" * 31 + b"a", b""]:
        assert parse_hex_key(bad) is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("1.2.3.4", "1.2.3.4"), ("::", "::"), ("::1", "::1"), ("1::", "1::"),
     ("FE80::1", "fe80::1"), ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
     ("::ffff:0102:0304", "::ffff:1.2.3.4"), ("::1.2.3.4", "::102:304"),
     ("1:0:0:1:0:0:0:1", "1:0:0:1::1"), ("0:0:1:0:0:1:0:0", "::1:0:0:1:0:0"),
     ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"), ("0001:0000:0000:0000:0000:0000:0000:0000", "1::"),
     ("00000000001::", "1::"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8")],
)
def test_parse_and_format_addr(text: str, canonical: str) -> None:
    addr, zone = parse_addr(text)
    assert zone == ""
    assert format_addr(addr) == canonical


@pytest.mark.parametrize(
    "text",
    ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1..2.3", "1.2.3.4 ", "%eth0",
     "fe80::1%", "1::2::3", ":::", ":1::", "1::2:", "10000::", "1:2:3:4:5:6:7:1.2.3.4",
     "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "::g", "1.2.3.4::",
     "::01.2.3.4", "\uff11.2.3.4", "localhost"],
)
def test_parse_addr_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(text)


def test_zones() -> None:
    addr, zone = parse_addr("fe80::1%eth0")
    assert addr == IPv6Address("fe80::1") and zone == "eth0"
    assert format_addr(addr, zone) == "fe80::1%eth0"
    assert parse_addr("::%x%y") == (IPv6Address("::"), "x%y")
    with pytest.raises(ValueError):
        parse_addr("1.2.3.4%eth0")
    with pytest.raises(ValueError):
        parse_prefix("fe80::%1/64")


def test_fast_ipv6_path_agrees_with_the_go_transcription() -> None:
    rng = random.Random(51820)
    pieces = ["0", "1", "a", "F", "ffff", "10000", "00001", "12345", "g", "", " "]
    accepted = 0
    for _ in range(20000):
        n = rng.randint(1, 9)
        fields = [rng.choice(pieces) for _ in range(n)]
        text = ":".join(fields)
        if rng.random() < 0.5:
            i = rng.randint(0, len(text))
            text = text[:i] + "::" + text[i:]
        if rng.random() < 0.05:
            text = text.replace(":", ":::", 1)
        fast = _parse_ipv6_plain(text)
        try:
            slow: int | None = _parse_ipv6_go(text)[0]
        except ValueError:
            slow = None
        if fast is not None:
            accepted += 1
            assert fast == slow, text
        elif slow is not None:
            pytest.fail(f"fast path refused a valid address {text!r}")
    assert accepted > 1000


def test_formatting_matches_rfc5952_like_go() -> None:
    rng = random.Random(5952)
    for _ in range(5000):
        value = 0
        for _ in range(8):
            value = (value << 16) | rng.choice([0, 0, 0, 1, 0xFFFF, rng.randrange(65536)])
        addr = IPv6Address(value)
        text = format_addr(addr)
        assert parse_addr(text)[0] == addr
        if value >> 32 != 0xFFFF:
            assert text == addr.compressed
        else:
            assert text == "::ffff:" + str(IPv4Address(value & 0xFFFFFFFF))


def test_prefixes() -> None:
    assert parse_prefix("10.1.2.3/8") == ip_network("10.0.0.0/8")
    assert parse_prefix("10.0.0.0/-0") == ip_network("0.0.0.0/0")
    assert format_network(parse_prefix("::ffff:1.2.3.4/96")) == "::ffff:0.0.0.0/96"
    assert format_network(parse_prefix("::ffff:1.2.3.4/128")) == "::ffff:1.2.3.4/128"
    assert format_network(ip_network("fd00::/8")) == "fd00::/8"
    assert format_network(ip_network("10.0.0.0/8")) == "10.0.0.0/8"


def test_addr_port() -> None:
    assert parse_addr_port("1.2.3.4:5") == (IPv4Address("1.2.3.4"), 5, "")
    assert parse_addr_port("[fe80::1%a:b]:5") == (IPv6Address("fe80::1"), 5, "a:b")
    for bad in ["1.2.3.4", "[1.2.3.4]:5", "::1:5", "[::1:5", "1.2.3.4:"]:
        with pytest.raises(ValueError):
            parse_addr_port(bad)


def test_format_endpoint() -> None:
    assert format_endpoint("192.0.2.1", 51820) == "192.0.2.1:51820"
    assert format_endpoint("::1", 1) == "[::1]:1"
    assert format_endpoint("fe80::1%eth0", 2) == "[fe80::1]:2"  # the reference drops it
    assert format_endpoint("fe80::1%eth0", 2, keep_zone=True) == "[fe80::1%eth0]:2"
    assert format_endpoint("::ffff:1.2.3.4", 3) == "[::ffff:1.2.3.4]:3"
    assert format_endpoint("0:0::1", 4) == "[::1]:4"
    assert format_endpoint(str(ip_address("2001:db8::1")), 5) == "[2001:db8::1]:5"


def test_resolve_zone() -> None:
    names = {"lo": 1, "eth0": 2}

    def lookup(name: str) -> int:
        if name not in names:
            raise OSError("no such device")
        return names[name]

    assert resolve_zone("", lookup) == 0
    assert resolve_zone("eth0", lookup) == 2
    assert resolve_zone("99", lookup) == 99  # any number, as the reference
    assert resolve_zone("01", lookup) == 1
    for bad in ["eth9", "4294967296", "-1", " 1"]:
        with pytest.raises(ValueError):
            resolve_zone(bad, lookup)

"""The wire-proof packet helpers (no root needed): checksums, round trips, echo replies."""

from __future__ import annotations

import pytest

from compat.packets import (
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PROTO_ICMP, echo_reply_for, echo_request,
    internet_checksum, parse_icmp_echo, parse_ipv4,
)


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the one's-complement sum of these words is 0xddf2.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF
    assert internet_checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length pads with zero


def test_echo_request_round_trip_and_reply() -> None:
    request = echo_request("10.77.0.1", "10.77.0.2", 0x1234, 7, b"payload!!", ip_ident=99)
    ip = parse_ipv4(request)
    assert (ip.src, ip.dst, ip.proto, ip.ident) == ("10.77.0.1", "10.77.0.2", PROTO_ICMP, 99)
    echo = parse_icmp_echo(ip.payload)
    assert (echo.kind, echo.code, echo.ident, echo.seq, echo.data) == (
        ICMP_ECHO_REQUEST, 0, 0x1234, 7, b"payload!!")

    reply = parse_ipv4(echo_reply_for(request))
    assert (reply.src, reply.dst) == ("10.77.0.2", "10.77.0.1")
    answer = parse_icmp_echo(reply.payload)
    assert (answer.kind, answer.ident, answer.seq, answer.data) == (
        ICMP_ECHO_REPLY, 0x1234, 7, b"payload!!")


def test_corruption_is_detected() -> None:
    request = bytearray(echo_request("10.77.0.1", "10.77.0.2", 1, 1, b"x"))
    request[8] ^= 1  # TTL
    with pytest.raises(ValueError, match="header checksum"):
        parse_ipv4(bytes(request))
    request[8] ^= 1
    request[-1] ^= 1  # ICMP data
    with pytest.raises(ValueError, match="ICMP checksum"):
        parse_icmp_echo(parse_ipv4(bytes(request)).payload)
    with pytest.raises(ValueError, match="not an echo request"):
        echo_reply_for(echo_reply_for(echo_request("10.0.0.1", "10.0.0.2", 1, 1, b"")))

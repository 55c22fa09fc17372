"""The TCP header (RFC 9293 section 3.1) and the options the stack speaks.

`parse_segment` takes a checksum-verified TCP segment (see `wgpy.netstack.ip.parse`) apart
into a `Segment`; `header` builds one without its checksum, which `ip.tcp_packet` fills.
Options understood: MSS (kind 2) and window scale (kind 3, RFC 7323), the two that change
what we may send; the rest (SACK-permitted, timestamps, ...) are skipped by their length,
and we never offer them, so the peer never uses them. A malformed option list ends the
walk: what was read before it counts (Linux `tcp_parse_options` does the same).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wgpy.constants import TCP_HEADER_MIN, TCP_MAX_WSCALE

__all__ = ["FIN", "SYN", "RST", "PSH", "ACK", "Segment", "parse_segment", "header",
           "seq_lt", "seq_le", "SEQ_MASK"]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31

_TCP = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, data offset, flags, window, csum, urg
_OPT_EOL, _OPT_NOP, _OPT_MSS, _OPT_WSCALE = 0, 1, 2, 3


def seq_lt(a: int, b: int) -> bool:
    """a comes before b in sequence space (RFC 9293 section 3.4, modulo 2**32)."""
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)


@dataclass(frozen=True)
class Segment:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int  # as sent, not yet scaled
    payload: bytes
    mss: int | None = None
    wscale: int | None = None

    @property
    def length(self) -> int:
        """SEG.LEN: the payload and one for each of SYN and FIN."""
        return len(self.payload) + (self.flags & SYN != 0) + (self.flags & FIN != 0)


def parse_segment(data: bytes) -> Segment:
    if len(data) < TCP_HEADER_MIN:
        raise ValueError("short TCP header")
    sport, dport, seq, ack, offset, flags, window, _csum, _urg = _TCP.unpack_from(data)
    size = (offset >> 4) * 4
    if size < TCP_HEADER_MIN or size > len(data):
        raise ValueError("bad TCP data offset")
    mss = wscale = None
    options, i = data[TCP_HEADER_MIN:size], 0
    while i < len(options):
        kind = options[i]
        if kind == _OPT_EOL:
            break
        if kind == _OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            break
        length = options[i + 1]
        if kind == _OPT_MSS and length == 4:
            mss = int.from_bytes(options[i + 2:i + 4], "big") or None
        elif kind == _OPT_WSCALE and length == 3:
            wscale = min(options[i + 2], TCP_MAX_WSCALE)  # RFC 7323 2.3: larger is 14
        i += length
    return Segment(sport, dport, seq, ack, flags & 0x3F, window, data[size:], mss, wscale)


def header(sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
           mss: int | None = None, wscale: int | None = None) -> bytes:
    """A TCP header with a zero checksum; options MSS and window scale if given."""
    options = b""
    if mss is not None:
        options += struct.pack("!BBH", _OPT_MSS, 4, mss)
    if wscale is not None:
        options += struct.pack("!BBBB", _OPT_NOP, _OPT_WSCALE, 3, wscale)
    offset = (TCP_HEADER_MIN + len(options)) // 4 << 4
    return _TCP.pack(sport, dport, seq & SEQ_MASK, ack & SEQ_MASK, offset, flags,
                     window, 0, 0) + options

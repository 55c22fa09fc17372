"""compat/soak.py's checks, without root: the stream and datagram verification would see a
corrupted, shifted or foreign byte (the soak itself runs on demand)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat import soak  # noqa: E402

PAT = soak.pattern()


def test_a_stream_read_anywhere_matches_the_pattern_and_a_flipped_byte_does_not() -> None:
    for offset in (0, 1, soak.P - 3, soak.P * 5 + 17, 10**9 + 7):
        start = offset % soak.P
        data = bytearray(PAT[start:start + soak.CHUNK * 2])
        assert soak.check_stream(offset, bytes(data), PAT) == 0
        data[100] ^= 0x01
        assert soak.check_stream(offset, bytes(data), PAT) == 1
        assert soak.check_stream(offset + 1, bytes(data), PAT) > 0  # shifted by a byte


def test_datagrams_carry_their_sequence_and_refuse_any_change() -> None:
    for seq in (0, 1, 12345, 2**40):
        data = soak.make_datagram(seq, PAT)
        assert soak.check_datagram(data, PAT) == (seq, True)
        bad = bytearray(data)
        bad[-1] ^= 0x80
        assert soak.check_datagram(bytes(bad), PAT) == (seq, False)
        other = soak.make_datagram(seq + 1, PAT)
        assert soak.check_datagram(data[:soak.UDP_HEAD.size] + other[soak.UDP_HEAD.size:],
                                   PAT)[1] is False  # the payload of another sequence number
    assert soak.check_datagram(b"short", PAT) == (None, False)


def test_drop_differences() -> None:
    assert soak.diff({"a": 5.0, "b": 2.0}, {"a": 3.0, "b": 2.0}) == {"a": 2.0}

"""The batch path: per-packet work done per batch, compiled where it can be (sans-IO).

These operations carry the data path's per-packet work (their contract is in
wgpy/_fastpath.c, which implements them in C over OpenSSL's libcrypto, the GIL released
while it encrypts or decrypts):

- `seal(key, receiver_index, counter, packets, mtu)`: IP packets -> transport data
  messages with counters counter, counter + 1, ... (padding as kernel send.c);
- `open(key, messages)`: transport data messages -> plaintexts, None where the tag fails;
- `receive(key, messages, replay, limit, allowed)`: a run of transport data under one
  keypair -> the IP packets for the TUN, with every check of the kernel's receive path in
  its order (decryption, the replay window `Replay`, inner length, allowed source);
  `accept(plaintexts, messages, ...)` is its second half, for a run already opened (by a
  crypto worker, outside the device lock);
- `runs(received, segment)`: one UDP receive (GRO) -> runs of transport data with one
  receiver index, other datagrams alone;
- `split(tun_read)`: one TUN read with its virtio-net header -> IP packets (a TSO
  super-packet's segments, or one packet with its checksum completed); ValueError when
  the header does not describe the packet;
- `coalesce(packets)`: decrypted IP packets -> TUN writes, TCP segments of one flow merged
  into virtio-net GSO super-packets (only on the compiled path; its pure-Python twin is
  `wgpy.tunoffload.py_coalesce`).

Each has a pure-Python twin, the reference the compiled one is fuzzed against
(tests/test_fastpath.py, tests/fastpath_cases.py). `NATIVE` says whether the compiled
module is in use: it is unless it could not be built or imported, or `WGPY_PURE_PYTHON=1`
is set. When it is not, the device runs the pure-Python twins: TUN reads without TSO (so
`split` is never needed), one AEAD call per packet, coalescing in Python.
"""

from __future__ import annotations

import importlib
import os
import struct
from typing import Any, Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.constants import (
    IPV4_HEADER_MIN, IPV6_HEADER_SIZE, MESSAGE_PADDING_MULTIPLE, MESSAGE_TRANSPORT,
    TRANSPORT_HEADER_SIZE,
)
from wgpy.crypto import NONCE
from wgpy.messages import TRANSPORT_HEADER
from wgpy.replay import ReplayFilter

__all__ = ["NATIVE", "Replay", "seal", "open", "accept", "receive", "runs", "split",
           "coalesce", "py_seal", "py_open", "py_accept", "py_receive", "py_runs", "py_split"]

_HEADER = TRANSPORT_HEADER  # type, receiver index, counter (wgpy.messages)
_NONCE = NONCE  # 32 zero bits, 64-bit little-endian counter (wgpy.crypto)
_VNET = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_VNET_SIZE = _VNET.size
_F_NEEDS_CSUM = 1
_GSO_NONE, _GSO_TCPV4, _GSO_TCPV6, _GSO_ECN = 0, 1, 4, 0x80
_FIN, _PSH, _CWR = 0x01, 0x08, 0x80
_TAG_SIZE = 16
_TRANSPORT_WORD = MESSAGE_TRANSPORT.to_bytes(4, "little")
MAX_SEGMENTS = 1024


def _padded(n: int, mtu: int) -> int:
    """kernel send.c calculate_skb_padding (wgpy.noise.peer.padding_for)."""
    pad = -n % MESSAGE_PADDING_MULTIPLE
    if n + pad > mtu:
        last = n % mtu if mtu > 0 and n > mtu else n
        padded = -(-last // MESSAGE_PADDING_MULTIPLE) * MESSAGE_PADDING_MULTIPLE
        if mtu > 0:
            padded = min(padded, mtu)
        pad = max(padded - last, 0)
    return n + pad


def py_seal(key: bytes, receiver_index: int, counter: int, packets: Sequence[bytes],
            mtu: int) -> list[bytes]:
    aead = ChaCha20Poly1305(key)
    out = []
    for i, p in enumerate(packets):
        c = counter + i
        plain = p + bytes(_padded(len(p), mtu) - len(p))
        out.append(_HEADER.pack(MESSAGE_TRANSPORT, receiver_index, c)
                   + aead.encrypt(_NONCE.pack(c), plain, None))
    return out


def py_open(key: bytes, messages: Sequence[bytes],
            aead: ChaCha20Poly1305 | None = None) -> list[bytes | None]:
    decrypt = (aead or ChaCha20Poly1305(key)).decrypt
    out: list[bytes | None] = []
    for m in messages:
        if len(m) < TRANSPORT_HEADER_SIZE + _TAG_SIZE:
            out.append(None)
            continue
        try:
            out.append(decrypt(_NONCE.pack(_HEADER.unpack_from(m)[2]),
                               m[TRANSPORT_HEADER_SIZE:], None))
        except InvalidTag:
            out.append(None)
    return out


def py_runs(received: bytes | memoryview, segment: int) -> list[tuple[int, list[bytes]]]:
    """One UDP receive (GRO: datagrams of one source cut at `segment` bytes) as runs:
    consecutive transport data messages with one receiver index together, (index,
    [datagrams]); any other datagram alone, (-1, [datagram])."""
    if segment <= 0:
        raise ValueError("segment size must be positive")
    out: list[tuple[int, list[bytes]]] = []
    run: list[bytes] = []
    run_index = -2
    for at in range(0, len(received), segment):
        data = bytes(received[at:at + segment])
        index = -1
        if data[:4] == _TRANSPORT_WORD and len(data) >= TRANSPORT_HEADER_SIZE + _TAG_SIZE:
            index = int.from_bytes(data[4:8], "little")
            if index == run_index:
                run.append(data)
                continue
        run = [data]
        out.append((index, run))
        run_index = index
    return out


def py_accept(plains: Sequence[bytes | None], messages: Sequence[bytes], replay: ReplayFilter,
              limit: int, allowed: Callable[[bytes], bool]
              ) -> tuple[list[bytes], int, int, bool, tuple[int, int, int, int]]:
    """What follows decryption for a run of transport data messages under one keypair, per
    message in the kernel's order: replay check (`counter_validate`), inner IP length (the
    padding trimmed), source address among the peer's allowed IPs (`allowed` asked only
    when the source differs from the last allowed one). `plains[i]` is the plaintext of
    `messages[i]`, None where it did not authenticate. Returns (IP packets,
    authenticated, bytes received, whether any data (not keepalive) authenticated,
    (decryption failed, replayed, invalid inner packet, disallowed source))."""
    if len(plains) != len(messages):
        raise ValueError("one plaintext (or None) for each datagram")
    validate, unpack = replay.validate, _HEADER.unpack_from
    packets: list[bytes] = []
    failed = replayed = invalid = disallowed = authenticated = received = 0
    data_received = False
    allowed_source = b""  # the last inner source address found to be the peer's
    for plain, data in zip(plains, messages):
        if plain is None or len(data) < TRANSPORT_HEADER_SIZE + _TAG_SIZE:
            failed += 1
            continue
        if not validate(unpack(data)[2], limit):
            replayed += 1
            continue
        authenticated += 1
        received += len(data)
        if not plain:
            continue  # keepalive
        data_received = True  # authenticated data, whatever the filters below decide
        n = len(plain)
        version = plain[0] >> 4
        if version == 4 and n >= IPV4_HEADER_MIN:
            length = (plain[2] << 8) | plain[3]
            if not IPV4_HEADER_MIN <= length <= n:
                invalid += 1
                continue
            source = plain[12:16]
        elif version == 6 and n >= IPV6_HEADER_SIZE:
            length = ((plain[4] << 8) | plain[5]) + IPV6_HEADER_SIZE
            if length > n:
                invalid += 1
                continue
            source = plain[8:24]
        else:
            invalid += 1
            continue
        if source == allowed_source or allowed(source):
            allowed_source = source
            packets.append(plain if length == n else plain[:length])
        else:
            disallowed += 1
    return packets, authenticated, received, data_received, (failed, replayed, invalid,
                                                            disallowed)


def py_receive(key: bytes, messages: Sequence[bytes], replay: ReplayFilter, limit: int,
               allowed: Callable[[bytes], bool], aead: ChaCha20Poly1305 | None = None
               ) -> tuple[list[bytes], int, int, bool, tuple[int, int, int, int]]:
    """Decrypt a run of transport data messages under one keypair (with `aead` when given,
    else a ChaCha20-Poly1305 of `key`), then `py_accept` them."""
    return py_accept(py_open(key, messages, aead), messages, replay, limit, allowed)


def _sum16(data: bytes | bytearray, acc: int = 0) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return acc + sum(struct.unpack("!%dH" % (len(data) // 2), data))


def _fold(acc: int) -> int:
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def py_split(read: bytes | bytearray | memoryview) -> list[bytes]:
    if len(read) < _VNET_SIZE:
        raise ValueError("shorter than a virtio-net header")
    flags, gso, _hdr_len, gso_size, cstart, coff = _VNET.unpack_from(read)
    gso &= ~_GSO_ECN
    data = bytes(read[_VNET_SIZE:])
    n = len(data)
    if gso == _GSO_NONE:
        if not flags & _F_NEEDS_CSUM:
            return [data]
        if cstart + coff + 2 > n:
            raise ValueError("checksum offset beyond the packet")
        p = bytearray(data)
        struct.pack_into("!H", p, cstart + coff, ~_fold(_sum16(p[cstart:])) & 0xFFFF)
        return [bytes(p)]
    if gso not in (_GSO_TCPV4, _GSO_TCPV6):
        raise ValueError("unsupported GSO type")
    v4 = gso == _GSO_TCPV4
    if n < 1 or data[0] >> 4 != (4 if v4 else 6):
        raise ValueError("IP version does not match GSO type")
    if (cstart < 20 or cstart != (data[0] & 0x0F) * 4) if v4 else cstart < 40:
        raise ValueError("bad IP header length")
    if coff != 16 or cstart + 20 > n:
        raise ValueError("bad TCP checksum offset")
    hdr = cstart + (data[cstart + 12] >> 4) * 4
    if hdr < cstart + 20 or hdr > n:
        raise ValueError("bad TCP header length")
    payload = n - hdr
    if gso_size == 0 or payload == 0:
        raise ValueError("empty GSO packet")
    count = -(-payload // gso_size)
    if count > MAX_SEGMENTS:
        raise ValueError("too many segments")
    ident = struct.unpack_from("!H", data, 4)[0] if v4 else 0
    seq = struct.unpack_from("!L", data, cstart + 4)[0]
    out = []
    for i in range(count):
        s = bytearray(data[:hdr] + data[hdr + i * gso_size:hdr + (i + 1) * gso_size])
        tcp_len = len(s) - cstart
        if v4:
            struct.pack_into("!HH", s, 2, len(s), (ident + i) & 0xFFFF)
            struct.pack_into("!H", s, 10, 0)
            struct.pack_into("!H", s, 10, ~_fold(_sum16(s[:cstart])) & 0xFFFF)
            pseudo = _sum16(s[12:20], 6 + tcp_len)
        else:
            struct.pack_into("!H", s, 4, len(s) - 40)
            pseudo = _sum16(s[8:40], 6 + tcp_len)
        struct.pack_into("!L", s, cstart + 4, (seq + i * gso_size) & 0xFFFFFFFF)
        if i + 1 < count:
            s[cstart + 13] &= ~(_FIN | _PSH)
        if i > 0:
            s[cstart + 13] &= ~_CWR
        struct.pack_into("!H", s, cstart + 16, 0)
        struct.pack_into("!H", s, cstart + 16, ~_fold(_sum16(s[cstart:], pseudo)) & 0xFFFF)
        out.append(bytes(s))
    return out


seal, open, accept, receive, split, runs = (  # noqa: A001
    py_seal, py_open, py_accept, py_receive, py_split, py_runs)
coalesce: Callable[[list[bytes]], list[bytes]] | None = None  # compiled path only
Replay: Callable[[], Any] = ReplayFilter  # the replay window `receive` takes
NATIVE = False
if os.environ.get("WGPY_PURE_PYTHON", "") not in ("1", "true", "yes"):
    try:
        _fastpath: Any = importlib.import_module("wgpy._fastpath")
    except ImportError:
        pass
    else:
        seal, open, accept, receive, split, runs, coalesce = (  # noqa: A001
            _fastpath.seal, _fastpath.open, _fastpath.accept, _fastpath.receive,
            _fastpath.split, _fastpath.runs, _fastpath.coalesce)
        Replay = _fastpath.Replay
        NATIVE = True

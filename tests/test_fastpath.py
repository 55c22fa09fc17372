"""The batch path (wgpy.fastpath): the compiled module against its pure-Python twin, and
both against independent references (cryptography's AEAD, tunoffload's segment model)."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from fastpath_cases import one_batch, py_csum_ok, tcp_packet
from wgpy import fastpath
from wgpy.noise.peer import padding_for

try:
    from wgpy import _fastpath as native  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - CI builds it; the pure path is tested either way
    native = None

needs_native = pytest.mark.skipif(
    native is None and os.environ.get("WGPY_REQUIRE_NATIVE") != "1",
    reason="the compiled batch path is not built")
IMPLS = [fastpath.py_seal] + ([native.seal] if native else [])


def test_the_compiled_module_is_built_where_ci_says_it_must_be() -> None:
    if os.environ.get("WGPY_REQUIRE_NATIVE") == "1":
        assert native is not None, "WGPY_REQUIRE_NATIVE=1 but wgpy._fastpath did not import"
    assert fastpath.NATIVE == (native is not None
                               and os.environ.get("WGPY_PURE_PYTHON") != "1")


@needs_native
def test_the_compiled_window_has_the_constants_of_the_specification() -> None:
    from wgpy import constants  # noqa: PLC0415
    assert native.COUNTER_BITS_TOTAL == constants.COUNTER_BITS_TOTAL
    assert native.COUNTER_WINDOW_SIZE == constants.COUNTER_WINDOW_SIZE


@needs_native
def test_the_compiled_replay_window_follows_the_python_one() -> None:
    """Counters in order, out of order, replayed, far ahead and at the limit, through
    wgpy.replay.ReplayFilter and the compiled Replay: the same verdicts."""
    from wgpy.constants import REJECT_AFTER_MESSAGES  # noqa: PLC0415
    from wgpy.replay import ReplayFilter  # noqa: PLC0415
    rng = random.Random(6479)
    for _ in range(200):
        py, c = ReplayFilter(), native.Replay()
        at = 0
        for _ in range(300):
            r = rng.random()
            at = (at + rng.randint(1, 3) if r < 0.6 else at - rng.randint(0, 9000) if r < 0.8
                  else at + rng.randint(0, 20000) if r < 0.95 else rng.getrandbits(64))
            at = min(max(at, 0), (1 << 64) - 1)  # a header's counter is 64 bits
            limit = REJECT_AFTER_MESSAGES if rng.random() < 0.95 else min(
                max(at + rng.randint(-2, 2), 0), (1 << 64) - 1)
            assert py.validate(at, limit) == c.validate(at, limit), at
            assert py.exhausted(limit) == c.exhausted(limit)
        c.reset()
        py.reset()
        assert py.validate(5, REJECT_AFTER_MESSAGES) == c.validate(5, REJECT_AFTER_MESSAGES)


def test_pure_python_is_chosen_when_asked() -> None:
    code = "import wgpy.fastpath as f; print(f.NATIVE, f.seal is f.py_seal)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "WGPY_PURE_PYTHON": "1"}, check=True).stdout
    assert out.split() == ["False", "True"]


@pytest.mark.parametrize("seal", IMPLS)
def test_seal_is_the_transport_message_of_the_paper(seal) -> None:  # type: ignore[no-untyped-def]
    """Header (type 4, receiver index, counter, little-endian), then the AEAD of the packet
    padded to 16 (never beyond the MTU) under nonce 0^32 || counter: checked against
    cryptography's ChaCha20Poly1305 directly, with the padding of wgpy.noise.peer."""
    key = bytes(range(32))
    packets = [b"", b"x" * 15, b"y" * 16, b"z" * 1419, b"w" * 1420, b"v" * 3000]
    out = seal(key, 0xA1B2C3D4, 7, packets, 1420)
    aead = ChaCha20Poly1305(key)
    for i, (p, m) in enumerate(zip(packets, out)):
        assert m[:16] == struct.pack("<IIQ", 4, 0xA1B2C3D4, 7 + i)
        plain = aead.decrypt(struct.pack("<4xQ", 7 + i), m[16:], None)
        assert plain == p + bytes(padding_for(len(p), 1420))


@pytest.mark.parametrize("impl", ["py", "native"])
def test_open_returns_plaintexts_and_none_for_every_forgery(impl: str) -> None:
    if impl == "native" and native is None:
        pytest.skip("not built")
    mod_open = native.open if impl == "native" else fastpath.py_open
    key = os.urandom(32)
    good = fastpath.py_seal(key, 1, 0, [b"a" * 100, b"", b"b" * 1400], 1420)
    flipped = bytearray(good[0])
    flipped[20] ^= 1
    tag_flip = bytearray(good[2])
    tag_flip[-1] ^= 0x80
    counter_changed = good[1][:8] + struct.pack("<Q", 5) + good[1][16:]
    got = mod_open(key, [good[0], bytes(flipped), good[1], bytes(tag_flip), good[2],
                         counter_changed, good[0][:31], b""])
    assert got[0] == b"a" * 100 + bytes(12)
    assert got[2] == b""
    assert got[4] == b"b" * 1400 + bytes(8)
    assert got[1] is got[3] is got[5] is got[6] is got[7] is None
    assert mod_open(os.urandom(32), good) == [None, None, None]


@pytest.mark.parametrize("impl", ["py", "native"])
def test_split_gives_segments_the_kernel_would(impl: str) -> None:
    """A TSO super-packet is split into MSS segments whose checksums verify, whose payloads
    join back to the original, sequence numbers advancing by the MSS, PSH/FIN on the last
    only, IPv4 IDs counting up."""
    if impl == "native" and native is None:
        pytest.skip("not built")
    split = native.split if impl == "native" else fastpath.py_split
    rng = random.Random(5)
    for v6 in (False, True):
        big = tcp_packet(rng, 5000, v6, options=3, flags=0x19)
        ip_len = 40 if v6 else 20
        read = struct.pack("<BBHHHH", 1, 4 if v6 else 1, ip_len + 32, 1388, ip_len, 16) + big
        segs = split(read)
        assert [len(s) - ip_len - 32 for s in segs] == [1388, 1388, 1388, 836]
        assert b"".join(s[ip_len + 32:] for s in segs) == big[ip_len + 32:]
        seq0 = struct.unpack_from("!L", big, ip_len + 4)[0]
        for i, s in enumerate(segs):
            assert py_csum_ok(s, ip_len)
            assert struct.unpack_from("!L", s, ip_len + 4)[0] == (seq0 + 1388 * i) & 0xFFFFFFFF
            assert s[ip_len + 13] == (0x19 if i == 3 else 0x10)
            if not v6:
                assert struct.unpack_from("!H", s, 4)[0] == (
                    struct.unpack_from("!H", big, 4)[0] + i) & 0xFFFF
    with pytest.raises(ValueError):
        split(b"\x01\x01" + bytes(8) + big)  # header that does not describe the packet


def test_every_function_refuses_bad_arguments_without_crashing() -> None:
    for mod in [fastpath] + ([native] if native else []):
        seal = getattr(mod, "seal")
        with pytest.raises(ValueError):
            seal(b"short", 1, 0, [b""], 1420)
        with pytest.raises(TypeError):
            seal(bytes(32), 1, 0, ["text"], 1420)
        with pytest.raises(ValueError):
            getattr(mod, "split")(b"abc")


@needs_native
def test_differential_fuzz_a_few_thousand_batches() -> None:
    """The CI step runs 10^5 of these on an ASan/UBSan build (bench/fuzz.py)."""
    rng = random.Random(16)
    diffs = [d for _ in range(3000) for d in one_batch(rng, native)]
    assert diffs == []


@needs_native
def test_the_gil_is_released_during_a_batch() -> None:
    """Another Python thread runs while a batch is sealed or opened: with the GIL held
    through the call it could not count at all."""
    import threading  # noqa: PLC0415
    key = bytes(32)
    packets = [bytes(1400)] * 20000
    sealed = native.seal(key, 1, 0, packets, 1420)
    count = [0]
    stop = threading.Event()

    def counter() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=counter)
    thread.start()
    try:
        for call in (lambda: native.seal(key, 1, 0, packets, 1420),
                     lambda: native.open(key, sealed)):
            for _ in range(5):
                before = count[0]
                call()
                if count[0] - before > 100:
                    break
            else:
                raise AssertionError("no other thread ran during five calls")
    finally:
        stop.set()
        thread.join()

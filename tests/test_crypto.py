"""Known-answer tests for wgpy.crypto.

Every vector names its source next to it. The bytes were taken from these published
sources (RFCs, the IRTF draft, and the listed repository files) and are not recomputed here;
where a check compares against another implementation (Python's hashlib / hmac, or
`cryptography` directly) instead of a published vector, the test says so.
"""

from __future__ import annotations

import hashlib
import hmac as py_hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy import crypto
from wgpy.constants import HASH_SIZE, KEY_SIZE, MAC_SIZE, TAG_SIZE, XNONCE_SIZE
from wgpy.crypto import CryptoError, InvalidTag

h = bytes.fromhex


def _flip(data: bytes, index: int, bit: int = 0x01) -> bytes:
    b = bytearray(data)
    b[index] ^= bit
    return bytes(b)


# =============================================================================================
# X25519 -- RFC 7748
# =============================================================================================

# RFC 7748 section 5.2, "Test Vectors" (the two scalar / u-coordinate pairs).
# https://www.rfc-editor.org/rfc/rfc7748#section-5.2
# The scalars are NOT clamped and the second u-coordinate has its top bit set: X25519 must
# clamp the scalar (decodeScalar25519) and mask bit 255 of u (decodeUCoordinate) itself.
RFC7748_5_2 = [
    (
        h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),  # scalar
        h("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),  # u in
        h("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),  # u out
    ),
    (
        h("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
        h("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"),
        h("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
    ),
]

# RFC 7748 section 5.2, iterated test: k = u = 9, then k, u = X25519(k, u), k.
RFC7748_ITER_1 = h("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
RFC7748_ITER_1000 = h("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")

# RFC 7748 section 6.1, "Curve25519" Diffie-Hellman example.
# https://www.rfc-editor.org/rfc/rfc7748#section-6.1
ALICE_PRIVATE = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED_SECRET = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


@pytest.mark.parametrize("scalar, u, expected", RFC7748_5_2)
def test_dh_rfc7748_section_5_2(scalar: bytes, u: bytes, expected: bytes) -> None:
    # dh takes the raw (unclamped) private bytes; cryptography clamps internally.
    assert crypto.dh(scalar, u) == expected
    # Clamping first must not change the result (clamping is idempotent inside X25519).
    assert crypto.dh(crypto.clamp(scalar), u) == expected


def test_dh_rfc7748_section_5_2_iterated() -> None:
    k = u = (9).to_bytes(32, "little")
    for i in range(1, 1001):
        k, u = crypto.dh(k, u), k
        if i == 1:
            assert k == RFC7748_ITER_1
    assert k == RFC7748_ITER_1000


def test_public_key_rfc7748_section_6_1() -> None:
    assert crypto.public_key(ALICE_PRIVATE) == ALICE_PUBLIC
    assert crypto.public_key(BOB_PRIVATE) == BOB_PUBLIC
    # The stored (clamped) form of the same keys has the same public key.
    assert crypto.public_key(crypto.clamp(ALICE_PRIVATE)) == ALICE_PUBLIC
    assert crypto.public_key(crypto.clamp(BOB_PRIVATE)) == BOB_PUBLIC


def test_dh_rfc7748_section_6_1() -> None:
    assert crypto.dh(ALICE_PRIVATE, BOB_PUBLIC) == SHARED_SECRET
    assert crypto.dh(BOB_PRIVATE, ALICE_PUBLIC) == SHARED_SECRET
    assert crypto.dh(crypto.clamp(ALICE_PRIVATE), BOB_PUBLIC) == SHARED_SECRET
    assert crypto.dh(crypto.clamp(BOB_PRIVATE), ALICE_PUBLIC) == SHARED_SECRET


# --- clamp: RFC 7748 section 5, decodeScalar25519:
#     k_list[0] &= 248; k_list[31] &= 127; k_list[31] |= 64

def test_clamp_extremes() -> None:
    assert crypto.clamp(b"\xff" * 32) == b"\xf8" + b"\xff" * 30 + b"\x7f"
    assert crypto.clamp(bytes(32)) == bytes(31) + b"\x40"


def test_clamp_rfc7748_section_6_1_keys() -> None:
    # Alice's key is not clamped: 0x77 & 248 = 0x70 and (0x2a & 127) | 64 = 0x6a.
    assert crypto.clamp(ALICE_PRIVATE) == h(
        "70076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c6a")
    # Bob's: 0x5d & 248 = 0x58 and (0xeb & 127) | 64 = 0x6b.
    assert crypto.clamp(BOB_PRIVATE) == h(
        "58ab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e06b")
    # Only the first and last bytes are touched.
    assert crypto.clamp(ALICE_PRIVATE)[1:31] == ALICE_PRIVATE[1:31]


@pytest.mark.parametrize("scalar", [s for s, _, _ in RFC7748_5_2] + [ALICE_PRIVATE, BOB_PRIVATE])
def test_clamp_idempotent_and_well_formed(scalar: bytes) -> None:
    c = crypto.clamp(scalar)
    assert len(c) == KEY_SIZE
    assert crypto.clamp(c) == c
    assert c[0] & 7 == 0
    assert c[31] & 0x80 == 0
    assert c[31] & 0x40 == 0x40


def test_generate_private_key_is_clamped() -> None:
    for _ in range(8):
        k = crypto.generate_private_key()
        assert len(k) == KEY_SIZE
        assert crypto.clamp(k) == k
        assert len(crypto.public_key(k)) == KEY_SIZE


# --- Low-order points. The list is libsodium's `has_small_order` blacklist,
# jedisct1/libsodium src/libsodium/crypto_scalarmult/curve25519/ref10/x25519_ref10.c
# (also https://cr.yp.to/ecdh.html#validate). libsodium compares with bit 255 masked, so
# the same seven encodings with the top bit set are low-order too; both forms must make
# every private key produce the all-zero shared secret, which dh must refuse.
LOW_ORDER_POINTS = [
    h("0000000000000000000000000000000000000000000000000000000000000000"),  # 0 (order 4)
    h("0100000000000000000000000000000000000000000000000000000000000000"),  # 1 (order 1)
    h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),  # order 8
    h("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),  # order 8
    h("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p-1 (order 2)
    h("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p (=0)
    h("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p+1 (=1)
]
LOW_ORDER_POINTS_HIGH_BIT = [p[:31] + bytes([p[31] | 0x80]) for p in LOW_ORDER_POINTS]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS + LOW_ORDER_POINTS_HIGH_BIT,
                         ids=[f"lo{i}" for i in range(7)] + [f"lo{i}-bit255" for i in range(7)])
@pytest.mark.parametrize("private", [ALICE_PRIVATE, BOB_PRIVATE, RFC7748_5_2[0][0]],
                         ids=["alice", "bob", "rfc5.2"])
def test_dh_rejects_low_order_points(private: bytes, point: bytes) -> None:
    with pytest.raises(CryptoError):
        crypto.dh(private, point)


def test_dh_rejects_low_order_points_with_random_key() -> None:
    k = crypto.generate_private_key()
    for point in LOW_ORDER_POINTS:
        with pytest.raises(CryptoError):
            crypto.dh(k, point)


# =============================================================================================
# ChaCha20-Poly1305 -- RFC 8439
# (RFC text read from floodyberry/poly1305-donna rfc8439.txt)
# =============================================================================================

# RFC 8439 section 2.8.2, "Example and Test Vector for AEAD_CHACHA20_POLY1305"
# (also Wycheproof chacha20_poly1305_test.json tcId 1, "RFC 7539").
# Its nonce is the 32-bit constant 07000000 || IV 4041424344454647 -- not WireGuard's
# 4 zero bytes || little-endian counter -- so it cannot go through aead_encrypt; it is
# checked against `cryptography` directly, the primitive aead_encrypt wraps.
RFC8439_2_8_2_KEY = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
RFC8439_2_8_2_NONCE = h("07000000" "4041424344454647")
RFC8439_2_8_2_AAD = h("50515253c0c1c2c3c4c5c6c7")
RFC8439_2_8_2_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
RFC8439_2_8_2_CIPHERTEXT = h(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)
RFC8439_2_8_2_TAG = h("1ae10b594f09e26a7e902ecbd0600691")

# RFC 8439 Appendix A.5, "ChaCha20-Poly1305 AEAD Decryption". Its nonce
# 00000000 0102030405060708 IS of WireGuard's form: 4 zero bytes || LE(0x0807060504030201).
RFC8439_A5_KEY = h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
RFC8439_A5_NONCE = h("000000000102030405060708")
RFC8439_A5_COUNTER = 0x0807060504030201
RFC8439_A5_AAD = h("f33388860000000000004e91")
RFC8439_A5_CIPHERTEXT = h(
    "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
    "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
    "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
    "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
    "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
    "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
    "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
    "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
    "a6ad5cb4022b02709b"
)
RFC8439_A5_TAG = h("eead9d67890cbb22392336fea1851f38")
RFC8439_A5_PLAINTEXT = (
    b"Internet-Drafts are draft documents valid for a maximum of six months and may be "
    b"updated, replaced, or obsoleted by other documents at any time. It is inappropriate "
    b"to use Internet-Drafts as reference material or to cite them other than as "
    b"/\xe2\x80\x9cwork in progress./\xe2\x80\x9d"
)
# The same plaintext as the RFC's hex dump (offsets 000-256), to rule out a transcription slip.
RFC8439_A5_PLAINTEXT_HEX = h(
    "496e7465726e65742d4472616674732061726520647261667420646f63756d65"
    "6e74732076616c696420666f722061206d6178696d756d206f6620736978206d"
    "6f6e74687320616e64206d617920626520757064617465642c207265706c6163"
    "65642c206f72206f62736f6c65746564206279206f7468657220646f63756d65"
    "6e747320617420616e792074696d652e20497420697320696e617070726f7072"
    "6961746520746f2075736520496e7465726e65742d4472616674732061732072"
    "65666572656e6365206d6174657269616c206f7220746f206369746520746865"
    "6d206f74686572207468616e206173202fe2809c776f726b20696e2070726f67"
    "726573732e2fe2809d"
)


def test_rfc8439_2_8_2_with_cryptography() -> None:
    assert len(RFC8439_2_8_2_PLAINTEXT) == 114  # the RFC's dump ends at offset 112 + 2
    aead = ChaCha20Poly1305(RFC8439_2_8_2_KEY)
    sealed = aead.encrypt(RFC8439_2_8_2_NONCE, RFC8439_2_8_2_PLAINTEXT, RFC8439_2_8_2_AAD)
    assert sealed == RFC8439_2_8_2_CIPHERTEXT + RFC8439_2_8_2_TAG
    assert aead.decrypt(RFC8439_2_8_2_NONCE, sealed, RFC8439_2_8_2_AAD) == \
        RFC8439_2_8_2_PLAINTEXT


def test_rfc8439_2_8_2_nonce_is_not_wireguard_form() -> None:
    # No counter gives 07000000 in the first four bytes, which is why 2.8.2 is checked above
    # through `cryptography` rather than through aead_encrypt.
    assert RFC8439_2_8_2_NONCE[:4] != b"\0" * 4


@pytest.mark.parametrize("counter", [0, 1, 2, 255, 256, 0x0807060504030201, 2**63, 2**64 - 1])
def test_aead_nonce_layout(counter: int) -> None:
    nonce = crypto.aead_nonce(counter)
    assert nonce == b"\0" * 4 + counter.to_bytes(8, "little")
    assert len(nonce) == 12


def test_aead_nonce_rfc8439_a5() -> None:
    assert crypto.aead_nonce(RFC8439_A5_COUNTER) == RFC8439_A5_NONCE


def test_aead_encrypt_rfc8439_a5() -> None:
    assert RFC8439_A5_PLAINTEXT == RFC8439_A5_PLAINTEXT_HEX
    assert len(RFC8439_A5_PLAINTEXT) == 265  # the RFC's dump ends at offset 256 + 9
    sealed = crypto.aead_encrypt(RFC8439_A5_KEY, RFC8439_A5_COUNTER, RFC8439_A5_PLAINTEXT,
                                 RFC8439_A5_AAD)
    assert sealed == RFC8439_A5_CIPHERTEXT + RFC8439_A5_TAG
    assert len(sealed) == len(RFC8439_A5_PLAINTEXT) + TAG_SIZE


def test_aead_decrypt_rfc8439_a5() -> None:
    assert crypto.aead_decrypt(RFC8439_A5_KEY, RFC8439_A5_COUNTER,
                               RFC8439_A5_CIPHERTEXT + RFC8439_A5_TAG,
                               RFC8439_A5_AAD) == RFC8439_A5_PLAINTEXT


def test_aead_decrypt_rfc8439_a5_rejects_tampering() -> None:
    sealed = RFC8439_A5_CIPHERTEXT + RFC8439_A5_TAG
    key, ctr, ad = RFC8439_A5_KEY, RFC8439_A5_COUNTER, RFC8439_A5_AAD
    with pytest.raises(InvalidTag):  # flipped ciphertext bit
        crypto.aead_decrypt(key, ctr, _flip(sealed, 0), ad)
    with pytest.raises(InvalidTag):  # flipped tag bit
        crypto.aead_decrypt(key, ctr, _flip(sealed, len(sealed) - 1, 0x80), ad)
    with pytest.raises(InvalidTag):  # other associated data
        crypto.aead_decrypt(key, ctr, sealed, _flip(ad, 0))
    with pytest.raises(InvalidTag):  # other counter
        crypto.aead_decrypt(key, ctr + 1, sealed, ad)
    with pytest.raises(InvalidTag):  # other key
        crypto.aead_decrypt(_flip(key, 31), ctr, sealed, ad)
    with pytest.raises(InvalidTag):  # truncated
        crypto.aead_decrypt(key, ctr, sealed[:-1], ad)


@pytest.mark.parametrize("plaintext", [b"", b"\x00", b"x" * 15, b"y" * 16, bytes(range(256)) * 6])
@pytest.mark.parametrize("counter", [0, 1, 2**64 - 1])
def test_aead_round_trip(plaintext: bytes, counter: int) -> None:
    key = bytes(range(32))
    ad = b"associated"
    sealed = crypto.aead_encrypt(key, counter, plaintext, ad)
    assert len(sealed) == len(plaintext) + TAG_SIZE
    # Same as cryptography with the WireGuard nonce (comparison, not a published vector).
    assert sealed == ChaCha20Poly1305(key).encrypt(
        b"\0" * 4 + counter.to_bytes(8, "little"), plaintext, ad)
    assert crypto.aead_decrypt(key, counter, sealed, ad) == plaintext
    with pytest.raises(InvalidTag):
        crypto.aead_decrypt(key, counter, _flip(sealed, len(sealed) // 2), ad)
    with pytest.raises(InvalidTag):
        crypto.aead_decrypt(key, counter, sealed, ad + b"!")


def test_aead_empty_plaintext_is_authenticated() -> None:
    # A WireGuard keepalive: the ciphertext is only the tag, and it still authenticates.
    key = bytes(32)
    sealed = crypto.aead_encrypt(key, 7, b"", b"")
    assert len(sealed) == TAG_SIZE
    assert crypto.aead_decrypt(key, 7, sealed, b"") == b""
    with pytest.raises(InvalidTag):
        crypto.aead_decrypt(key, 8, sealed, b"")


# =============================================================================================
# XChaCha20-Poly1305 -- draft-irtf-cfrg-xchacha-03 Appendix A.3.1
# https://datatracker.ietf.org/doc/html/draft-irtf-cfrg-xchacha-03#appendix-A.3.1
# =============================================================================================

XCHACHA_KEY = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
XCHACHA_NONCE = h("404142434445464748494a4b4c4d4e4f5051525354555657")
XCHACHA_AAD = h("50515253c0c1c2c3c4c5c6c7")
XCHACHA_PLAINTEXT = RFC8439_2_8_2_PLAINTEXT  # the same "Ladies and Gentlemen" text
XCHACHA_CIPHERTEXT = h(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
)
XCHACHA_TAG = h("c0875924c1c7987947deafd8780acf49")


def test_xaead_encrypt_draft_xchacha_a_3_1() -> None:
    assert len(XCHACHA_NONCE) == XNONCE_SIZE
    sealed = crypto.xaead_encrypt(XCHACHA_KEY, XCHACHA_NONCE, XCHACHA_PLAINTEXT, XCHACHA_AAD)
    assert sealed == XCHACHA_CIPHERTEXT + XCHACHA_TAG


def test_xaead_decrypt_draft_xchacha_a_3_1() -> None:
    assert crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, XCHACHA_CIPHERTEXT + XCHACHA_TAG,
                                XCHACHA_AAD) == XCHACHA_PLAINTEXT


def test_xaead_decrypt_rejects_tampering() -> None:
    sealed = XCHACHA_CIPHERTEXT + XCHACHA_TAG
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, _flip(sealed, 3), XCHACHA_AAD)
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, _flip(sealed, len(sealed) - 1),
                             XCHACHA_AAD)
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, sealed, XCHACHA_AAD + b"\0")
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(XCHACHA_KEY, _flip(XCHACHA_NONCE, 23), sealed, XCHACHA_AAD)
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(_flip(XCHACHA_KEY, 0), XCHACHA_NONCE, sealed, XCHACHA_AAD)


def test_xaead_round_trip_cookie_sized() -> None:
    # The cookie reply: a 16-byte cookie sealed under a 24-byte random nonce.
    key, nonce, cookie, ad = bytes(range(32)), bytes(range(24)), bytes(range(16)), b"mac1" * 4
    sealed = crypto.xaead_encrypt(key, nonce, cookie, ad)
    assert len(sealed) == 16 + TAG_SIZE
    assert crypto.xaead_decrypt(key, nonce, sealed, ad) == cookie


# =============================================================================================
# BLAKE2s -- HASH and MAC
# =============================================================================================

def test_hash_rfc7693_appendix_b_abc() -> None:
    # RFC 7693 Appendix B, "BLAKE2s-256 Hash Computation": BLAKE2s-256("abc").
    # https://www.rfc-editor.org/rfc/rfc7693#appendix-B
    assert crypto.hash(b"abc") == h(
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")


def test_hash_blake2_reference_kat_empty() -> None:
    # BLAKE2 reference package BLAKE2/BLAKE2 testvectors/blake2-kat.h, blake2s_kat[0]
    # (unkeyed, empty input), as reproduced in libgcrypt tests/blake2s.h.
    assert crypto.hash(b"") == h(
        "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9")
    assert len(crypto.hash(b"")) == HASH_SIZE


def _fib_key() -> bytes:
    # torvalds/linux lib/crypto/blake2s-selftest.c: key[0] = key[1] = 1;
    # key[i] = key[i - 2] + key[i - 1] (u8 arithmetic) for 32 bytes.
    key = [1, 1]
    while len(key) < 32:
        key.append((key[-2] + key[-1]) & 0xFF)
    return bytes(key)


# torvalds/linux lib/crypto/blake2s-selftest.c, blake2s_testvecs[i]: the output of
# blake2s(buf[0:i], key=key[32 - keylen:], outlen) with outlen = 1 + i % 32 and
# keylen = (13 * i) % 33, buf[j] = j. The entries with outlen == 16 (i = 15 + 32n) are keyed
# BLAKE2s with a 16-byte digest -- exactly the paper's MAC -- so they test `mac` itself.
KERNEL_BLAKE2S_MAC16 = {
    15: h("4fe0f95212da84b7abaeb0a6472ac7f5"),
    47: h("a3504da51d0368e95778d604f1c394d8"),
    79: h("b1dec9f5dbf32f4cd6417d39183ec7c3"),
    111: h("08975b80aec41d5077df1fd024f017c0"),
    143: h("798ebc9e20b9194b6380f316af39bd92"),
    175: h("b0cf2c4c5e5b4f2a23255847e5310670"),
    207: h("afb8bc630f184de27add4644c8240ab7"),
    239: h("e4717b94dba0d2ff9bebad8e958ac5ed"),
}


@pytest.mark.parametrize("i", sorted(KERNEL_BLAKE2S_MAC16))
def test_mac_kernel_blake2s_selftest(i: int) -> None:
    assert 1 + i % 32 == MAC_SIZE
    keylen = (13 * i) % 33
    assert keylen > 0  # every one of these is keyed
    key = _fib_key()[32 - keylen:]
    assert crypto.mac(key, bytes(range(i))) == KERNEL_BLAKE2S_MAC16[i]


def _rfc7693_selftest_seq(length: int, seed: int) -> bytes:
    # RFC 7693 Appendix E, selftest_seq(): a Fibonacci generator, the top byte of each word.
    a = (0xDEAD4BAD * seed) & 0xFFFFFFFF
    b = 1
    out = bytearray()
    for _ in range(length):
        t = (a + b) & 0xFFFFFFFF
        a, b = b, t
        out.append(t >> 24)
    return bytes(out)


def test_mac_and_hash_rfc7693_appendix_e_selftest() -> None:
    # RFC 7693 Appendix E, blake2s_selftest(): a BLAKE2s-256 "grand hash" over unkeyed and
    # keyed digests for outlen in {16, 20, 28, 32} and inlen in {0, 3, 64, 65, 255, 1024},
    # with a key of outlen bytes. The keyed outlen-16 digests go through `mac` and the
    # unkeyed outlen-32 ones through `hash`; the other lengths (which wgpy does not use)
    # come from hashlib.blake2s.
    blake2s_res = h("6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe")
    grand = hashlib.blake2s(digest_size=32)
    for outlen in (16, 20, 28, 32):
        for inlen in (0, 3, 64, 65, 255, 1024):
            data = _rfc7693_selftest_seq(inlen, inlen)
            if outlen == HASH_SIZE:
                md = crypto.hash(data)
            else:
                md = hashlib.blake2s(data, digest_size=outlen).digest()
            grand.update(md)
            key = _rfc7693_selftest_seq(outlen, outlen)
            if outlen == MAC_SIZE:
                md = crypto.mac(key, data)
            else:
                md = hashlib.blake2s(data, key=key, digest_size=outlen).digest()
            grand.update(md)
    assert grand.digest() == blake2s_res


@pytest.mark.parametrize("keylen", [1, 16, 32])
@pytest.mark.parametrize("datalen", [0, 1, 63, 64, 65, 148])
def test_mac_matches_hashlib(keylen: int, datalen: int) -> None:
    # Comparison against hashlib.blake2s(key=..., digest_size=16), not a published vector.
    key = bytes(range(100, 100 + keylen))
    data = bytes(range(datalen))
    out = crypto.mac(key, data)
    assert len(out) == MAC_SIZE
    assert out == hashlib.blake2s(data, key=key, digest_size=MAC_SIZE).digest()
    # A 16-byte keyed BLAKE2s is a different function from a truncated 32-byte one.
    assert out != hashlib.blake2s(data, key=key).digest()[:MAC_SIZE]


# =============================================================================================
# HMAC-BLAKE2s and the KDFs
# =============================================================================================

# torvalds/linux lib/crypto/blake2s-selftest.c, blake2s_hmac_testvecs[] (generated with
# OpenSSL HMAC(EVP_blake2s256(), ...)), with key = the Fibonacci key above, buf[j] = j.
KERNEL_HMAC_KEY32_DATA256 = h(
    "cee1576982dcbf43ad564c70ed681696cfa473e8e8fc3279080a7582da3f0511")
KERNEL_HMAC_KEY256_DATA32 = h(
    "772f0c7141f44b2bb3c6b6f960dee4523866e8bf9b96c49f60d9243799d6ec31")


def test_hmac_kernel_selftest_32_byte_key() -> None:
    # blake2s_hmac_testvecs[0]: HMAC(key = fib key (32 bytes), data = buf[0:256]).
    assert crypto.hmac(_fib_key(), bytes(range(256))) == KERNEL_HMAC_KEY32_DATA256


def test_hmac_kernel_selftest_long_key() -> None:
    # blake2s_hmac_testvecs[1]: HMAC(key = buf[0:256], data = fib key).
    assert crypto.hmac(bytes(range(256)), _fib_key()) == KERNEL_HMAC_KEY256_DATA32


@pytest.mark.parametrize("keylen", [0, 1, 16, 31, 32, 33, 63, 64, 65, 256])
@pytest.mark.parametrize("datalen", [0, 1, 32, 63, 64, 65, 200])
def test_hmac_matches_python_hmac(keylen: int, datalen: int) -> None:
    # Comparison against hmac.new(key, data, hashlib.blake2s), not a published vector.
    key = bytes((7 * i + 3) & 0xFF for i in range(keylen))
    data = bytes((5 * i + 1) & 0xFF for i in range(datalen))
    assert crypto.hmac(key, data) == py_hmac.new(key, data, hashlib.blake2s).digest()


# WireGuard/wireguard-go device/kdf_test.go, TestKDF: (key, input, t0, t1, t2), where
# wireguard-go's KDF3 outputs t0, t1, t2 are the paper's tau1, tau2, tau3 -- i.e. the
# values wgpy's kdf1/kdf2/kdf3 return (the PRK is not exposed).
WIREGUARD_GO_KDF = [
    (
        h("746573742d6b6579"),  # "test-key"
        h("746573742d696e707574"),  # "test-input"
        h("6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633"),
        h("df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a"),
        h("fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24"),
    ),
    (
        h("776972656775617264"),  # "wireguard"
        h("776972656775617264"),
        h("491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8"),
        h("1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f"),
        h("31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160"),
    ),
    (
        b"",
        b"",
        h("8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0"),
        h("58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e"),
        h("0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e"),
    ),
]
KDF_IDS = ["test-key", "wireguard", "empty"]


@pytest.mark.parametrize("key, data, t0, t1, t2", WIREGUARD_GO_KDF, ids=KDF_IDS)
def test_kdf3_wireguard_go(key: bytes, data: bytes, t0: bytes, t1: bytes, t2: bytes) -> None:
    assert crypto.kdf3(key, data) == (t0, t1, t2)


@pytest.mark.parametrize("key, data, t0, t1, t2", WIREGUARD_GO_KDF, ids=KDF_IDS)
def test_kdf2_wireguard_go(key: bytes, data: bytes, t0: bytes, t1: bytes, t2: bytes) -> None:
    assert crypto.kdf2(key, data) == (t0, t1)


@pytest.mark.parametrize("key, data, t0, t1, t2", WIREGUARD_GO_KDF, ids=KDF_IDS)
def test_kdf1_wireguard_go(key: bytes, data: bytes, t0: bytes, t1: bytes, t2: bytes) -> None:
    assert crypto.kdf1(key, data) == t0


@pytest.mark.parametrize("key, data, t0, t1, t2", WIREGUARD_GO_KDF, ids=KDF_IDS)
def test_kdf_is_hkdf_over_python_hmac(key: bytes, data: bytes, t0: bytes, t1: bytes,
                                      t2: bytes) -> None:
    # The same chain rebuilt from Python's hmac module (WireGuard paper section 5.4 / HKDF).
    def mac(k: bytes, m: bytes) -> bytes:
        return py_hmac.new(k, m, hashlib.blake2s).digest()

    prk = mac(key, data)
    o1 = mac(prk, b"\x01")
    o2 = mac(prk, o1 + b"\x02")
    o3 = mac(prk, o2 + b"\x03")
    assert (o1, o2, o3) == (t0, t1, t2)


def test_no_private_key_is_cached() -> None:
    """Issue 9: ephemeral private keys are not kept after use. DH works on raw bytes, so the
    module holds no cache of keys (it once kept 1,024 loaded keys, ephemerals included)."""
    caches = [name for name in dir(crypto) if hasattr(getattr(crypto, name), "cache_info")]
    assert caches == []
    e = crypto.generate_private_key()
    s = crypto.generate_private_key()
    assert crypto.dh(e, crypto.public_key(s)) == crypto.dh(s, crypto.public_key(e))

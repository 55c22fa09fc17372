"""The primitives of the WireGuard paper (section 5.4), with the paper's names.

- DH: X25519 (RFC 7748) from libsodium through PyNaCl, on raw 32-byte strings: no key
  objects are built, so no private key (static or ephemeral) is kept anywhere but where
  the protocol keeps it, and a DH costs one scalar multiplication (loading a key into a
  `cryptography` object cost a second one, its public key). Private keys are clamped; a
  shared secret of all zeros (the peer sent a low-order point) is rejected by raising
  `CryptoError`, which the handshake turns into a dropped message.
- AEAD: ChaCha20-Poly1305 (RFC 8439) with the nonce 32 zero bits || 64-bit little-endian
  counter.
- XAEAD: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) for cookie replies. `cryptography`
  has no XChaCha, so this comes from libsodium through PyNaCl (HChaCha20 included).
- HASH = BLAKE2s-256, MAC = keyed BLAKE2s-128, HMAC = HMAC-BLAKE2s-256 (RFC 2104 built from
  two BLAKE2s calls, faster than `hmac.new`), KDF1/2/3 = HKDF on HMAC-BLAKE2s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as _hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError as _NaclCryptoError

from wgpy.constants import HASH_SIZE, KEY_SIZE, MAC_SIZE

__all__ = [
    "CryptoError", "InvalidTag", "ZERO_KEY",
    "clamp", "generate_private_key", "public_key", "dh",
    "aead_nonce", "aead_encrypt", "aead_decrypt", "xaead_encrypt", "xaead_decrypt",
    "hash", "mac", "hmac", "kdf1", "kdf2", "kdf3",
]

ZERO_KEY = bytes(KEY_SIZE)
_BLOCK = 64  # BLAKE2s block size, the HMAC pad length
_IPAD = bytes(b ^ 0x36 for b in range(256))  # translation tables: byte -> byte ^ pad
_OPAD = bytes(b ^ 0x5C for b in range(256))
NONCE = _NONCE = struct.Struct("<4xQ")  # AEAD nonce: 32 zero bits, 64-bit LE counter


class CryptoError(Exception):
    """A primitive refused its input (low-order point, bad tag, bad key length)."""


# --- DH ------------------------------------------------------------------------------------------

def clamp(private: bytes) -> bytes:
    """RFC 7748 section 5 clamping, as `wg` and wireguard-go apply to stored private keys."""
    b = bytearray(private)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def generate_private_key() -> bytes:
    return clamp(os.urandom(KEY_SIZE))


def b64(key: bytes) -> str:
    """A key in the base64 form `wg` prints and reads (and wgpy's logs shorten)."""
    return base64.b64encode(key).decode()


def public_key(private: bytes) -> bytes:
    return crypto_scalarmult_base(private)


def dh(private: bytes, public: bytes) -> bytes:
    """DH(private, public); raises CryptoError on an all-zero result (a low-order point),
    checked in constant time."""
    try:
        shared = crypto_scalarmult(private, public)
    except (RuntimeError, ValueError, TypeError) as exc:  # libsodium refuses a zero result
        raise CryptoError("low-order point") from exc
    if _hmac.compare_digest(shared, ZERO_KEY):
        raise CryptoError("low-order point")
    return shared


# --- AEAD ----------------------------------------------------------------------------------------

def aead_nonce(counter: int) -> bytes:
    """32 zero bits followed by the 64-bit little-endian counter."""
    return _NONCE.pack(counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_NONCE.pack(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    """Raises InvalidTag when the ciphertext does not authenticate."""
    return ChaCha20Poly1305(key).decrypt(_NONCE.pack(counter), ciphertext, ad)


def xaead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)


def xaead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """Raises InvalidTag when the ciphertext does not authenticate."""
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key)
    except _NaclCryptoError as exc:
        raise InvalidTag() from exc


# --- Hashes --------------------------------------------------------------------------------------

def hash(data: bytes) -> bytes:  # noqa: A001 - the paper's name
    return hashlib.blake2s(data).digest()


def mac(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2s with a 16-byte digest (the paper's MAC)."""
    return hashlib.blake2s(data, key=key, digest_size=MAC_SIZE).digest()


def hmac(key: bytes, data: bytes) -> bytes:
    """HMAC-BLAKE2s-256 (RFC 2104)."""
    if len(key) > _BLOCK:
        key = hashlib.blake2s(key).digest()
    k = key.ljust(_BLOCK, b"\0")
    inner = hashlib.blake2s(k.translate(_IPAD) + data).digest()
    return hashlib.blake2s(k.translate(_OPAD) + inner).digest()


def kdf1(key: bytes, data: bytes) -> bytes:
    t0 = hmac(key, data)
    return hmac(t0, b"\x01")


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    t0 = hmac(key, data)
    t1 = hmac(t0, b"\x01")
    return t1, hmac(t0, t1 + b"\x02")


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    t0 = hmac(key, data)
    t1 = hmac(t0, b"\x01")
    t2 = hmac(t0, t1 + b"\x02")
    return t1, t2, hmac(t0, t2 + b"\x03")


assert len(hash(b"")) == HASH_SIZE

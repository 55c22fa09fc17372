"""Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, the WireGuard handshake (paper section 5.4).

    IKpsk2:
      <- s
      ...
      -> e, es, s, ss, {t}
      <- e, ee, se, psk, {}

Two layers live here:

- the Noise steps as pure functions over the symmetric state (chaining key `ck`, hash `h`):
  `initialize`, `write_initiation` / `read_initiation`, `write_response` / `read_response`,
  `split`. They take the prologue and payloads as parameters, so the same code reproduces the
  generic Noise test vector (snow's cacophony.txt) and WireGuard, where the prologue is
  IDENTIFIER, payload 1 a TAI64N timestamp and payload 2 empty;
- `Handshake`, the per-peer state machine of the kernel's noise.c with its states, the
  replay and flood guards on initiations, and the creation of keypair material.

Message framing (indices, MACs) is added by the caller (`wgpy.noise.peer`); the MACs are
`wgpy.noise.cookie`'s business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from hmac import compare_digest

from wgpy import crypto
from wgpy.constants import CONSTRUCTION, IDENTIFIER, INITIATION_MIN_INTERVAL, KEY_SIZE

__all__ = [
    "StaticIdentity", "HandshakeState", "Handshake", "HandshakeError",
    "initialize", "write_initiation", "read_initiation", "write_response", "read_response",
    "split",
]

_C0 = crypto.hash(CONSTRUCTION)  # initial chaining key: HASH(CONSTRUCTION)
_EMPTY = b""


class HandshakeError(Exception):
    """A handshake message failed to authenticate or was refused (replay, flood, state)."""


# --- The Noise steps -----------------------------------------------------------------------------

def initialize(prologue: bytes, responder_static: bytes) -> tuple[bytes, bytes]:
    """ck = HASH(CONSTRUCTION); h = HASH(ck || prologue); then the pre-message `<- s`."""
    ck = _C0
    h = crypto.hash(ck + prologue)
    h = crypto.hash(h + responder_static)  # <- s
    return ck, h


def _mix_ephemeral(ck: bytes, h: bytes, e_pub: bytes) -> tuple[bytes, bytes]:
    # e: in PSK mode the ephemeral is mixed into the chaining key as well as the hash.
    return crypto.kdf1(ck, e_pub), crypto.hash(h + e_pub)


def _encrypt_and_hash(key: bytes, h: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    ct = crypto.aead_encrypt(key, 0, plaintext, h)
    return ct, crypto.hash(h + ct)


def _decrypt_and_hash(key: bytes, h: bytes, ciphertext: bytes) -> tuple[bytes, bytes]:
    try:
        pt = crypto.aead_decrypt(key, 0, ciphertext, h)
    except crypto.InvalidTag as exc:
        raise HandshakeError("message does not authenticate") from exc
    return pt, crypto.hash(h + ciphertext)


def _is_zero(secret: bytes) -> bool:
    """An all-zero DH result (a low-order public key), checked in constant time: the time a
    comparison with `==` takes tells how many leading bytes of the secret are zero."""
    return compare_digest(secret, crypto.ZERO_KEY)


def _dh(private: bytes, public: bytes) -> bytes:
    try:
        return crypto.dh(private, public)
    except crypto.CryptoError as exc:
        raise HandshakeError("low-order point") from exc


def write_initiation(ck: bytes, h: bytes, e_priv: bytes, s_pub: bytes, rs: bytes,
                     ss: bytes, payload: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """-> e, es, s, ss, {payload}; `ss` is the precomputed DH(s, rs).

    Returns (ck, h, e_pub, encrypted static, encrypted payload).
    """
    e_pub = crypto.public_key(e_priv)
    ck, h = _mix_ephemeral(ck, h, e_pub)  # e
    ck, key = crypto.kdf2(ck, _dh(e_priv, rs))  # es
    static_ct, h = _encrypt_and_hash(key, h, s_pub)  # s
    if _is_zero(ss):
        raise HandshakeError("peer's static key is a low-order point")
    ck, key = crypto.kdf2(ck, ss)  # ss
    payload_ct, h = _encrypt_and_hash(key, h, payload)  # {t}
    return ck, h, e_pub, static_ct, payload_ct


def read_initiation_static(ck: bytes, h: bytes, s_priv: bytes, e_pub: bytes,
                           static_ct: bytes) -> tuple[bytes, bytes, bytes]:
    """The first half of reading an initiation: e, es, s. Returns (ck, h, remote static).

    The responder stops here to look up which peer the static key belongs to.
    """
    ck, h = _mix_ephemeral(ck, h, e_pub)  # e
    ck, key = crypto.kdf2(ck, _dh(s_priv, e_pub))  # es
    rs, h = _decrypt_and_hash(key, h, static_ct)  # s
    return ck, h, rs


def read_initiation_payload(ck: bytes, h: bytes, ss: bytes,
                            payload_ct: bytes) -> tuple[bytes, bytes, bytes]:
    """The second half: ss, {t}. Returns (ck, h, payload)."""
    if _is_zero(ss):
        raise HandshakeError("peer's static key is a low-order point")
    ck, key = crypto.kdf2(ck, ss)  # ss
    payload, h = _decrypt_and_hash(key, h, payload_ct)  # {t}
    return ck, h, payload


def read_initiation(ck: bytes, h: bytes, s_priv: bytes, e_pub: bytes, static_ct: bytes,
                    payload_ct: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Both halves at once; returns (ck, h, remote static, payload)."""
    ck, h, rs = read_initiation_static(ck, h, s_priv, e_pub, static_ct)
    ck, h, payload = read_initiation_payload(ck, h, _dh(s_priv, rs), payload_ct)
    return ck, h, rs, payload


def write_response(ck: bytes, h: bytes, e_priv: bytes, re: bytes, rs: bytes, psk: bytes,
                   payload: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """<- e, ee, se, psk, {payload}. Returns (ck, h, e_pub, encrypted payload)."""
    e_pub = crypto.public_key(e_priv)
    ck, h = _mix_ephemeral(ck, h, e_pub)  # e
    ck = crypto.kdf1(ck, _dh(e_priv, re))  # ee
    ck = crypto.kdf1(ck, _dh(e_priv, rs))  # se
    ck, tau, key = crypto.kdf3(ck, psk)  # psk
    h = crypto.hash(h + tau)
    payload_ct, h = _encrypt_and_hash(key, h, payload)  # {}
    return ck, h, e_pub, payload_ct


def read_response(ck: bytes, h: bytes, e_priv: bytes, s_priv: bytes, re: bytes, psk: bytes,
                  payload_ct: bytes) -> tuple[bytes, bytes, bytes]:
    """Read <- e, ee, se, psk, {payload}. Returns (ck, h, payload)."""
    ck, h = _mix_ephemeral(ck, h, re)  # e
    ck = crypto.kdf1(ck, _dh(e_priv, re))  # ee
    ck = crypto.kdf1(ck, _dh(s_priv, re))  # se
    ck, tau, key = crypto.kdf3(ck, psk)  # psk
    h = crypto.hash(h + tau)
    payload, h = _decrypt_and_hash(key, h, payload_ct)  # {}
    return ck, h, payload


def split(ck: bytes) -> tuple[bytes, bytes]:
    """Transport keys (initiator's sending key first): KDF2(ck, empty)."""
    return crypto.kdf2(ck, _EMPTY)


# --- The per-peer state machine ------------------------------------------------------------------

@dataclass
class StaticIdentity:
    """The interface's own key pair; `private` is None when no key is set."""

    private: bytes | None = field(default=None, repr=False)  # secrets never go in a repr
    public: bytes = crypto.ZERO_KEY

    @classmethod
    def from_private(cls, private: bytes | None) -> StaticIdentity:
        if private is None or _is_zero(private):
            return cls()
        private = crypto.clamp(private)
        return cls(private, crypto.public_key(private))


class HandshakeState(enum.Enum):
    ZEROED = 0
    CREATED_INITIATION = 1
    CONSUMED_INITIATION = 2
    CREATED_RESPONSE = 3
    CONSUMED_RESPONSE = 4


@dataclass
class Handshake:
    """One peer's half-open handshake (kernel `struct noise_handshake`)."""

    # Every secret (and the transcript hash, which the keys derive from) stays out of repr.
    identity: StaticIdentity = field(repr=False)
    remote_static: bytes
    preshared_key: bytes = field(default=crypto.ZERO_KEY, repr=False)
    precomputed_static_static: bytes = field(default=crypto.ZERO_KEY, repr=False)
    state: HandshakeState = HandshakeState.ZEROED
    chaining_key: bytes = field(default=b"", repr=False)
    hash: bytes = field(default=b"", repr=False)
    ephemeral_private: bytes = field(default=b"", repr=False)
    remote_ephemeral: bytes = b""
    local_index: int = 0
    remote_index: int = 0
    latest_timestamp: bytes = bytes(12)
    last_initiation_consumption: float | None = None
    _prologue: bytes = field(default=IDENTIFIER, repr=False)

    def __post_init__(self) -> None:
        self.precompute_static_static()

    def precompute_static_static(self) -> None:
        """DH(our static, their static), or zeros when either side makes it impossible."""
        self.precomputed_static_static = crypto.ZERO_KEY
        if self.identity.private is not None:
            try:
                self.precomputed_static_static = crypto.dh(self.identity.private,
                                                           self.remote_static)
            except crypto.CryptoError:
                pass

    def clear(self) -> None:
        self.state = HandshakeState.ZEROED
        self.chaining_key = self.hash = self.ephemeral_private = self.remote_ephemeral = b""
        self.remote_index = 0

    def create_initiation(self, timestamp: bytes, ephemeral_private: bytes | None = None
                          ) -> tuple[bytes, bytes, bytes]:
        """-> e, es, s, ss, {t}. Returns (ephemeral, encrypted static, encrypted timestamp).

        The caller assigns `local_index` and frames the message.
        """
        if self.identity.private is None:
            raise HandshakeError("no private key")
        e_priv = ephemeral_private or crypto.generate_private_key()
        ck, h = initialize(self._prologue, self.remote_static)
        ck, h, e_pub, static_ct, ts_ct = write_initiation(
            ck, h, e_priv, self.identity.public, self.remote_static,
            self.precomputed_static_static, timestamp)
        self.chaining_key, self.hash, self.ephemeral_private = ck, h, e_priv
        self.state = HandshakeState.CREATED_INITIATION
        return e_pub, static_ct, ts_ct

    def consume_initiation(self, ck: bytes, h: bytes, e_pub: bytes, timestamp_ct: bytes,
                           sender_index: int, now: float) -> None:
        """Finish an initiation whose static key named this peer: ss, {t}, then the guards.

        A timestamp not newer than the latest seen is a replay; more than
        INITIATIONS_PER_SECOND consumed initiations a second is a flood.
        """
        ck, h, timestamp = read_initiation_payload(ck, h, self.precomputed_static_static,
                                                   timestamp_ct)
        if timestamp <= self.latest_timestamp:
            raise HandshakeError("replayed initiation (stale timestamp)")
        if (self.last_initiation_consumption is not None
                and now < self.last_initiation_consumption + INITIATION_MIN_INTERVAL):
            raise HandshakeError("initiation flood")
        self.chaining_key, self.hash = ck, h
        self.remote_ephemeral = e_pub
        self.remote_index = sender_index
        self.latest_timestamp = timestamp
        self.last_initiation_consumption = now
        self.state = HandshakeState.CONSUMED_INITIATION

    def create_response(self, ephemeral_private: bytes | None = None) -> tuple[bytes, bytes]:
        """<- e, ee, se, psk, {}. Returns (ephemeral, encrypted nothing)."""
        if self.state is not HandshakeState.CONSUMED_INITIATION:
            raise HandshakeError("no initiation to respond to")
        e_priv = ephemeral_private or crypto.generate_private_key()
        ck, h, e_pub, empty_ct = write_response(
            self.chaining_key, self.hash, e_priv, self.remote_ephemeral, self.remote_static,
            self.preshared_key, _EMPTY)
        self.chaining_key, self.hash, self.ephemeral_private = ck, h, e_priv
        self.state = HandshakeState.CREATED_RESPONSE
        return e_pub, empty_ct

    def consume_response(self, e_pub: bytes, empty_ct: bytes, sender_index: int) -> None:
        if self.state is not HandshakeState.CREATED_INITIATION:
            raise HandshakeError("unexpected response")
        assert self.identity.private is not None
        ck, h, _ = read_response(self.chaining_key, self.hash, self.ephemeral_private,
                                 self.identity.private, e_pub, self.preshared_key, empty_ct)
        self.chaining_key, self.hash = ck, h
        self.remote_ephemeral = e_pub
        self.remote_index = sender_index
        self.state = HandshakeState.CONSUMED_RESPONSE

    def begin_session(self) -> tuple[bytes, bytes, bool, int]:
        """Derive transport keys and zero the handshake.

        Returns (sending key, receiving key, we are the initiator, remote index).
        """
        if self.state is HandshakeState.CONSUMED_RESPONSE:
            initiator = True
        elif self.state is HandshakeState.CREATED_RESPONSE:
            initiator = False
        else:
            raise HandshakeError("no completed handshake")
        first, second = split(self.chaining_key)
        send, recv = (first, second) if initiator else (second, first)
        remote_index = self.remote_index
        self.clear()
        return send, recv, initiator, remote_index


assert len(_C0) == KEY_SIZE

"""MAC1, MAC2 and cookie replies: WireGuard's DoS defence (paper section 5.4.4 and 5.4.7).

Every handshake message carries two MACs over its leading bytes:

- mac1 = MAC(HASH(LABEL_MAC1 || receiver's static public), msg[:mac1]) proves the sender
  knows whom it is talking to; a message without a valid mac1 is dropped silently;
- mac2 = MAC(cookie, msg[:mac2]) proves the sender can receive at its source address. It
  is zero unless the sender holds a recent cookie.

Under load a responder answers a handshake message lacking a valid mac2 with a cookie
reply instead of processing it. The cookie is MAC(R_m, source IP || source port) where the
secret R_m is renewed every COOKIE_SECRET_MAX_AGE, and it travels XAEAD-encrypted under
HASH(LABEL_COOKIE || responder's static public) with the rejected message's mac1 as
associated data, so only the real sender of that message can use it.

`CookieChecker` is the responder's side (one per interface), `CookieGenerator` the
initiator's (one per peer).
"""

from __future__ import annotations

import enum
import os
from hmac import compare_digest

from wgpy import crypto
from wgpy.constants import (
    COOKIE_SECRET_MAX_AGE, COOKIE_VALID_FOR, KEY_SIZE, LABEL_COOKIE, LABEL_MAC1, MAC_SIZE,
    XNONCE_SIZE,
)
from wgpy.messages import CookieReply, build_cookie_reply, mac1_offset, mac2_offset

__all__ = ["MacState", "CookieChecker", "CookieGenerator"]


class MacState(enum.Enum):
    INVALID_MAC = 0
    VALID_MAC_BUT_NO_COOKIE = 1
    VALID_MAC_WITH_COOKIE = 2


def _mac1_key(public: bytes) -> bytes:
    return crypto.hash(LABEL_MAC1 + public)


def _cookie_key(public: bytes) -> bytes:
    return crypto.hash(LABEL_COOKIE + public)


class CookieChecker:
    """Validates incoming MACs and makes cookie replies, for our own static key."""

    def __init__(self, public: bytes = crypto.ZERO_KEY) -> None:
        self.set_public(public)
        self._secret = b""
        self._secret_born: float | None = None

    def __repr__(self) -> str:  # the secret R_m stays out
        return f"CookieChecker(secret_born={self._secret_born})"

    def set_public(self, public: bytes) -> None:
        self.mac1_key = _mac1_key(public)
        self.cookie_key = _cookie_key(public)

    def _cookie(self, source: bytes, now: float) -> bytes:
        """MAC(R_m, source address bytes), renewing R_m every COOKIE_SECRET_MAX_AGE."""
        if self._secret_born is None or now >= self._secret_born + COOKIE_SECRET_MAX_AGE:
            self._secret = os.urandom(KEY_SIZE)
            self._secret_born = now
        return crypto.mac(self._secret, source)

    def validate(self, msg: bytes, kind: int, source: bytes, now: float,
                 check_cookie: bool) -> MacState:
        """Check mac1, and mac2 too when `check_cookie` (we are under load)."""
        m1, m2 = mac1_offset(kind), mac2_offset(kind)
        if not compare_digest(crypto.mac(self.mac1_key, msg[:m1]), msg[m1:m2]):
            return MacState.INVALID_MAC
        if not check_cookie:
            return MacState.VALID_MAC_BUT_NO_COOKIE
        cookie = self._cookie(source, now)
        if not compare_digest(crypto.mac(cookie, msg[:m2]), msg[m2:m2 + MAC_SIZE]):
            return MacState.VALID_MAC_BUT_NO_COOKIE
        return MacState.VALID_MAC_WITH_COOKIE

    def create_reply(self, msg: bytes, kind: int, receiver_index: int, source: bytes,
                     now: float, nonce: bytes | None = None) -> bytes:
        """A cookie reply to handshake message `msg` that came from `source`."""
        m1 = mac1_offset(kind)
        nonce = nonce or os.urandom(XNONCE_SIZE)
        sealed = crypto.xaead_encrypt(self.cookie_key, nonce, self._cookie(source, now),
                                      msg[m1:m1 + MAC_SIZE])
        return build_cookie_reply(receiver_index, nonce, sealed)


class CookieGenerator:
    """Adds MACs to the handshake messages we send to one peer and keeps its cookie."""

    def __init__(self, peer_public: bytes) -> None:
        self.mac1_key = _mac1_key(peer_public)
        self.cookie_key = _cookie_key(peer_public)
        self.cookie: bytes | None = None
        self.cookie_born = 0.0
        self.last_mac1 = b""
        self.have_sent_mac1 = False

    def __repr__(self) -> str:  # the cookie is a secret of the path to the peer
        held = self.cookie is not None
        return f"CookieGenerator(cookie_held={held}, cookie_born={self.cookie_born})"

    def add_macs(self, msg: bytearray, kind: int, now: float) -> None:
        """Write mac1, and mac2 if we hold a cookie younger than COOKIE_VALID_FOR."""
        m1, m2 = mac1_offset(kind), mac2_offset(kind)
        mac1 = crypto.mac(self.mac1_key, bytes(msg[:m1]))
        msg[m1:m2] = mac1
        self.last_mac1, self.have_sent_mac1 = mac1, True
        if self.cookie is not None and now < self.cookie_born + COOKIE_VALID_FOR:
            msg[m2:m2 + MAC_SIZE] = crypto.mac(self.cookie, bytes(msg[:m2]))
        else:
            msg[m2:m2 + MAC_SIZE] = bytes(MAC_SIZE)

    def consume_reply(self, data: bytes, now: float) -> bool:
        """Take the cookie from a reply to the last message we sent; False if it is bogus."""
        if not self.have_sent_mac1:
            return False
        reply = CookieReply.parse(data)
        try:
            cookie = crypto.xaead_decrypt(self.cookie_key, reply.nonce, reply.cookie,
                                          self.last_mac1)
        except crypto.InvalidTag:
            return False
        self.cookie, self.cookie_born, self.have_sent_mac1 = cookie, now, False
        return True

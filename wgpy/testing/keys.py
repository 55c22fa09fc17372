"""Key pairs for tests: a fresh X25519 private key, its public key, both also in base64 as
`wg` prints and reads them. Nothing here touches the system."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from wgpy import crypto

__all__ = ["KeyPair", "b64"]


def b64(key: bytes) -> str:
    """A 32-byte key in the base64 form of `wg` and wg-quick's configuration files."""
    return base64.b64encode(key).decode()


@dataclass(frozen=True)
class KeyPair:
    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        private = crypto.generate_private_key()
        return cls(private, crypto.public_key(private))

    @property
    def private_b64(self) -> str:
        return b64(self.private)

    @property
    def public_b64(self) -> str:
        return b64(self.public)

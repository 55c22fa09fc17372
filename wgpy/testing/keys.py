"""Key pairs for tests: a fresh X25519 private key, its public key, both also in base64 as
`wg` prints and reads them. Nothing here touches the system."""

from __future__ import annotations

from dataclasses import dataclass

from wgpy import crypto
from wgpy.crypto import b64

__all__ = ["KeyPair", "b64"]


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

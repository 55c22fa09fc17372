"""Transport keypairs and their rotation (kernel noise.c, paper section 5.4.6 and 6.1).

A `Keypair` holds both directions of one session: the sending key with its counter, the
receiving key with its replay window, and its birth time. `Keypairs` keeps the three slots
the kernel keeps:

- `current`: the keypair we send with;
- `previous`: the one before it, still accepted on receive while packets drain;
- `next`: a responder's new keypair, not yet used to send. The initiator confirms it by
  sending the first data packet on it; on receiving that packet it becomes `current`.

An initiator's new keypair becomes `current` at once (it has the peer's confirmation: the
response). Every method that drops keypairs returns them, so the owner can forget their
receiver indices.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy import fastpath
from wgpy.constants import REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME

__all__ = ["Keypair", "Keypairs"]


class Keypair:
    """One session's keys (kernel `struct noise_keypair`)."""

    __slots__ = ("send", "recv", "send_key", "recv_key", "send_counter", "replay", "created",
                 "initiator", "local_index", "remote_index", "sending_valid",
                 "receiving_valid")

    def __init__(self, send_key: bytes, recv_key: bytes, initiator: bool, local_index: int,
                 remote_index: int, now: float) -> None:
        self.send = ChaCha20Poly1305(send_key)
        self.recv = ChaCha20Poly1305(recv_key)
        # The raw keys too, for the batch path (wgpy.fastpath): the AEAD objects hold them
        # anyway, so they live exactly as long.
        self.send_key = send_key
        self.recv_key = recv_key
        self.send_counter = 0
        self.replay = fastpath.Replay()  # wgpy.replay.ReplayFilter, or its compiled twin
        self.created = now
        self.initiator = initiator
        self.local_index = local_index
        self.remote_index = remote_index
        self.sending_valid = True
        self.receiving_valid = True

    def __repr__(self) -> str:  # the AEAD objects hold the keys: only the bookkeeping
        return (f"Keypair(local_index={self.local_index:#x}, remote_index={self.remote_index:#x}, "
                f"initiator={self.initiator}, send_counter={self.send_counter}, "
                f"created={self.created})")

    def can_send(self, now: float) -> bool:
        return (self.sending_valid and now < self.created + REJECT_AFTER_TIME
                and self.send_counter < REJECT_AFTER_MESSAGES)

    def can_receive(self, now: float) -> bool:
        """Valid, younger than REJECT_AFTER_TIME and not exhausted (kernel `decrypt_packet`:
        ``receive.counter >= REJECT_AFTER_MESSAGES`` invalidates the key)."""
        return (self.receiving_valid and now < self.created + REJECT_AFTER_TIME
                and not self.replay.exhausted(REJECT_AFTER_MESSAGES))

    def next_counter(self) -> int:
        """Take the next sending nonce (sequential per keypair)."""
        n = self.send_counter
        self.send_counter = n + 1
        return n


class Keypairs:
    """The current / previous / next slots of one peer (kernel `struct noise_keypairs`)."""

    __slots__ = ("current", "previous", "next")

    def __init__(self) -> None:
        self.current: Keypair | None = None
        self.previous: Keypair | None = None
        self.next: Keypair | None = None

    def add(self, new: Keypair) -> list[Keypair]:
        """Install a freshly derived keypair; returns the keypairs dropped."""
        dropped: list[Keypair] = []
        if new.initiator:
            if self.next is not None:
                # The unconfirmed next keypair is still newer than current: keep it as
                # previous and drop current.
                if self.previous is not None:
                    dropped.append(self.previous)
                if self.current is not None:
                    dropped.append(self.current)
                self.previous, self.next = self.next, None
            else:
                if self.previous is not None:
                    dropped.append(self.previous)
                self.previous = self.current
            self.current = new
        else:
            # A responder must wait for the initiator's first data packet before using it.
            if self.next is not None:
                dropped.append(self.next)
            if self.previous is not None:
                dropped.append(self.previous)
            self.next, self.previous = new, None
        return dropped

    def received_with(self, keypair: Keypair) -> tuple[bool, list[Keypair]]:
        """A packet authenticated under `keypair`. If it was `next`, it is confirmed: rotate.

        Returns (rotated, dropped keypairs).
        """
        if keypair is not self.next:
            return False, []
        dropped = [self.previous] if self.previous is not None else []
        self.previous, self.current, self.next = self.current, keypair, None
        return True, dropped

    def clear(self) -> list[Keypair]:
        dropped = [k for k in (self.current, self.previous, self.next) if k is not None]
        self.current = self.previous = self.next = None
        return dropped

    def expire_current(self) -> None:
        """Stop sending with current and next (the private key changed)."""
        for k in (self.current, self.next):
            if k is not None:
                k.sending_valid = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([k for k in (self.current, self.previous, self.next) if k is not None])

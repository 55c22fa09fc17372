"""Receiver index table: maps our random 32-bit session indices to their owners.

Theory of operation
-------------------
Every handshake and keypair we take part in is known to the peer by a *receiver index*
that we chose: the ``sender`` field of our initiation/response, echoed back as the
``receiver`` field of every later message. Incoming responses, cookie replies and
transport messages are routed by looking that index up here (kernel ``peerlookup.c``,
``index_hashtable``; wireguard-go ``IndexTable``).

Indices are drawn uniformly at random, so they reveal nothing about how many sessions
exist; on collision with an index in use we draw again, as the kernel does (with 2**20
peers the first draw succeeds with probability > 0.999). ``replace`` hands an index to a
new owner, e.g. when a completed handshake becomes a keypair, keeping the index the peer
already knows.

The random source is injectable (``rand32``) so tests can force collisions.
"""

from __future__ import annotations

import secrets
from typing import Callable, Generic, TypeVar

__all__ = ["IndexTable"]

T = TypeVar("T")

_INDEX_MASK = 0xFFFFFFFF


def _default_rand32() -> int:
    return secrets.randbits(32)


class IndexTable(Generic[T]):
    """Receiver index -> owner (handshake or keypair)."""

    __slots__ = ("_entries", "_rand32")

    def __init__(self, rand32: Callable[[], int] = _default_rand32) -> None:
        self._entries: dict[int, T] = {}
        self._rand32 = rand32

    def __len__(self) -> int:
        return len(self._entries)

    def new(self, value: T) -> int:
        """Store `value` under a fresh random unused 32-bit index and return the index."""
        entries = self._entries
        if len(entries) > _INDEX_MASK:
            raise OverflowError("receiver index space exhausted")
        while True:
            index = self._rand32() & _INDEX_MASK
            if index not in entries:
                entries[index] = value
                return index

    def get(self, index: int) -> T | None:
        """Owner of `index`, or None if the index is not in use."""
        return self._entries.get(index)

    def replace(self, index: int, value: T) -> None:
        """Give the in-use `index` to `value`; KeyError if the index is not in use."""
        entries = self._entries
        if index not in entries:
            raise KeyError(index)
        entries[index] = value

    def remove(self, index: int) -> None:
        """Release `index`; nothing happens if it is not in use."""
        self._entries.pop(index, None)

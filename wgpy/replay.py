"""Sliding-window replay filter for transport-message counters.

Theory of operation
-------------------
This is the RFC 6479 bitmap the kernel uses in ``counter_validate`` (``receive.c``) and
wireguard-go in ``replay/replay.go``. A ring of COUNTER_BITS_TOTAL bits, stored as
64-bit words, remembers which counters have been seen. ``_greatest`` holds the
greatest accepted counter *plus one* (0 = nothing accepted yet), so that bit 0 of the
ring is never needed for counter 0 and the "+1" keeps the arithmetic unsigned.

A counter is accepted when it is below the message limit, not older than
COUNTER_WINDOW_SIZE behind the greatest accepted counter, and not seen before. When a
counter moves the window forward, the words it skips over are zeroed, never more than
the whole ring; the ring holds one redundant word (COUNTER_REDUNDANT_BITS), so the
usable window is COUNTER_WINDOW_SIZE = COUNTER_BITS_TOTAL - 64 bits and a word being
recycled never still holds bits inside the window.

The filter is per keypair and is not thread-safe; callers serialise access.
"""

from __future__ import annotations

from wgpy.constants import (
    COUNTER_BITS_TOTAL,
    COUNTER_REDUNDANT_BITS,
    COUNTER_WINDOW_SIZE,
    REJECT_AFTER_MESSAGES,
)

__all__ = ["ReplayFilter"]

_BITS_PER_WORD = COUNTER_REDUNDANT_BITS  # the kernel's BITS_PER_LONG
_WORD_SHIFT = _BITS_PER_WORD.bit_length() - 1  # ilog2(BITS_PER_LONG) = 6
_BIT_MASK = _BITS_PER_WORD - 1
_RING_WORDS = COUNTER_BITS_TOTAL // _BITS_PER_WORD  # 128
_RING_MASK = _RING_WORDS - 1
_ZERO_RING = (0,) * _RING_WORDS

assert _BITS_PER_WORD == 1 << _WORD_SHIFT
assert _RING_WORDS & _RING_MASK == 0, "the ring must hold a power-of-two number of words"


class ReplayFilter:
    """Replay window of one receiving keypair (kernel ``noise_replay_counter``)."""

    __slots__ = ("_greatest", "_backtrack")

    def __init__(self) -> None:
        self._greatest: int = 0  # greatest accepted counter + 1; 0 when none yet
        self._backtrack: list[int] = list(_ZERO_RING)

    def exhausted(self, limit: int = REJECT_AFTER_MESSAGES) -> bool:
        """Whether the greatest accepted counter + 1 has reached `limit`: the kernel's
        ``decrypt_packet`` then takes the receiving key as invalid, so a keypair that
        accepted counter REJECT_AFTER_MESSAGES - 1 accepts nothing more, not even an older
        counter still inside the window."""
        return self._greatest >= limit

    def reset(self) -> None:
        """Forget every counter seen, as for a fresh keypair."""
        self._greatest = 0
        self._backtrack[:] = _ZERO_RING

    def validate(self, counter: int, limit: int = REJECT_AFTER_MESSAGES) -> bool:
        """Accept `counter` and mark it seen, or return False for a replayed/invalid one.

        Rejected: ``counter >= limit`` (or negative), counters more than
        COUNTER_WINDOW_SIZE behind the greatest accepted one, and duplicates. Only call this
        after the packet has authenticated, or an attacker can move the window.
        """
        if not 0 <= counter < limit or self._greatest > limit:
            return False
        their = counter + 1
        greatest = self._greatest
        if their + COUNTER_WINDOW_SIZE < greatest:
            return False  # too old: fell out of the window
        backtrack = self._backtrack
        index = their >> _WORD_SHIFT
        if their > greatest:
            index_current = greatest >> _WORD_SHIFT
            skipped = index - index_current
            if skipped >= _RING_WORDS:
                backtrack[:] = _ZERO_RING
            elif skipped == 1:
                backtrack[index & _RING_MASK] = 0
            else:
                for i in range(index_current + 1, index + 1):
                    backtrack[i & _RING_MASK] = 0
            self._greatest = their
        index &= _RING_MASK
        bit = 1 << (their & _BIT_MASK)
        word = backtrack[index]
        if word & bit:
            return False  # duplicate
        backtrack[index] = word | bit
        return True

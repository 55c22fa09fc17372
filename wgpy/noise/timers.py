"""Per-peer timers, polled by deadline (kernel timers.c, paper section 6).

The kernel arms five timers per peer:

- retransmit_handshake: resend the initiation if no response after REKEY_TIMEOUT + jitter,
  giving up after MAX_TIMER_HANDSHAKES retries (REKEY_ATTEMPT_TIME in all);
- send_keepalive: send an empty packet if we received data but sent nothing for
  KEEPALIVE_TIMEOUT;
- new_handshake: start a handshake if we sent data but heard nothing for
  KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter;
- zero_key_material: erase all keys REJECT_AFTER_TIME * 3 after the last new session;
- persistent_keepalive: if configured, an empty packet after that many seconds of silence.

Here each timer is a deadline (or None). The hooks below arm and disarm them exactly as
the kernel's do, and `expired(now)` hands back the names of the timers that are due, in
deadline order; the peer carries out their actions. Nothing reads a clock: `now` comes in.
Jitter comes from an injectable function so tests can use literal times.
"""

from __future__ import annotations

import random
from typing import Callable

from wgpy.constants import (
    KEEPALIVE_TIMEOUT, NEW_HANDSHAKE_TIMEOUT, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX,
    ZERO_KEY_MATERIAL_TIMEOUT,
)

__all__ = ["Timers", "RETRANSMIT_HANDSHAKE", "SEND_KEEPALIVE", "NEW_HANDSHAKE",
           "ZERO_KEY_MATERIAL", "PERSISTENT_KEEPALIVE"]

RETRANSMIT_HANDSHAKE = "retransmit_handshake"
SEND_KEEPALIVE = "send_keepalive"
NEW_HANDSHAKE = "new_handshake"
ZERO_KEY_MATERIAL = "zero_key_material"
PERSISTENT_KEEPALIVE = "persistent_keepalive"
_NAMES = (RETRANSMIT_HANDSHAKE, SEND_KEEPALIVE, NEW_HANDSHAKE, ZERO_KEY_MATERIAL,
          PERSISTENT_KEEPALIVE)

def _default_jitter() -> float:
    # Jitter only spreads retries out; it needs no cryptographic randomness.
    return random.random() * REKEY_TIMEOUT_JITTER_MAX


class Timers:
    """The deadlines and counters of one peer's timers."""

    def __init__(self, jitter: Callable[[], float] = _default_jitter) -> None:
        self.deadlines: dict[str, float | None] = dict.fromkeys(_NAMES)
        self.jitter = jitter
        self.handshake_attempts = 0
        self.need_another_keepalive = False
        self.sent_lastminute_handshake = False
        self.persistent_keepalive_interval = 0
        self.enabled = True  # the kernel arms timers only while the interface is up

    def mod(self, name: str, at: float) -> None:
        if self.enabled:
            self.deadlines[name] = at

    def pending(self, name: str) -> bool:
        return self.deadlines[name] is not None

    def delete(self, name: str) -> None:
        self.deadlines[name] = None

    def stop(self) -> None:
        for name in _NAMES:
            self.deadlines[name] = None

    def next_deadline(self) -> float | None:
        # A loop, not min() over a generator: this runs twice per batch on the packet path.
        soonest = None
        for d in self.deadlines.values():
            if d is not None and (soonest is None or d < soonest):
                soonest = d
        return soonest

    def expired(self, now: float) -> list[str]:
        """Disarm and return the timers due at `now`, earliest first."""
        due = sorted((d, n) for n, d in self.deadlines.items() if d is not None and d <= now)
        for _, name in due:
            self.deadlines[name] = None
        return [name for _, name in due]

    # --- Hooks, with the kernel's contracts ------------------------------------------------------

    def data_sent(self, now: float) -> None:
        """Should be called after an authenticated data packet is sent."""
        if not self.pending(NEW_HANDSHAKE):
            self.mod(NEW_HANDSHAKE, now + NEW_HANDSHAKE_TIMEOUT + self.jitter())

    def data_received(self, now: float) -> None:
        """Should be called after an authenticated data packet is received."""
        if not self.pending(SEND_KEEPALIVE):
            self.mod(SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)
        else:
            self.need_another_keepalive = True

    def any_authenticated_packet_sent(self, now: float) -> None:
        """Should be called after any type of authenticated packet is sent, whether
        keepalive, data, or handshake."""
        self.delete(SEND_KEEPALIVE)

    def any_authenticated_packet_received(self, now: float) -> None:
        """Should be called after any type of authenticated packet is received, whether
        keepalive, data, or handshake."""
        self.delete(NEW_HANDSHAKE)

    def handshake_initiated(self, now: float) -> None:
        """Should be called after a handshake initiation message is sent."""
        self.mod(RETRANSMIT_HANDSHAKE, now + REKEY_TIMEOUT + self.jitter())

    def handshake_complete(self, now: float) -> None:
        """Should be called after a handshake response message is received and processed
        or when getting key confirmation via the first data message."""
        self.delete(RETRANSMIT_HANDSHAKE)
        self.handshake_attempts = 0
        self.sent_lastminute_handshake = False

    def session_derived(self, now: float) -> None:
        """Should be called after an ephemeral key is created, which is before sending a
        handshake response or after receiving a handshake response."""
        self.mod(ZERO_KEY_MATERIAL, now + ZERO_KEY_MATERIAL_TIMEOUT)

    def any_authenticated_packet_traversal(self, now: float) -> None:
        """Should be called before a packet with authentication, whether keepalive, data,
        or handshake, is sent, or after one is received."""
        if self.persistent_keepalive_interval:
            self.mod(PERSISTENT_KEEPALIVE, now + self.persistent_keepalive_interval)

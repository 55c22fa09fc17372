"""A rehearsal of one handshake and a few data packets between two throwaway interfaces.

The first handshake a fresh Python process performs costs several times the later ones
(measured here: 760 + 584 + 220 us for initiation, response and its consumption, against
150 + 340 + 170 us from the second on): the first use of each code path and of each
crypto primitive pays for lazy imports, allocator growth and specialisation of the
interpreter's bytecode. A daemon's first handshake is on the critical path of the first
packet its user sends, so the device runs this rehearsal once at start-up. Nothing of it
survives: the keys are random and dropped, no index or peer leaks into a real interface.
"""

from __future__ import annotations

from ipaddress import ip_network

from wgpy import crypto
from wgpy.noise.actions import SendBatch, SendDatagram, WriteToTun
from wgpy.noise.interface import Interface

__all__ = ["rehearse"]

_PEER_A = ("192.0.2.1", 51820)  # documentation addresses (RFC 5737): never used for I/O
_PEER_B = ("192.0.2.2", 51820)
_PING = bytes.fromhex("45000054000040004001b6a20a0000010a000002") + bytes(64)  # 10.0.0.1 -> .2


def rehearse(rounds: int = 2) -> bool:
    """Run `rounds` handshakes and data exchanges in memory; True if every step delivered."""
    a, b = Interface(crypto.generate_private_key()), Interface(crypto.generate_private_key())
    pa, pb = a.add_peer(b.identity.public), b.add_peer(a.identity.public)
    pa.endpoint, pb.endpoint = _PEER_B, _PEER_A
    a.allowed_ips.insert(ip_network("10.0.0.2/32"), pa)
    b.allowed_ips.insert(ip_network("10.0.0.1/32"), pb)
    ok = True
    for n in range(rounds):
        now = 1000.0 * (n + 1)  # far apart: every handshake is allowed (REKEY_TIMEOUT)
        sent = pa.send_batch([_PING], now)
        init = next(x.data for x in sent if type(x) is SendDatagram)
        resp = next(x.data for x in b.receive(init, _PEER_A, now) if type(x) is SendDatagram)
        data = [d for x in a.receive(resp, _PEER_B, now) if type(x) is SendBatch
                for d in x.datagrams]
        got = [x.packet for d in data for x in b.receive(d, _PEER_A, now)
               if type(x) is WriteToTun]
        ok = ok and got == [_PING]
    return ok

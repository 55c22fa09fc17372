"""Cost of creating and consuming each handshake message in wgpy's sans-IO core.

Run on demand: `python bench/handshake.py [rounds]`. Prints microseconds per operation
beside its reference floor: the X25519 operations the message needs (generating an
ephemeral public key is one scalar multiplication, each DH another; the static-static DH
is precomputed per peer), measured in the same run, so the ratio shows what the Python
around the crypto costs. The last line is a whole handshake through `Interface` (framing,
MACs, index table, keypairs and the confirming keepalive included).
"""

from __future__ import annotations

import sys
import time

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wgpy import crypto
from wgpy.constants import IDENTIFIER
from wgpy.noise.handshake import Handshake, StaticIdentity, initialize, read_initiation_static
from wgpy.noise.interface import Interface
from wgpy.tai64n import timestamp


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    id_a = StaticIdentity.from_private(crypto.generate_private_key())
    id_b = StaticIdentity.from_private(crypto.generate_private_key())
    assert id_a.private is not None and id_b.private is not None
    hi, hr = Handshake(id_a, id_b.public), Handshake(id_b, id_a.public)
    totals = dict.fromkeys(("create_initiation", "consume_initiation", "create_response",
                            "consume_response"), 0.0)
    clock = time.perf_counter
    for n in range(rounds):
        t0 = clock()
        e, s, ts = hi.create_initiation(timestamp((n + 1) * 10**9))
        t1 = clock()
        ck, h = initialize(IDENTIFIER, id_b.public)
        ck, h, rs = read_initiation_static(ck, h, id_b.private, e, s)
        assert rs == id_a.public
        hr.consume_initiation(ck, h, e, ts, 1, float(n))
        t2 = clock()
        e2, empty = hr.create_response()
        t3 = clock()
        hi.consume_response(e2, empty, 2)
        t4 = clock()
        assert hi.begin_session()[0] == hr.begin_session()[1]
        for name, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[name] += dt

    k1, k2 = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    start = clock()
    for _ in range(rounds):
        k1.exchange(k2)
    t_dh = (clock() - start) / rounds * 1e6
    floors = {"create_initiation": 2, "consume_initiation": 1, "create_response": 3,
              "consume_response": 2}
    print(f"X25519 exchange: {t_dh:.1f} us (the floor unit), {rounds} rounds")
    print(f"{'operation':<22}{'wgpy us':>10}{'X25519 floor us':>18}{'ratio':>8}")
    for name, total in totals.items():
        t, floor = total / rounds * 1e6, floors[name] * t_dh
        print(f"{name:<22}{t:>10.1f}{floor:>18.1f}{t / floor:>8.2f}")

    a, b = Interface(crypto.generate_private_key()), Interface(crypto.generate_private_key())
    pa, pb = a.add_peer(b.identity.public), b.add_peer(a.identity.public)
    pa.endpoint, pb.endpoint = ("192.0.2.2", 2), ("192.0.2.1", 1)
    start = clock()
    for n in range(rounds):
        now = 10.0 * n
        init = pa.initiate(now)[0].data  # type: ignore[union-attr]
        resp = b.receive(init, pb.endpoint, now)[0].data  # type: ignore[union-attr]
        a.receive(resp, pa.endpoint, now)
    full = (clock() - start) / rounds * 1e6
    print(f"{'whole handshake':<22}{full:>10.1f}{8 * t_dh:>18.1f}{full / (8 * t_dh):>8.2f}")


if __name__ == "__main__":
    main()

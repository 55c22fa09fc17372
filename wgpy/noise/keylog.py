"""What Wireshark needs to decrypt a WireGuard session we took part in, and its key log lines.

Wireshark's WireGuard dissector (`wg.keylog_file`) reads lines `NAME = base64-key`, the
format of wireguard-tools' contrib/extract-handshakes, which dumps the four keys below each
time the kernel creates a handshake message. Which keys decrypt what, from our side:

- as the initiator: the initiation needs our ephemeral private key (DH with the
  responder's static public key) and then our static private key; the response needs the
  same two. The responder's static public key lets the dissector match the initiation's
  mac1 to a known responder at all;
- as the responder: the initiation needs our static private key; the response needs our
  ephemeral private key (DH with the initiator's ephemeral and static public keys).

The preshared key enters the response (psk step of IKpsk2). The dissector links each
PRESHARED_KEY line to the LOCAL_EPHEMERAL_PRIVATE_KEY line read last, so the order below
is part of the format. One block per handshake message we create (an initiation, or a
response) is what extract-handshakes writes; repeated static keys are merged on reading.

The core only hands these secrets over (`Interface.keylog`); writing them is the
device's job (`wgpy.observe.keylog`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

__all__ = ["HandshakeSecrets", "KEYLOG_NAMES", "keylog_lines"]

# The block's lines, in the order the dissector needs (see above).
KEYLOG_NAMES = ("LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY",
                "LOCAL_EPHEMERAL_PRIVATE_KEY", "PRESHARED_KEY")


@dataclass(frozen=True, slots=True)
class HandshakeSecrets:
    """The keys of one handshake message we created; no secret appears in a repr."""

    local_static_private: bytes = field(repr=False)
    remote_static_public: bytes
    local_ephemeral_private: bytes = field(repr=False)
    preshared_key: bytes = field(repr=False)
    initiator: bool = True  # we created the initiation (else the response)


def keylog_lines(secrets: HandshakeSecrets) -> bytes:
    """The block for Wireshark's key log, ephemeral before preshared key (see above)."""
    keys = (secrets.local_static_private, secrets.remote_static_public,
            secrets.local_ephemeral_private, secrets.preshared_key)
    return b"".join(name.encode() + b" = " + base64.b64encode(key) + b"\n"
                    for name, key in zip(KEYLOG_NAMES, keys))

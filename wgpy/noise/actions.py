"""What the sans-IO core asks the device to do, and why it dropped what it dropped.

The core never raises out of the packet path: bad input becomes a `Drop` carrying a reason
from the closed `DropReason` enum, which the device counts and logs at debug level.

A failed UDP send is counted by its cause (`send_failure_reason` maps the errno): no route
to the endpoint, no buffer space in the host, no socket for the endpoint's address family,
or anything else. "No endpoint" is only for a peer that has none.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Endpoint", "SendDatagram", "SendBatch", "WriteToTun", "Drop", "DropReason", "Schedule",
           "ClearEndpointSource", "Action", "send_failure_reason"]

# A socket address exactly as Python's socket module gives and takes it:
# (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6.
Endpoint = tuple[Any, ...]


class DropReason(enum.Enum):
    INVALID_MESSAGE = "unknown type or wrong length"
    INVALID_MAC = "invalid mac1 on handshake message"
    RATE_LIMITED = "handshake rate limit exceeded"
    NO_PRIVATE_KEY = "interface has no private key"
    UNKNOWN_PEER = "initiation from an unknown static key"
    UNKNOWN_INDEX = "unknown receiver index"
    INVALID_HANDSHAKE = "handshake message failed (authentication, replay, flood or state)"
    INVALID_COOKIE = "cookie reply does not authenticate"
    EXPIRED_KEYPAIR = "keypair too old to receive"
    DECRYPTION_FAILED = "transport data does not authenticate"
    REPLAYED_COUNTER = "counter replayed or outside the window"
    INVALID_INNER_PACKET = "decrypted packet is not a valid IP packet"
    DISALLOWED_SOURCE = "inner source address not in the peer's allowed IPs"
    NO_ROUTE = "no peer for the destination address"
    NO_ENDPOINT = "peer has no known endpoint"
    STAGED_QUEUE_FULL = "staged queue full, oldest packet dropped"
    TUN_WRITE_FAILED = "the TUN refused the packet (link down or queue full)"
    HANDSHAKE_GAVE_UP = "handshake did not complete after REKEY_ATTEMPT_TIME"
    SEND_FAILED_UNREACHABLE = "the UDP send found no route to the endpoint"
    SEND_FAILED_NO_BUFFER = "the UDP send found no buffer space (socket or host memory)"
    SEND_FAILED_NO_SOCKET = "no UDP socket for the endpoint's address family"
    SEND_FAILED = "the UDP send failed (message too long, not permitted, other errors)"
    INTERFACE_DOWN = "the interface is down"


_SEND_FAILURES = {
    **dict.fromkeys((errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN,
                     errno.EADDRNOTAVAIL, errno.ECONNREFUSED),
                    DropReason.SEND_FAILED_UNREACHABLE),
    **dict.fromkeys((errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN),
                    DropReason.SEND_FAILED_NO_BUFFER),
    **dict.fromkeys((errno.EAFNOSUPPORT, errno.EBADF, errno.ENOTSOCK),
                    DropReason.SEND_FAILED_NO_SOCKET),
}


def send_failure_reason(err: int | None) -> DropReason:
    """The drop reason for a UDP send that failed with errno `err`."""
    return _SEND_FAILURES.get(err or 0, DropReason.SEND_FAILED)


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """One datagram. `peer` is the peer whose tx_bytes already count it (None for a cookie
    reply, which counts nowhere): if the send fails, the device takes the bytes back
    (`Peer.send_failed`), as the kernel counts tx_bytes only for a sent skb."""

    data: bytes
    endpoint: Endpoint
    peer: Any = None


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Transport data for one endpoint, in counter order (a candidate for UDP GSO);
    `peer` as for `SendDatagram`."""

    datagrams: list[bytes]
    endpoint: Endpoint
    peer: Any = None


@dataclass(frozen=True, slots=True)
class WriteToTun:
    packet: bytes


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    count: int = 1


@dataclass(frozen=True, slots=True)
class Schedule:
    """Call `tick` at this time (or never, if None): the peer's earliest timer changed."""

    at: float | None


@dataclass(frozen=True, slots=True)
class ClearEndpointSource:
    """Forget the local address replies to `endpoint` leave from, so the routing table picks
    one again (kernel `wg_socket_clear_peer_endpoint_src`): the sticky source may be the
    cause of an unanswered handshake. Comes before the sends it concerns."""

    endpoint: Endpoint


Action = Union[SendDatagram, SendBatch, WriteToTun, Drop, Schedule, ClearEndpointSource]

"""Typed ``set`` operations: one frozen dataclass per UAPI key.

Theory of operation: the server-side parser (`uapi.protocol.ServerConnection`)
turns each ``key=value`` line of a ``set`` request into one of these values, already
validated with wireguard-go's exact rules, so a device only applies them in order.
Interface-level operations come before the first `PeerPublicKey`; every operation
after a `PeerPublicKey` applies to that peer (wireguard-go's semantics: the key
creates or selects the peer; `PeerUpdateOnly` undoes a creation; `PeerRemove`
removes it and ignores the lines that follow up to the next ``public_key``).

The same values serve a client: `format_operation` prints the line that asks for
an operation, so ``format_operation(parse(line)) == line`` for canonical lines.
`PeerAllowedIPs` is the one operation that stands for several lines: a run of
``allowed_ip=`` additions, parsed in bulk (see `uapi.prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from uapi.prefix import Prefix, format_prefix_lines
from uapi.values import format_addr, format_network

__all__ = [
    "DeviceOperation",
    "PeerAllowedIP",
    "PeerAllowedIPs",
    "PeerEndpoint",
    "PeerOperation",
    "PeerPersistentKeepalive",
    "PeerPresharedKey",
    "PeerProtocolVersion",
    "PeerPublicKey",
    "PeerRemove",
    "PeerReplaceAllowedIPs",
    "PeerUpdateOnly",
    "ReplacePeers",
    "SetFwmark",
    "SetListenPort",
    "SetOperation",
    "SetPrivateKey",
    "format_operation",
]

_ZERO_KEY = bytes(32)


def _hex(key: bytes | None) -> str:
    return (key or _ZERO_KEY).hex()


# ---------------------------------------------------------------------------------
# Interface level


@dataclass(frozen=True, slots=True)
class SetPrivateKey:
    """``private_key=``: the key, clamped as wireguard-go stores it; None removes it."""

    key: bytes | None = field(repr=False)  # a secret: never in a repr or a log line


@dataclass(frozen=True, slots=True)
class SetListenPort:
    """``listen_port=``: 0 means a random port."""

    port: int


@dataclass(frozen=True, slots=True)
class SetFwmark:
    """``fwmark=``: 0 means off."""

    mark: int


@dataclass(frozen=True, slots=True)
class ReplacePeers:
    """``replace_peers=true``: remove every peer."""


# ---------------------------------------------------------------------------------
# Peer level


@dataclass(frozen=True, slots=True)
class PeerPublicKey:
    """``public_key=``: create (or select) the peer the following lines apply to."""

    key: bytes


@dataclass(frozen=True, slots=True)
class PeerUpdateOnly:
    """``update_only=true``: if the current peer was just created, remove it again."""


@dataclass(frozen=True, slots=True)
class PeerRemove:
    """``remove=true``: remove the current peer."""


@dataclass(frozen=True, slots=True)
class PeerPresharedKey:
    """``preshared_key=``: None (all zeros on the wire) means no preshared key."""

    key: bytes | None = field(repr=False)  # a secret: never in a repr or a log line


@dataclass(frozen=True, slots=True)
class PeerEndpoint:
    """``endpoint=``: `host` is the canonical address text without the zone.

    `scope` is the raw ``%zone`` text, if any; the device resolves it to an
    interface index with `uapi.values.resolve_zone` (EINVAL if that fails).
    """

    host: str
    port: int
    scope: str | None = None

    @property
    def address(self) -> IPv4Address | IPv6Address:
        return ip_address(self.host)


@dataclass(frozen=True, slots=True)
class PeerPersistentKeepalive:
    """``persistent_keepalive_interval=``: seconds, 0 means off."""

    seconds: int


@dataclass(frozen=True, slots=True)
class PeerReplaceAllowedIPs:
    """``replace_allowed_ips=true``: clear the peer's allowed IPs."""


@dataclass(frozen=True, slots=True)
class PeerAllowedIP:
    """``allowed_ip=`` (add) or ``allowed_ip=-`` (remove); the network is masked."""

    network: IPv4Network | IPv6Network
    remove: bool = False


@dataclass(frozen=True, slots=True)
class PeerAllowedIPs:
    """A run of two or more consecutive ``allowed_ip=`` lines that add prefixes, in order.

    A big ``set`` is mostly such runs; the parser hands them over as one operation so that
    neither side pays for an object per line. The prefixes are masked.
    """

    prefixes: list[Prefix]


@dataclass(frozen=True, slots=True)
class PeerProtocolVersion:
    """``protocol_version=1`` (the only version there is)."""

    version: int = 1


DeviceOperation = SetPrivateKey | SetListenPort | SetFwmark | ReplacePeers
PeerOperation = (
    PeerPublicKey
    | PeerUpdateOnly
    | PeerRemove
    | PeerPresharedKey
    | PeerEndpoint
    | PeerPersistentKeepalive
    | PeerReplaceAllowedIPs
    | PeerAllowedIP
    | PeerAllowedIPs
    | PeerProtocolVersion
)
SetOperation = DeviceOperation | PeerOperation


def format_operation(op: SetOperation) -> str:
    """The ``key=value`` line (without newline) that requests `op` (lines, for a run)."""
    match op:
        case SetPrivateKey(key):
            return f"private_key={_hex(key)}"
        case SetListenPort(port):
            return f"listen_port={port}"
        case SetFwmark(mark):
            return f"fwmark={mark}"
        case ReplacePeers():
            return "replace_peers=true"
        case PeerPublicKey(key):
            return f"public_key={key.hex()}"
        case PeerUpdateOnly():
            return "update_only=true"
        case PeerRemove():
            return "remove=true"
        case PeerPresharedKey(key):
            return f"preshared_key={_hex(key)}"
        case PeerEndpoint(host, port, scope):
            addr = ip_address(host)
            if isinstance(addr, IPv4Address):
                return f"endpoint={host}:{port}"
            text = format_addr(addr, scope or "")
            return f"endpoint=[{text}]:{port}"
        case PeerPersistentKeepalive(seconds):
            return f"persistent_keepalive_interval={seconds}"
        case PeerReplaceAllowedIPs():
            return "replace_allowed_ips=true"
        case PeerAllowedIP(network, remove):
            return f"allowed_ip={'-' if remove else ''}{format_network(network)}"
        case PeerAllowedIPs(prefixes):
            return format_prefix_lines(b"allowed_ip", prefixes).decode("ascii").rstrip("\n")
        case PeerProtocolVersion(version):
            return f"protocol_version={version}"
    raise TypeError(f"not a set operation: {op!r}")

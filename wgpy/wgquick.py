"""The wg-quick configuration file, as `wgpy proxy` reads it.

wg-quick(8) files are INI-like: an `[Interface]` section with wg(8)'s keys plus wg-quick's
own (`Address`, `DNS`, `MTU`, ...) and one `[Peer]` section per peer. Keys are matched
without regard to case, `#` starts a comment, and list values are comma separated
(wireguard-tools `src/config.c`, `src/wg-quick/linux.bash`). `parse` keeps what a
userspace stack needs and refuses, with the line number, what it cannot use; keys that
only matter to a kernel interface (`Table`, `PreUp`, `PostDown`, `SaveConfig`, `FwMark`)
are accepted and ignored, as they change nothing for a proxy. Error messages never quote
a key's value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["WgQuickPeer", "WgQuickConfig", "parse"]

_IGNORED = {"table", "preup", "postup", "predown", "postdown", "saveconfig", "fwmark"}
_SECRET = {"privatekey", "presharedkey"}


@dataclass
class WgQuickPeer:
    public_key: str = ""
    preshared_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    allowed_ips: list[str] = field(default_factory=list)
    persistent_keepalive: int | None = None


@dataclass
class WgQuickConfig:
    private_key: str = field(default="", repr=False)
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = field(
        default_factory=list)
    dns: list[str] = field(default_factory=list)  # server addresses
    search: list[str] = field(default_factory=list)  # DNS search domains
    mtu: int | None = None
    listen_port: int = 0
    peers: list[WgQuickPeer] = field(default_factory=list)


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(text: str) -> WgQuickConfig:
    """The configuration in `text`; ValueError naming the line for what is wrong."""
    config = WgQuickConfig()
    section = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            if section == "peer":
                config.peers.append(WgQuickPeer())
            elif section != "interface":
                raise ValueError(f"line {number}: unknown section [{line[1:-1].strip()}]")
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key:
            raise ValueError(f"line {number}: not a key = value line")
        try:
            if section == "interface":
                _interface(config, key, value)
            elif section == "peer":
                _peer(config.peers[-1], key, value)
            else:
                raise ValueError("a key before any [Interface] or [Peer] section")
        except ValueError as exc:
            shown = key if key in _SECRET else f"{key} = {value}"
            raise ValueError(f"line {number} ({shown}): {exc}") from None
    if not config.private_key:
        raise ValueError("[Interface] has no PrivateKey")
    if not config.addresses:
        raise ValueError("[Interface] has no Address: the tunnel's own address is needed")
    for peer in config.peers:
        if not peer.public_key:
            raise ValueError("a [Peer] has no PublicKey")
    return config


def _interface(config: WgQuickConfig, key: str, value: str) -> None:
    if key == "privatekey":
        config.private_key = value
    elif key == "address":
        config.addresses += [ipaddress.ip_interface(a) for a in _items(value)]
    elif key == "dns":
        for item in _items(value):
            try:
                config.dns.append(str(ipaddress.ip_address(item)))
            except ValueError:
                config.search.append(item)  # wg-quick: a name is a search domain
    elif key == "mtu":
        config.mtu = int(value)
        if not 1280 <= config.mtu <= 65535:
            raise ValueError("MTU out of range 1280..65535")
    elif key == "listenport":
        config.listen_port = int(value)
        if not 0 <= config.listen_port <= 65535:
            raise ValueError("port out of range")
    elif key not in _IGNORED:
        raise ValueError("unknown key in [Interface]")


def _peer(peer: WgQuickPeer, key: str, value: str) -> None:
    if key == "publickey":
        peer.public_key = value
    elif key == "presharedkey":
        peer.preshared_key = value
    elif key == "endpoint":
        peer.endpoint = value
    elif key == "allowedips":
        peer.allowed_ips += [str(ipaddress.ip_network(a, strict=False)) for a in _items(value)]
    elif key == "persistentkeepalive":
        peer.persistent_keepalive = 0 if value == "off" else int(value)
        if not 0 <= peer.persistent_keepalive <= 65535:
            raise ValueError("keepalive out of range")
    else:
        raise ValueError("unknown key in [Peer]")

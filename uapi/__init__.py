"""The WireGuard cross-platform UAPI text protocol (sans-IO) and a client.

Modules:

- `uapi.errors`     -- `UapiError` and the negative errno values wireguard-go sends.
- `uapi.values`     -- value syntax (keys, numbers, addresses, prefixes, endpoints)
                       parsed and printed exactly as wireguard-go does.
- `uapi.prefix`     -- prefixes packed in one int, parsed and printed fast (the
                       allowed-IPs table keeps them as they are).
- `uapi.operations` -- typed ``set`` operations and the lines that request them.
- `uapi.protocol`   -- the streaming server-side parser (`ServerConnection`) and
                       its events; re-exports the reply writers.
- `uapi.responses`  -- `DeviceInfo`/`PeerInfo`, `format_get`, `format_errno`, and
                       the client-side reply reader and parsers.
- `uapi.client`     -- a blocking `Client` (the only module that opens a socket).

This package never imports `wgpy`.
"""

from typing import TYPE_CHECKING, Any

__all__ = ["Client"]

if TYPE_CHECKING:
    from uapi.client import Client


def __getattr__(name: str) -> Any:
    # `uapi.Client` on first use: the sans-IO modules (which wgpy's core imports) must not
    # pull in `socket` through the package.
    if name == "Client":
        from uapi.client import Client
        return Client
    raise AttributeError(f"module 'uapi' has no attribute {name!r}")

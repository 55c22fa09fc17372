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

from uapi.client import Client

__all__ = ["Client"]

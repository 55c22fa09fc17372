"""wgpy: WireGuard in Python, a drop-in for wireguard-go driven by `wg` and `wg-quick`.

The public API (docs/api.md), importable from here:

- `Device`: a WireGuard interface run by this process, on a TUN (`Device.create`, root) or
  on an in-memory packet interface (`Device.in_memory`, no root), configured with what
  UAPI takes (`configure`, `set`) and read back as `get` reports it (`state`);
- `PeerConfig`: one peer's keys, endpoint, allowed IPs and keepalive for `configure`;
- `Tunnel`: one tunnel to one peer over UDP, without a TUN and without root;
- `Network`: TCP and UDP sockets (blocking and asyncio) through a `Tunnel`, on the
  userspace TCP/IP stack `wgpy.netstack`;
- `generate_private_key`, `public_key`: X25519 keys as raw bytes (`wg genkey`, `wg pubkey`);
- the sans-IO core for programs that bring their own I/O: `wgpy.noise.interface.Interface`;
- a UAPI client for any implementation's socket: `uapi.Client` (the `uapi` package).

Names are imported on first use, so `import wgpy` stays cheap for the daemon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Device", "PeerConfig", "Tunnel", "Network", "generate_private_key", "public_key",
           "__version__"]

_WHERE = {
    "Device": "wgpy.api.embedded",
    "PeerConfig": "wgpy.api.embedded",
    "Tunnel": "wgpy.api.tunnel",
    "Network": "wgpy.api.network",
    "generate_private_key": "wgpy.crypto",
    "public_key": "wgpy.crypto",
}

if TYPE_CHECKING:
    from wgpy.crypto import generate_private_key, public_key
    from wgpy.api.embedded import Device, PeerConfig
    from wgpy.api.network import Network
    from wgpy.api.tunnel import Tunnel


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'wgpy' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

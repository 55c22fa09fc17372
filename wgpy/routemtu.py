"""The MTUs of the routes that lead into the interface, for padding (kernel send.c).

The kernel pads a packet's plaintext to a multiple of 16 but never past the MTU of the route
the packet took (`calculate_skb_padding` with `dst_mtu(skb_dst(skb))`, falling back to the
device MTU): with `ip route add 192.168.241.2/32 dev wg0 mtu 1299` a 1297-byte packet is
padded to 1299, not to 1312 or to the interface's 1300. A TUN read does not say which route
a packet took, so the device reads the routes through the interface from netlink and hands
them here, and the padding code asks for the MTU of a packet's destination by longest prefix
among them (the main table only: policy routing is not modelled).

Only packets whose 16-byte multiple would reach past the smallest such MTU (`floor`) can be
affected, so every other packet costs one comparison; with no route carrying an MTU there
is no table at all. The module is pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from wgpy.constants import MESSAGE_PADDING_MULTIPLE

__all__ = ["Route", "RouteMTUs"]


@dataclass(frozen=True)
class Route:
    """A route into the interface: destination prefix and its MTU (None: the device's)."""

    address: bytes  # 4 or 16 bytes, host bits zero
    prefix_len: int
    mtu: int | None


class RouteMTUs:
    """Longest-prefix lookup of route MTUs, for the few packets near those MTUs."""

    def __init__(self, routes: list[Route]) -> None:
        mtus = [r.mtu for r in routes if r.mtu]
        self.floor = min(mtus)  # raises on no MTU at all: callers build none then
        # Per family, longest prefix first: (prefix_len, network int, mtu).
        self._by_family: dict[int, list[tuple[int, int, int | None]]] = {4: [], 16: []}
        for r in routes:
            bits = len(r.address) * 8
            network = int.from_bytes(r.address, "big") >> (bits - r.prefix_len) \
                if r.prefix_len else 0
            self._by_family[len(r.address)].append((r.prefix_len, network, r.mtu))
        for entries in self._by_family.values():
            entries.sort(key=lambda e: -e[0])

    @classmethod
    def build(cls, routes: list[Route]) -> RouteMTUs | None:
        """A table, or None when no route carries an MTU (nothing to look up)."""
        return cls(routes) if any(r.mtu for r in routes) else None

    def mtu_for(self, packet: bytes, device_mtu: int) -> int:
        """The MTU bounding `packet`'s padding: its route's, else the device's."""
        n = len(packet)
        if -(-n // MESSAGE_PADDING_MULTIPLE) * MESSAGE_PADDING_MULTIPLE <= self.floor \
                or n < 20:
            return device_mtu  # padding cannot reach any route's MTU
        version = packet[0] >> 4
        if version == 4:
            dst, size = packet[16:20], 4
        elif version == 6 and n >= 40:
            dst, size = packet[24:40], 16
        else:
            return device_mtu
        value, bits = int.from_bytes(dst, "big"), size * 8
        for prefix_len, network, mtu in self._by_family[size]:
            if (value >> (bits - prefix_len) if prefix_len else 0) == network:
                return min(mtu, device_mtu) if mtu else device_mtu
        return device_mtu

"""The allowed-IPs table: WireGuard's cryptokey routing.

Theory of operation
-------------------
Every peer owns a set of IP prefixes (its "allowed IPs"). The table serves two purposes on
the packet path:

* **Outbound routing.** A packet read from the TUN device is sent to the peer that owns the
  longest prefix matching its *destination* address; no match means the packet is dropped
  (ICMP "no route" in the kernel).
* **Inbound filtering.** A packet decrypted from peer P is accepted only if the longest prefix
  matching its *source* address is owned by P; otherwise it is dropped as spoofed.

A prefix belongs to at most one peer: inserting a prefix that another peer owns moves it
(as the kernel and wireguard-go do), and removing a prefix by prefix only succeeds for its
owner (wireguard-go ``Remove``).

Implementation: a longest-prefix table per address family rather than a bit trie. For each
prefix length present there is a dict ``{masked address int: peer}``; a lookup turns the raw
address bytes into an int once and probes the present lengths from longest to shortest with a
precomputed mask, so it costs at most one dict probe per distinct prefix length (at most 33
or 129, usually a handful). Results are identical to the kernel's trie. A per-peer index in
insertion order makes ``entries_for_peer`` and ``remove_by_peer`` O(entries of that peer).

The module is pure: it does no I/O and keeps no clock.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Generic, TypeAlias, TypeVar

__all__ = ["AllowedIPs", "Network"]

T = TypeVar("T")

Network: TypeAlias = IPv4Network | IPv6Network

# Key of one entry in a peer's index: (address bits 32 or 128, masked address, prefix length).
_Key: TypeAlias = tuple[int, int, int]


def _mask(bits: int, prefix_len: int) -> int:
    """The netmask of `prefix_len` ones followed by zeros, as an int of `bits` bits."""
    return ((1 << prefix_len) - 1) << (bits - prefix_len)


class _Family(Generic[T]):
    """The prefixes of one address family (32-bit IPv4 or 128-bit IPv6)."""

    __slots__ = ("bits", "masks", "tables", "probes")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.masks: list[int] = [_mask(bits, n) for n in range(bits + 1)]
        # prefix length -> {masked address: peer}; only non-empty tables are kept.
        self.tables: dict[int, dict[int, T]] = {}
        # (mask, table) for every present prefix length, longest first.
        self.probes: list[tuple[int, dict[int, T]]] = []

    def _rebuild_probes(self) -> None:
        masks, tables = self.masks, self.tables
        self.probes = [(masks[n], tables[n]) for n in sorted(tables, reverse=True)]

    def table_for_insert(self, prefix_len: int) -> dict[int, T]:
        table = self.tables.get(prefix_len)
        if table is None:
            table = self.tables[prefix_len] = {}
            self._rebuild_probes()
        return table

    def discard(self, prefix_len: int, masked: int) -> None:
        table = self.tables[prefix_len]
        del table[masked]
        if not table:
            del self.tables[prefix_len]
            self._rebuild_probes()


class AllowedIPs(Generic[T]):
    """Longest-prefix table mapping IPv4 and IPv6 prefixes to peers.

    Peers are arbitrary hashable objects other than ``None`` and are compared by identity.
    """

    __slots__ = ("_v4", "_v6", "_by_peer", "_count")

    def __init__(self) -> None:
        self._v4: _Family[T] = _Family(32)
        self._v6: _Family[T] = _Family(128)
        # id(peer) -> (peer, {key: network}) with keys in insertion order. Keyed by id so that
        # peers are compared by identity whatever their __eq__; holding the peer keeps it alive,
        # so its id cannot be reused by another object while the entry exists.
        self._by_peer: dict[int, tuple[T, dict[_Key, Network]]] = {}
        self._count = 0

    def _family(self, network: Network) -> _Family[T]:
        if isinstance(network, IPv4Network):
            return self._v4
        if isinstance(network, IPv6Network):
            return self._v6
        raise TypeError(f"expected IPv4Network or IPv6Network, got {type(network).__name__}")

    def insert(self, network: Network, peer: T) -> None:
        """Give `network` to `peer`, taking it from its previous owner if any.

        Host bits are ignored (``10.0.0.1/24`` is stored as ``10.0.0.0/24``). Re-inserting a
        prefix the peer already owns keeps its place in ``entries_for_peer``.
        """
        if peer is None:
            raise ValueError("peer must not be None")
        family = self._family(network)
        prefix_len = network.prefixlen
        address = int(network.network_address)
        masked = address & family.masks[prefix_len]
        table = family.table_for_insert(prefix_len)
        key = (family.bits, masked, prefix_len)
        old = table.get(masked)
        if old is peer:
            return
        if old is None:
            self._count += 1
        else:
            old_entries = self._by_peer[id(old)][1]
            del old_entries[key]
            if not old_entries:
                del self._by_peer[id(old)]
        table[masked] = peer
        entry = self._by_peer.get(id(peer))
        if entry is None:
            entry = self._by_peer[id(peer)] = (peer, {})
        # ipaddress already clears host bits of a network built with strict=False, so the
        # caller's object is normally canonical and stored as is.
        if address != masked:
            network = type(network)((masked, prefix_len))
        entry[1][key] = network

    def remove(self, network: Network, peer: T) -> bool:
        """Remove `network` if `peer` owns it; return whether it was removed."""
        family = self._family(network)
        prefix_len = network.prefixlen
        masked = int(network.network_address) & family.masks[prefix_len]
        table = family.tables.get(prefix_len)
        if table is None or table.get(masked) is not peer:
            return False
        family.discard(prefix_len, masked)
        self._count -= 1
        entries = self._by_peer[id(peer)][1]
        del entries[(family.bits, masked, prefix_len)]
        if not entries:
            del self._by_peer[id(peer)]
        return True

    def remove_by_peer(self, peer: T) -> None:
        """Remove every prefix owned by `peer`."""
        entry = self._by_peer.pop(id(peer), None)
        if entry is None:
            return
        for bits, masked, prefix_len in entry[1]:
            (self._v4 if bits == 32 else self._v6).discard(prefix_len, masked)
        self._count -= len(entry[1])

    def lookup(self, addr: bytes | bytearray | memoryview) -> T | None:
        """The peer owning the longest prefix that contains `addr`, or None.

        `addr` is a raw address as found in an IP header (bytes or a byte slice of a packet):
        4 bytes for IPv4, 16 for IPv6.
        Any other length matches nothing.
        """
        n = len(addr)
        if n == 4:
            probes = self._v4.probes
        elif n == 16:
            probes = self._v6.probes
        else:
            return None
        a = int.from_bytes(addr, "big")
        for mask, table in probes:
            peer = table.get(a & mask)
            if peer is not None:
                return peer
        return None

    def entries_for_peer(self, peer: T) -> list[Network]:
        """The prefixes owned by `peer`, in the order they were first inserted."""
        entry = self._by_peer.get(id(peer))
        if entry is None:
            return []
        return list(entry[1].values())

    def clear(self) -> None:
        """Remove every prefix."""
        self._v4 = _Family(32)
        self._v6 = _Family(128)
        self._by_peer.clear()
        self._count = 0

    def __len__(self) -> int:
        """The number of prefixes in the table."""
        return self._count

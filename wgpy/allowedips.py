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
insertion order makes ``prefixes_for_peer`` and ``remove_by_peer`` O(entries of that peer).
Prefixes are `uapi.prefix.Prefix` ints (address, length and family packed in one int), the
values the UAPI parser produces, so a ``set`` inserts what it parsed without converting it,
and the per-peer index holds the very ints ``get`` prints.

The module is pure: it does no I/O and keeps no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from typing import Generic, TypeAlias, TypeVar

from uapi.prefix import MASK4, MASK6, Prefix, prefix_network, prefix_of

__all__ = ["AllowedIPs", "Network", "Prefix"]

T = TypeVar("T")

_KIND = (0x1FF).__and__  # a prefix's length and family: which table holds it

Network: TypeAlias = IPv4Network | IPv6Network


class _Family(Generic[T]):
    """The prefixes of one address family (32-bit IPv4 or 128-bit IPv6)."""

    __slots__ = ("bits", "masks", "tables", "probes")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.masks: list[int] = MASK4 if bits == 32 else MASK6
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
    Prefixes are `Prefix` ints (``uapi.prefix``) or `ipaddress` networks.
    """

    __slots__ = ("_v4", "_v6", "_by_peer", "_count")

    def __init__(self) -> None:
        self._v4: _Family[T] = _Family(32)
        self._v6: _Family[T] = _Family(128)
        # id(peer) -> (peer, {prefix: None}) with prefixes in insertion order. Keyed by id so
        # that peers are compared by identity whatever their __eq__; holding the peer keeps it
        # alive, so its id cannot be reused by another object while the entry exists.
        self._by_peer: dict[int, tuple[T, dict[Prefix, None]]] = {}
        self._count = 0

    def insert(self, network: Network | Prefix, peer: T) -> None:
        """Give `network` to `peer`, taking it from its previous owner if any.

        Host bits are ignored (``10.0.0.1/24`` is stored as ``10.0.0.0/24``). Re-inserting a
        prefix the peer already owns moves it to the end of ``entries_for_peer`` (kernel
        allowedips.c `add`: ``list_move_tail``; wireguard-go removes and re-adds it).
        """
        self.insert_many((prefix_of(network),), peer)

    def insert_many(self, prefixes: Iterable[Prefix], peer: T) -> None:
        """`insert` for each prefix, in order (the bulk form a big ``set`` uses)."""
        if peer is None:
            raise ValueError("peer must not be None")
        by_peer = self._by_peer
        entry = by_peer.get(id(peer))
        if entry is None:
            entry = by_peer[id(peer)] = (peer, {})
        index = entry[1]
        v4, v6 = self._v4, self._v6
        tables4, tables6 = v4.tables, v6.tables
        before = len(index)
        moved = 0
        for prefix in prefixes:
            prefix_len = (prefix >> 1) & 0xFF
            if prefix & 1:
                table = tables6.get(prefix_len)
                if table is None:
                    table = v6.table_for_insert(prefix_len)
            else:
                table = tables4.get(prefix_len)
                if table is None:
                    table = v4.table_for_insert(prefix_len)
            masked = prefix >> 9
            old = table.get(masked)
            if old is None:
                table[masked] = peer
            elif old is peer:  # the peer's already: it goes to the end (list_move_tail)
                del index[prefix]
            else:  # the prefix moves from its previous owner
                table[masked] = peer
                old_index = by_peer[id(old)][1]
                del old_index[prefix]
                if not old_index:
                    del by_peer[id(old)]
                moved += 1
            index[prefix] = None
        self._count += len(index) - before - moved
        if not index:
            del by_peer[id(peer)]

    def remove(self, network: Network | Prefix, peer: T) -> bool:
        """Remove `network` if `peer` owns it; return whether it was removed."""
        prefix = prefix_of(network)
        masked, prefix_len = prefix >> 9, (prefix >> 1) & 0xFF
        family = self._v6 if prefix & 1 else self._v4
        table = family.tables.get(prefix_len)
        if table is None or table.get(masked) is not peer:
            return False
        family.discard(prefix_len, masked)
        self._count -= 1
        index = self._by_peer[id(peer)][1]
        del index[prefix]
        if not index:
            del self._by_peer[id(peer)]
        return True

    def remove_by_peer(self, peer: T) -> None:
        """Remove every prefix owned by `peer`."""
        entry = self._by_peer.pop(id(peer), None)
        if entry is None:
            return
        index = entry[1]
        # A table whose every entry is this peer's goes as a whole (a big configuration's
        # peer often owns all of its lengths); only the others lose entries one by one.
        per_kind = Counter(map(_KIND, index))  # family and length -> entries of the peer
        partial = False
        for kind, count in per_kind.items():
            family = self._v6 if kind & 1 else self._v4
            if len(family.tables[kind >> 1]) == count:
                del family.tables[kind >> 1]
            else:
                partial = True
        if partial:
            tables4, tables6 = self._v4.tables, self._v6.tables
            for prefix in index:
                table = (tables6 if prefix & 1 else tables4).get((prefix >> 1) & 0xFF)
                if table is not None:
                    del table[prefix >> 9]
        for family in (self._v4, self._v6):  # drop the tables left empty; new probes
            empty = [n for n, table in family.tables.items() if not table]
            for n in empty:
                del family.tables[n]
            if empty or len(family.probes) != len(family.tables):
                family._rebuild_probes()
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

    def prefixes_for_peer(self, peer: T) -> list[Prefix]:
        """The prefixes owned by `peer`, in the order they were first inserted (a copy)."""
        entry = self._by_peer.get(id(peer))
        return list(entry[1]) if entry is not None else []

    def entries_for_peer(self, peer: T) -> list[Network]:
        """`prefixes_for_peer` as `ipaddress` networks."""
        return [prefix_network(p) for p in self.prefixes_for_peer(peer)]

    def clear(self) -> None:
        """Remove every prefix."""
        self._v4 = _Family(32)
        self._v6 = _Family(128)
        self._by_peer.clear()
        self._count = 0

    def __len__(self) -> int:
        """The number of prefixes in the table."""
        return self._count

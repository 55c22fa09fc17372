"""Tests of wgpy.allowedips (cryptokey routing table).

The hand-written cases follow the style of wireguard-go device/allowedips_test.go
(TestTrieIPv4 / TestTrieIPv6) and of the kernel's drivers/net/wireguard/selftest/allowedips.c:
insert a handful of overlapping prefixes for a few peers, then assert which peer each address
resolves to. The cases themselves are our own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest

from uapi.prefix import make_prefix, prefix_network, prefix_of
from wgpy.allowedips import AllowedIPs, Network


@dataclass(frozen=True)
class Peer:
    """A hashable stand-in for a peer; equal names compare equal but are distinct peers."""

    name: str


def net(text: str) -> Network:
    return ip_network(text, strict=False)


def addr(text: str) -> bytes:
    return ip_address(text).packed


def nets(table: AllowedIPs[Peer], peer: Peer) -> list[str]:
    return [str(n) for n in table.entries_for_peer(peer)]


A, B, C, D, E, F, G, H = (Peer(x) for x in "abcdefgh")


def test_ipv4_overlapping_prefixes() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("172.16.8.0/24"), A)
    t.insert(net("172.16.8.9/32"), B)
    t.insert(net("172.16.0.0/12"), C)
    t.insert(net("100.64.3.96/27"), D)
    t.insert(net("100.64.3.100/27"), C)  # same prefix after masking: moves from D to C
    t.insert(net("0.0.0.0/0"), E)
    t.insert(net("198.51.96.0/19"), G)
    t.insert(net("198.51.100.77/26"), H)  # host bits masked off
    t.insert(net("10.20.0.0/25"), A)
    t.insert(net("10.20.0.128/25"), B)
    t.insert(net("10.30.0.0/30"), A)
    t.insert(net("10.30.0.4/30"), B)
    t.insert(net("10.30.0.8/29"), C)
    t.insert(net("10.30.0.16/29"), D)

    assert len(t) == 13
    assert t.lookup(addr("172.16.8.1")) is A
    assert t.lookup(addr("172.16.8.0")) is A
    assert t.lookup(addr("172.16.8.255")) is A
    assert t.lookup(addr("172.16.8.9")) is B
    assert t.lookup(addr("172.16.9.9")) is C
    assert t.lookup(addr("172.31.255.255")) is C
    assert t.lookup(addr("172.32.0.0")) is E
    assert t.lookup(addr("100.64.3.97")) is C
    assert t.lookup(addr("100.64.3.127")) is C
    assert t.lookup(addr("100.64.3.128")) is E
    assert t.lookup(addr("198.51.97.1")) is G
    assert t.lookup(addr("198.51.127.255")) is G
    assert t.lookup(addr("198.51.100.64")) is H
    assert t.lookup(addr("198.51.100.127")) is H
    assert t.lookup(addr("198.51.100.128")) is G
    assert t.lookup(addr("10.20.0.5")) is A
    assert t.lookup(addr("10.20.0.200")) is B
    assert t.lookup(addr("10.30.0.3")) is A
    assert t.lookup(addr("10.30.0.6")) is B
    assert t.lookup(addr("10.30.0.15")) is C
    assert t.lookup(addr("10.30.0.23")) is D
    assert t.lookup(addr("10.30.0.24")) is E
    assert t.lookup(addr("255.255.255.255")) is E
    assert nets(t, D) == ["10.30.0.16/29"]
    assert nets(t, H) == ["198.51.100.64/26"]

    # Removing the default route leaves unmatched addresses unrouted.
    assert t.remove(net("0.0.0.0/0"), E)
    assert t.lookup(addr("172.32.0.0")) is None
    assert t.lookup(addr("10.30.0.24")) is None

    # Removing a more specific prefix exposes the covering one.
    assert t.remove(net("172.16.8.9/32"), B)
    assert t.lookup(addr("172.16.8.9")) is A
    assert t.remove(net("172.16.8.0/24"), A)
    assert t.lookup(addr("172.16.8.9")) is C


def test_ipv6_overlapping_prefixes() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("2001:db8:1:2::/64"), A)
    t.insert(net("2001:db8:1:2::1234/128"), B)
    t.insert(net("2001:db8::/32"), C)
    t.insert(net("2001:db8:ff00::/40"), D)
    t.insert(net("::/0"), E)
    t.insert(net("fd00:aaaa:bbbb:cccc:dddd::/72"), F)
    t.insert(net("fd00:aaaa:bbbb:cccc:dd80::/73"), G)  # host bits of a /73 masked
    t.insert(net("::1/128"), H)

    assert t.lookup(addr("2001:db8:1:2::1")) is A
    assert t.lookup(addr("2001:db8:1:2:ffff:ffff:ffff:ffff")) is A
    assert t.lookup(addr("2001:db8:1:2::1234")) is B
    assert t.lookup(addr("2001:db8:1:3::1234")) is C
    assert t.lookup(addr("2001:db8:feff::1")) is C
    assert t.lookup(addr("2001:db8:ffff::1")) is D
    assert t.lookup(addr("2001:db8:ff12::1")) is D
    assert t.lookup(addr("2001:db9::")) is E
    assert t.lookup(addr("fd00:aaaa:bbbb:cccc:dd00::1")) is F
    assert t.lookup(addr("fd00:aaaa:bbbb:cccc:dd7f:ffff:ffff:ffff")) is F
    assert t.lookup(addr("fd00:aaaa:bbbb:cccc:dd80::")) is G
    assert t.lookup(addr("fd00:aaaa:bbbb:cccc:ddff:ffff:ffff:ffff")) is G
    assert t.lookup(addr("fd00:aaaa:bbbb:cccc:de00::")) is E
    assert t.lookup(addr("::1")) is H
    assert t.lookup(addr("::2")) is E
    assert nets(t, G) == ["fd00:aaaa:bbbb:cccc:dd80::/73"]


def test_families_are_separate() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("0.0.0.0/0"), A)
    assert t.lookup(addr("::")) is None
    assert t.lookup(addr("::ffff:10.0.0.1")) is None  # an IPv4-mapped address is IPv6
    t.insert(net("::/0"), B)
    assert t.lookup(addr("0.0.0.0")) is A
    assert t.lookup(addr("::")) is B
    assert t.lookup(addr("10.1.2.3")) is A
    assert len(t) == 2


def test_hosts_and_default_routes() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("0.0.0.0/0"), A)
    t.insert(net("::/0"), A)
    t.insert(net("192.0.2.1/32"), B)
    t.insert(net("2001:db8::1/128"), B)
    assert t.lookup(addr("192.0.2.1")) is B
    assert t.lookup(addr("192.0.2.0")) is A
    assert t.lookup(addr("192.0.2.2")) is A
    assert t.lookup(addr("2001:db8::1")) is B
    assert t.lookup(addr("2001:db8::")) is A
    assert t.lookup(addr("2001:db8::2")) is A
    assert nets(t, A) == ["0.0.0.0/0", "::/0"]
    assert nets(t, B) == ["192.0.2.1/32", "2001:db8::1/128"]


def test_bad_address_lengths_match_nothing() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("0.0.0.0/0"), A)
    t.insert(net("::/0"), A)
    for raw in (b"", b"\x0a", b"\x0a\x00\x00", b"\x0a\x00\x00\x00\x00", bytes(15), bytes(17)):
        assert t.lookup(raw) is None
    assert t.lookup(memoryview(bytes(20))[12:16]) is A  # a slice of an IPv4 header works


def test_empty_table() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    assert len(t) == 0
    assert t.lookup(addr("10.0.0.1")) is None
    assert t.lookup(addr("fe80::1")) is None
    assert t.entries_for_peer(A) == []
    assert not t.remove(net("10.0.0.0/8"), A)
    t.remove_by_peer(A)
    assert len(t) == 0


def test_reassign_prefix_to_another_peer() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("10.0.0.0/24"), A)
    t.insert(net("10.0.1.0/24"), A)
    t.insert(net("10.0.0.77/24"), B)  # same prefix after masking
    assert len(t) == 2
    assert t.lookup(addr("10.0.0.1")) is B
    assert nets(t, A) == ["10.0.1.0/24"]
    assert nets(t, B) == ["10.0.0.0/24"]
    # The previous owner can no longer remove it.
    assert not t.remove(net("10.0.0.0/24"), A)
    assert t.lookup(addr("10.0.0.1")) is B
    # Moving the last prefix of a peer away leaves it with none.
    t.insert(net("10.0.1.0/24"), B)
    assert nets(t, A) == []
    assert nets(t, B) == ["10.0.0.0/24", "10.0.1.0/24"]
    assert len(t) == 2


def test_remove_only_by_owner() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("10.0.0.0/16"), A)
    t.insert(net("fd00::/64"), A)
    assert not t.remove(net("10.0.0.0/16"), B)
    assert not t.remove(net("10.0.0.0/17"), A)  # a different prefix length
    assert not t.remove(net("10.1.0.0/16"), A)
    assert not t.remove(net("fd00::/63"), A)
    assert len(t) == 2
    assert t.remove(net("10.0.255.255/16"), A)  # host bits masked on remove too
    assert not t.remove(net("10.0.0.0/16"), A)  # already gone
    assert t.lookup(addr("10.0.0.1")) is None
    assert nets(t, A) == ["fd00::/64"]
    assert t.remove(net("fd00::1/64"), A)
    assert len(t) == 0
    assert nets(t, A) == []


def test_peers_compared_by_identity() -> None:
    first, second = Peer("twin"), Peer("twin")
    assert first == second and hash(first) == hash(second)
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("10.0.0.0/8"), first)
    assert t.entries_for_peer(second) == []
    assert not t.remove(net("10.0.0.0/8"), second)
    t.remove_by_peer(second)
    assert t.lookup(addr("10.1.1.1")) is first
    t.insert(net("10.0.0.0/8"), second)
    assert t.lookup(addr("10.1.1.1")) is second
    assert t.entries_for_peer(first) == []


def test_remove_by_peer() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("10.0.0.0/8"), A)
    t.insert(net("10.1.0.0/16"), B)
    t.insert(net("10.1.2.0/24"), A)
    t.insert(net("fd00::/8"), A)
    t.insert(net("fd00:1::/32"), B)
    t.remove_by_peer(A)
    assert len(t) == 2
    assert nets(t, A) == []
    assert t.lookup(addr("10.1.2.3")) is B
    assert t.lookup(addr("10.2.0.0")) is None
    assert t.lookup(addr("fd00:1::1")) is B
    assert t.lookup(addr("fd00:2::1")) is None
    assert nets(t, B) == ["10.1.0.0/16", "fd00:1::/32"]
    t.remove_by_peer(A)  # no-op
    t.remove_by_peer(B)
    assert len(t) == 0
    assert t.lookup(addr("10.1.2.3")) is None
    # The table is usable afterwards.
    t.insert(net("10.1.2.0/24"), C)
    assert t.lookup(addr("10.1.2.3")) is C


def test_entries_for_peer_order() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    order = ["192.168.0.0/16", "::/0", "10.0.0.1/32", "fd00::/8", "0.0.0.0/0", "10.0.0.0/8"]
    for text in order:
        t.insert(net(text), A)
    t.insert(net("10.0.0.1/32"), A)  # a re-insert moves it to the end (list_move_tail)
    t.insert(net("192.168.5.5/16"), A)
    order = [x for x in order if x not in ("10.0.0.1/32", "192.168.0.0/16")] + [
        "10.0.0.1/32", "192.168.0.0/16"]
    assert nets(t, A) == order
    assert len(t) == len(order)
    # Removing and re-adding moves it to the end.
    assert t.remove(net("::/0"), A)
    t.insert(net("::/0"), A)
    assert nets(t, A) == [x for x in order if x != "::/0"] + ["::/0"]
    # Taken from another peer and given back: also at the end.
    t.insert(net("fd00::/8"), B)
    t.insert(net("fd00::/8"), A)
    assert nets(t, A)[-1] == "fd00::/8"
    assert all(isinstance(n, (IPv4Network, IPv6Network)) for n in t.entries_for_peer(A))


def test_clear() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert(net("10.0.0.0/8"), A)
    t.insert(net("::/0"), B)
    t.clear()
    assert len(t) == 0
    assert t.lookup(addr("10.0.0.1")) is None
    assert t.lookup(addr("::1")) is None
    assert nets(t, A) == [] and nets(t, B) == []
    t.insert(net("10.0.0.0/8"), B)
    assert t.lookup(addr("10.0.0.1")) is B
    assert len(t) == 1


def test_rejects_bad_arguments() -> None:
    t: AllowedIPs[Peer | None] = AllowedIPs()
    with pytest.raises(ValueError):
        t.insert(net("10.0.0.0/8"), None)
    with pytest.raises(TypeError):
        t.insert("10.0.0.0/8", A)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.remove(ip_address("10.0.0.1"), A)  # type: ignore[arg-type]
    assert len(t) == 0


# ---------------------------------------------------------------------------------------------
# Randomized comparison against a slow reference
# ---------------------------------------------------------------------------------------------


class Reference:
    """A list of (network, peer) with a linear scan for the longest matching prefix."""

    def __init__(self) -> None:
        self.entries: list[tuple[Network, Peer]] = []

    def _index(self, network: Network) -> int | None:
        for i, (n, _) in enumerate(self.entries):
            if n == network:
                return i
        return None

    def insert(self, network: Network, peer: Peer) -> None:
        i = self._index(network)
        if i is not None:
            del self.entries[i]  # the kernel's list_move_tail, whoever owned it
        self.entries.append((network, peer))

    def remove(self, network: Network, peer: Peer) -> bool:
        i = self._index(network)
        if i is None or self.entries[i][1] is not peer:
            return False
        del self.entries[i]
        return True

    def remove_by_peer(self, peer: Peer) -> None:
        self.entries = [(n, p) for n, p in self.entries if p is not peer]

    def lookup(self, raw: bytes) -> Peer | None:
        a = ip_address(raw)
        best: tuple[int, Peer] | None = None
        for n, p in self.entries:
            if n.version == a.version and a in n and (best is None or n.prefixlen > best[0]):
                best = (n.prefixlen, p)
        return None if best is None else best[1]

    def entries_for_peer(self, peer: Peer) -> list[Network]:
        return [n for n, p in self.entries if p is peer]


@pytest.mark.parametrize("bits", [32, 128])
def test_random_against_reference(bits: int) -> None:
    rng = random.Random(0x5EED + bits)
    peers = [Peer(f"p{i}") for i in range(8)]
    cls = IPv4Network if bits == 32 else IPv6Network
    nbytes = bits // 8
    # A few clusters so that prefixes overlap often.
    bases = [rng.getrandbits(bits) for _ in range(4)]

    def random_network() -> Network:
        plen = rng.choice([rng.randint(0, bits), rng.randint(bits - 12, bits)])
        spread = rng.choice([8, 24, bits])
        address = rng.choice(bases) ^ rng.getrandbits(spread)
        return cls((address, plen), strict=False)

    def random_address(ref: Reference) -> bytes:
        if ref.entries and rng.random() < 0.7:
            n = rng.choice(ref.entries)[0]
            a = int(n.network_address) + rng.randrange(n.num_addresses)
            if rng.random() < 0.3:
                a ^= 1 << rng.randrange(bits)  # just outside, sometimes
        else:
            a = rng.choice(bases) ^ rng.getrandbits(rng.choice([8, 24, bits]))
        return a.to_bytes(nbytes, "big")

    t: AllowedIPs[Peer] = AllowedIPs()
    ref = Reference()
    for step in range(2500):
        r = rng.random()
        if r < 0.6:
            network, peer = random_network(), rng.choice(peers)
            t.insert(network, peer)
            ref.insert(network, peer)
        elif r < 0.9:
            if ref.entries and rng.random() < 0.7:
                network, peer = rng.choice(ref.entries)
                peer = peer if rng.random() < 0.8 else rng.choice(peers)
            else:
                network, peer = random_network(), rng.choice(peers)
            assert t.remove(network, peer) == ref.remove(network, peer)
        elif r < 0.91:
            peer = rng.choice(peers)
            t.remove_by_peer(peer)
            ref.remove_by_peer(peer)
        else:
            peer = rng.choice(peers)
            assert t.entries_for_peer(peer) == ref.entries_for_peer(peer)
        assert len(t) == len(ref.entries)
        for _ in range(3):
            raw = random_address(ref)
            assert t.lookup(raw) is ref.lookup(raw), (step, raw.hex())
    for peer in peers:
        assert t.entries_for_peer(peer) == ref.entries_for_peer(peer)


# ---------------------------------------------------------------------------------------------
# Scale: as many prefixes for one peer as the kernel's netns.sh inserts (255 * 256 * 2)
# ---------------------------------------------------------------------------------------------


def test_many_prefixes_for_one_peer() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    other = Peer("other")
    t.insert(net("0.0.0.0/0"), other)
    t.insert(net("::/0"), other)
    for i in range(1, 256):
        for j in range(256):
            t.insert(IPv4Network(((10 << 24) | (i << 16) | (j << 8), 24)), A)
            t.insert(IPv6Network((((0xFD00 << 16 | i) << 16 | j) << 80, 48)), A)
    expected = 255 * 256 * 2
    assert expected == 130_560
    assert len(t) == expected + 2
    entries = t.entries_for_peer(A)
    assert len(entries) == expected
    assert str(entries[0]) == "10.1.0.0/24" and str(entries[1]) == "fd00:1::/48"
    assert str(entries[-1]) == "fd00:ff:ff::/48"
    assert t.lookup(addr("10.200.7.9")) is A
    assert t.lookup(addr("10.0.7.9")) is other
    assert t.lookup(addr("fd00:ff:ff:1::1")) is A
    assert t.lookup(addr("fd00:100::1")) is other
    t.remove_by_peer(A)
    assert len(t) == 2
    assert t.entries_for_peer(A) == []
    assert t.lookup(addr("10.200.7.9")) is other


# ---------------------------------------------------------------------------------------------
# Prefix values and bulk insertion (what a UAPI set hands over)
# ---------------------------------------------------------------------------------------------


def test_insert_many_is_insert_in_order() -> None:
    rng = random.Random(11)
    peers = [Peer(str(i)) for i in range(4)]
    pool = [prefix_of(net(f"10.{rng.randrange(4)}.{rng.randrange(4)}.0/{rng.choice([16, 24])}"))
            for _ in range(40)]
    pool += [prefix_of(net(f"fd00:{rng.randrange(4)}::/{rng.choice([32, 64])}")) for _ in range(40)]
    bulk: AllowedIPs[Peer] = AllowedIPs()
    single: AllowedIPs[Peer] = AllowedIPs()
    for _ in range(200):
        peer = rng.choice(peers)
        batch = [rng.choice(pool) for _ in range(rng.randrange(0, 6))]
        bulk.insert_many(batch, peer)
        for p in batch:
            single.insert(prefix_network(p), peer)
        if rng.random() < 0.1:
            victim = rng.choice(peers)
            bulk.remove_by_peer(victim)
            single.remove_by_peer(victim)
        if rng.random() < 0.2:
            p, victim = rng.choice(pool), rng.choice(peers)
            assert bulk.remove(p, victim) == single.remove(prefix_network(p), victim)
    assert len(bulk) == len(single)
    for peer in peers:
        assert bulk.prefixes_for_peer(peer) == single.prefixes_for_peer(peer)
        networks = [prefix_network(p) for p in single.prefixes_for_peer(peer)]
        assert bulk.entries_for_peer(peer) == networks
    for p in pool:
        packed = prefix_network(p).network_address.packed
        assert bulk.lookup(packed) is single.lookup(packed)


def test_prefixes_for_peer_is_a_copy_of_prefix_values() -> None:
    t: AllowedIPs[Peer] = AllowedIPs()
    t.insert_many([make_prefix(32, 0x0A000001, 8), make_prefix(128, 1, 128)], A)
    got = t.prefixes_for_peer(A)
    assert got == [prefix_of(net("10.0.0.0/8")), prefix_of(net("::1/128"))]
    got.clear()
    assert len(t.prefixes_for_peer(A)) == 2
    t.insert_many([], B)
    assert t.prefixes_for_peer(B) == [] and len(t) == 2
    t.insert_many([make_prefix(32, 0x0A000000, 8)], B)  # moves from A
    assert t.prefixes_for_peer(A) == [make_prefix(128, 1, 128)]
    assert t.lookup(addr("10.1.1.1")) is B
    with pytest.raises(ValueError):
        t.insert_many([make_prefix(32, 0, 0)], None)  # type: ignore[arg-type]

"""wgpy against Debian's wireguard-go, side by side, driven by the stock `wg` and by raw UAPI.

Each test starts both daemons, each in a namespace of its own (so both can be given the
same listen port), and gives both the same commands: every `wg set` option, `wg setconf`,
`addconf`, `syncconf`, `showconf`, every `wg show` form, and raw requests written to the
UAPI socket. Exit status, stdout and stderr of `wg`, and the raw replies (errno values
included), must be identical after normalizing only what legitimately differs: interface
names, a random listen port, the order of peers (compat/duo.py).

No traffic flows: the interfaces stay down, endpoints point at documentation addresses
that have no route in the namespaces (sends fail with ENETUNREACH), so handshake times
and transfer counters are zero on both sides. After every step the whole state
(`wg show IF dump`, `wg showconf IF`, a raw ``get``, and whether the port `get` reports is
the one bound) is compared too.

Every difference is collected and a test fails at its end with the full list, so one run
shows all of them. The one deliberate difference, ``allowed_ip=-prefix`` (newer protocol;
this wireguard-go rejects it), is left out.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from compat.duo import (
    BIG_COUNT,
    Duo,
    Keys,
    big_config,
    busy,
    raw,
    replace_port,
    sort_dump,
    sort_lines,
    sort_pretty,
)
from compat.lab import Lab, b64
from wgpy import crypto

pytestmark = pytest.mark.root

BIG_TIMEOUT = 120.0
# Fixed ports below the ephemeral range, so they never collide with a random listen port.
PORT_A, PORT_B, PORT_BUSY = 23456, 23457, 23458
# Endpoints with no route inside the test's namespaces: nothing leaves, nothing arrives.
EP4, EP6 = "192.0.2.1:12345", "[2001:db8::2]:2345"


@pytest.fixture
def duo() -> Iterator[Duo]:
    with Lab() as lab:
        w = lab.daemon(lab.namespace("uw"), "wgpy")
        g = lab.daemon(lab.namespace("ug"), "wireguard-go")
        yield Duo(lab, w, g)


# --- wg set ---------------------------------------------------------------------------------------

def set_steps(k: Keys) -> list[tuple[str, ...]]:
    """`wg set` with every option, changes and no-ops; {IF} stands for the interface."""
    IF = "{IF}"
    return [
        # private key: set, change, zero (/dev/null), set again
        ("set", IF, "private-key", k.path("k1")),
        ("set", IF, "private-key", k.path("k2")),
        ("set", IF, "private-key", "/dev/null"),
        ("set", IF, "private-key", k.path("k1")),
        ("set", IF, "private-key", k.path("k1")),  # unchanged
        # listen port: fixed, random, fixed
        ("set", IF, "listen-port", str(PORT_A)),
        ("set", IF, "listen-port", "0"),
        ("set", IF, "listen-port", str(PORT_A)),
        ("set", IF, "listen-port", str(PORT_A)),  # unchanged
        # fwmark: set, unchanged (hex and decimal), 0, off, max
        ("set", IF, "fwmark", "0x1234"),
        ("set", IF, "fwmark", "0x1234"),
        ("set", IF, "fwmark", "4660"),
        ("set", IF, "fwmark", "0"),
        ("set", IF, "fwmark", "0xffffffff"),
        ("set", IF, "fwmark", "off"),
        # peers: every option; IPv4 and [IPv6]:port endpoints
        ("set", IF, "peer", k.pub("p1"), "allowed-ips", "10.1.0.0/16,fd01::/64",
         "endpoint", EP4, "persistent-keepalive", "25", "preshared-key", k.path("psk")),
        ("set", IF, "peer", k.pub("p2"), "endpoint", EP6,
         "allowed-ips", "10.2.0.0/16, fd02::/64,10.2.3.4/32"),
        ("set", IF, "peer", k.pub("p3")),
        # allowed IPs: change; move a prefix to another peer; clear; non-canonical forms
        ("set", IF, "peer", k.pub("p1"), "allowed-ips", "10.1.1.0/24,10.9.0.0/16,fd01::/64"),
        ("set", IF, "peer", k.pub("p2"), "allowed-ips", "10.9.0.0/16,10.2.0.0/16"),
        ("set", IF, "peer", k.pub("p3"), "allowed-ips", "10.1.1.0/24"),
        ("set", IF, "peer", k.pub("p1"), "allowed-ips", ""),
        ("set", IF, "peer", k.pub("p1"), "allowed-ips",
         "10.1.2.3/16,fd01::1234/64,0.0.0.0/0,::/0,192.168.7.7"),
        ("set", IF, "peer", k.pub("p3"), "allowed-ips", "0.0.0.0/0"),  # steals the default
        ("set", IF, "peer", k.pub("p1"), "allowed-ips", "10.1.0.0/16,10.1.0.0/16,fd01::/64"),
        # keepalive and endpoint changes
        ("set", IF, "peer", k.pub("p1"), "persistent-keepalive", "off"),
        ("set", IF, "peer", k.pub("p1"), "persistent-keepalive", "65535"),
        ("set", IF, "peer", k.pub("p1"), "persistent-keepalive", "0"),
        ("set", IF, "peer", k.pub("p2"), "endpoint", "[::ffff:192.0.2.7]:1"),
        ("set", IF, "peer", k.pub("p2"), "endpoint", "[fe80::1%lo]:5"),
        ("set", IF, "peer", k.pub("p2"), "endpoint", "[2001:db8::0:0:1]:65535"),
        ("set", IF, "peer", k.pub("p2"), "endpoint", "192.0.2.9:0"),
        ("set", IF, "peer", k.pub("p1"), "preshared-key", "/dev/null"),
        ("set", IF, "peer", k.pub("p1"), "preshared-key", k.path("psk")),
        # remove; remove of a peer that does not exist
        ("set", IF, "peer", k.pub("p2"), "remove"),
        ("set", IF, "peer", k.pub("p2"), "remove"),
        ("set", IF, "peer", k.pub("k2"), "allowed-ips", "10.3.0.0/16", "remove"),
        # our own public key as a peer: ignored
        ("set", IF, "peer", k.pub("k1"), "allowed-ips", "10.7.0.0/16", "endpoint", EP4),
        # a private key whose public key is a peer's: that peer goes
        ("set", IF, "private-key", k.path("p3")),
        ("set", IF, "peer", k.pub("p3"), "allowed-ips", "10.8.0.0/16"),  # now our own key
        # everything in one command, several peers
        ("set", IF, "listen-port", str(PORT_B), "fwmark", "7", "private-key", k.path("k2"),
         "peer", k.pub("p2"), "endpoint", EP6, "allowed-ips", "10.2.0.0/16",
         "persistent-keepalive", "1", "peer", k.pub("p3"), "allowed-ips", "10.3.0.0/16",
         "peer", k.pub("p1"), "remove"),
        # wg refuses these itself (the daemon is not asked); same tool, same words
        ("set", IF, "listen-port", "65536"),
        ("set", IF, "peer", "not-a-key", "remove"),
        ("set", IF, "peer", k.pub("p1"), "endpoint", "192.0.2.1"),
    ]


def test_wg_set_every_option(duo: Duo) -> None:
    k = Keys(duo)
    IF = "{IF}"
    duo.same_state("fresh")
    for step in set_steps(k):
        duo.wg(*step, state=True)
    # a port in use: EADDRINUSE ("Address already in use"), for each address family
    for family in (socket.AF_INET, socket.AF_INET6):
        with busy(duo, PORT_BUSY, family):
            duo.wg("set", IF, "listen-port", str(PORT_BUSY), state=True)
            duo.wg("set", IF, "fwmark", "9", "listen-port", str(PORT_BUSY), "peer", k.pub("p1"),
                   "allowed-ips", "10.1.0.0/16", state=True)
    duo.check()


def test_all_zero_peer_key(duo: Duo) -> None:
    """A peer whose public key is all zeros: with no private key, our own public key is
    zeros too (wireguard-go ignores the peer); with a private key, it is an ordinary key."""
    k = Keys(duo)
    zero = b64(bytes(32))
    duo.wg("set", "{IF}", "peer", zero, "allowed-ips", "10.0.0.0/8", state=True)
    duo.wg("set", "{IF}", "private-key", k.path("k1"), state=True)
    duo.wg("set", "{IF}", "peer", zero, "allowed-ips", "10.0.0.0/8", state=True)
    duo.wg("set", "{IF}", "private-key", "/dev/null", state=True)
    duo.wg("set", "{IF}", "peer", zero, "allowed-ips", "10.1.0.0/16", state=True)
    duo.check()


# --- configuration files --------------------------------------------------------------------------

def test_setconf_addconf_syncconf_showconf(duo: Duo) -> None:
    k = Keys(duo)
    full = duo.file("full.conf", f"""[Interface]
PrivateKey = {k.priv("k1")}
ListenPort = {PORT_A}
FwMark = 0x42

[Peer]
PublicKey = {k.pub("p1")}
PresharedKey = {b64(bytes(range(32)))}
AllowedIPs = 10.1.0.0/16, fd01::/64
Endpoint = {EP4}
PersistentKeepalive = 25

[Peer]
PublicKey = {k.pub("p2")}
AllowedIPs = 10.2.0.0/16
AllowedIPs = 10.22.0.0/16, fd02::/64
Endpoint = {EP6}
""")
    more = duo.file("more.conf", f"""[Peer]
PublicKey = {k.pub("p3")}
AllowedIPs = 10.3.0.0/16, 10.1.0.0/16

[Peer]
PublicKey = {k.pub("p1")}
AllowedIPs = 10.11.0.0/16
PersistentKeepalive = 0
""")
    small = duo.file("small.conf", f"""[Interface]
PrivateKey = {k.priv("k2")}

[Peer]
PublicKey = {k.pub("p2")}
AllowedIPs = 10.2.0.0/16
""")
    iface_only = duo.file("iface.conf", f"[Interface]\nListenPort = {PORT_B}\nFwMark = 5\n")
    own = duo.file("own.conf", f"""[Interface]
PrivateKey = {k.priv("p1")}

[Peer]
PublicKey = {k.pub("p1")}
AllowedIPs = 10.1.0.0/16

[Peer]
PublicKey = {k.pub("p2")}
AllowedIPs = 10.2.0.0/16
""")
    busy_conf = duo.file("busy.conf", f"""[Interface]
FwMark = 3
ListenPort = {PORT_BUSY}

[Peer]
PublicKey = {k.pub("p3")}
AllowedIPs = 10.3.0.0/16
""")
    bad = duo.file("bad.conf", "[Interface]\nListenPort = 1\n[Peer]\nPublicKey = x\n")
    for step in [
        ("setconf", "{IF}", full),
        ("showconf", "{IF}"),
        ("addconf", "{IF}", more),
        ("showconf", "{IF}"),
        ("syncconf", "{IF}", full),
        ("showconf", "{IF}"),
        ("addconf", "{IF}", more),
        ("syncconf", "{IF}", small),
        ("showconf", "{IF}"),
        ("addconf", "{IF}", iface_only),
        ("syncconf", "{IF}", full),
        ("setconf", "{IF}", small),
        ("setconf", "{IF}", own),
        ("showconf", "{IF}"),
        ("setconf", "{IF}", full),
        ("addconf", "{IF}", own),
        ("setconf", "{IF}", "/dev/null"),
        ("showconf", "{IF}"),
        ("addconf", "{IF}", "/dev/null"),
        ("setconf", "{IF}", bad),
        ("syncconf", "{IF}", full),
        ("setconf", "{IF}", full),
    ]:
        duo.wg(*step, state=True)
    with busy(duo, PORT_BUSY, socket.AF_INET):
        duo.wg("setconf", "{IF}", busy_conf, state=True)
        duo.wg("addconf", "{IF}", busy_conf, state=True)
    duo.check()


# --- wg show --------------------------------------------------------------------------------------

FIELDS = ("public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
          "endpoints", "allowed-ips", "latest-handshakes", "transfer", "persistent-keepalive",
          "dump")


def show_everything(duo: Duo) -> None:
    duo.wg("show", "{IF}")
    for name in FIELDS:
        duo.wg("show", "{IF}", name)
    duo.wg("showconf", "{IF}")


def show_all(duo: Duo, *args: str) -> None:
    """`wg show all ARGS`, run once; our two interfaces' parts compared with each other
    (other sessions' interfaces in /var/run/wireguard are ignored)."""
    p = duo.w.ns.run("wg", "show", "all", *args, check=False)
    # "IF\t..." lines; this wg prints `endpoints` with the name on the first peer's line
    # only, so a line that starts with a key belongs to the interface named above it.
    by_name: dict[str, list[str]] = {}
    current = ""
    for line in p.stdout.splitlines():
        first, _, rest = line.partition("\t")
        if len(first) == 44 and first.endswith("="):
            rest = line
        else:
            current = first
        by_name.setdefault(current, []).append(rest + "\n")
    parts = []
    for d in duo.daemons:
        if args and args[0] != "dump":
            text = sort_lines("".join(by_name.get(d.ifname, [])))
        elif args:  # dump: the interface line first
            text = sort_dump("".join(by_name.get(d.ifname, [])))
        else:  # pretty: "interface: IF" block, then its peers
            blocks = p.stdout.strip("\n").split("\n\n")
            mine: list[str] = []
            take = False
            for block in blocks:
                if block.startswith("interface:"):
                    take = block.splitlines()[0] == f"interface: {d.ifname}"
                if take:
                    mine.append(block.replace(d.ifname, "IF"))
            text = sort_pretty("\n\n".join(mine) + "\n")
        errors = [line.replace(d.ifname, "IF") for line in p.stderr.splitlines()
                  if d.ifname in line]
        parts.append((text, errors))
    ports = duo.ports()
    ours, theirs = ((replace_port(t, port), e) for (t, e), port in zip(parts, ports))
    duo.expect_same("wg show all " + " ".join(args), ours, theirs)
    assert ours[0], f"wg show all {' '.join(args)} lists nothing for wgpy: {p.stdout[:500]!r}"


def test_wg_show(duo: Duo) -> None:
    k = Keys(duo)
    show_everything(duo)  # fresh: no key, random port, no peers
    show_all(duo)
    duo.wg("set", "{IF}", "private-key", k.path("k1"), "listen-port", str(PORT_A),
           "fwmark", "0x51820",
           "peer", k.pub("p1"), "preshared-key", k.path("psk"), "endpoint", EP4,
           "persistent-keepalive", "25", "allowed-ips", "10.1.0.0/16,fd01::/64,10.11.0.0/16",
           "peer", k.pub("p2"), "endpoint", EP6, "allowed-ips", "fd02::/64,10.2.0.0/16",
           "peer", k.pub("p3"))
    show_everything(duo)
    for args in [(), ("dump",), *((name,) for name in FIELDS if name != "dump")]:
        show_all(duo, *args)
    listed = duo.w.ns.run("wg", "show", "interfaces").stdout.split()
    assert duo.w.ifname in listed and duo.g.ifname in listed
    duo.check()


# --- raw UAPI -------------------------------------------------------------------------------------

def test_raw_requests(duo: Duo) -> None:
    key0, key1, p1, p2 = (crypto.generate_private_key().hex().encode() for _ in range(4))
    own = crypto.public_key(bytes.fromhex(key1.decode())).hex().encode()
    peer = b"public_key=" + p1 + b"\n"
    cases: list[tuple[str, bytes]] = [
        ("get", b"get=1\n\n"),
        ("empty set", b"set=1\n\n"),
        ("set ended by EOF", b"set=1\nfwmark=7\n"),
        ("set line ended by EOF", b"set=1\nfwmark=8"),
        ("private key", b"set=1\nprivate_key=" + key1 + b"\n\n"),
        ("private key upper case", b"set=1\nprivate_key=" + key1.upper() + b"\n\n"),
        ("bad hex", b"set=1\nprivate_key=" + b"zz" * 32 + b"\n\n"),
        ("short key", b"set=1\nprivate_key=" + key1[:62] + b"\n\n"),
        ("long key", b"set=1\nprivate_key=" + key1 + b"00\n\n"),
        ("port out of range", b"set=1\nlisten_port=65536\n\n"),
        ("port negative", b"set=1\nlisten_port=-1\n\n"),
        ("port", b"set=1\nlisten_port=%d\n\n" % PORT_A),
        ("fwmark out of range", b"set=1\nfwmark=4294967296\n\n"),
        ("fwmark hex", b"set=1\nfwmark=0x10\n\n"),
        ("fwmark max", b"set=1\nfwmark=4294967295\n\n"),
        ("replace_peers=false", b"set=1\nreplace_peers=false\n\n"),
        ("unknown device key", b"set=1\nfoo=1\n\n"),
        ("line without =", b"set=1\nlisten_port\n\n"),
        ("peer key before public_key", b"set=1\nendpoint=192.0.2.1:1\n\n"),
        ("protocol_version before public_key", b"set=1\nprotocol_version=1\n\n"),
        ("peer", b"set=1\n" + peer + b"allowed_ip=10.1.0.0/16\nendpoint=" + EP4.encode()
         + b"\n\n"),
        ("interface key after public_key", b"set=1\n" + peer + b"listen_port=1\n\n"),
        ("private_key after public_key", b"set=1\n" + peer + b"private_key=" + key1 + b"\n\n"),
        ("replace_peers after public_key", b"set=1\n" + peer + b"replace_peers=true\n\n"),
        ("protocol_version=2", b"set=1\n" + peer + b"protocol_version=2\n\n"),
        ("protocol_version=1", b"set=1\n" + peer + b"protocol_version=1\n\n"),
        ("unknown peer key", b"set=1\n" + peer + b"foo=1\n\n"),
        ("peer line without =", b"set=1\n" + peer + b"endpoint\n\n"),
        ("bad public key", b"set=1\npublic_key=" + p1[:-2] + b"\n\n"),
        ("hostname endpoint", b"set=1\n" + peer + b"endpoint=example.com:1\n\n"),
        ("endpoint without port", b"set=1\n" + peer + b"endpoint=192.0.2.1\n\n"),
        ("keepalive out of range",
         b"set=1\n" + peer + b"persistent_keepalive_interval=65536\n\n"),
        ("update_only=false", b"set=1\n" + peer + b"update_only=false\n\n"),
        ("remove=1", b"set=1\n" + peer + b"remove=1\n\n"),
        ("replace_allowed_ips=yes", b"set=1\n" + peer + b"replace_allowed_ips=yes\n\n"),
        ("allowed_ip not canonical", b"set=1\n" + peer + b"allowed_ip=10.1.2.3/8\n\n"),
        ("allowed_ip bad", b"set=1\n" + peer + b"allowed_ip=10.1.2.3/33\n\n"),
        ("preshared key zero", b"set=1\n" + peer + b"preshared_key=" + b"0" * 64 + b"\n\n"),
        ("preshared key", b"set=1\n" + peer + b"preshared_key=" + p2 + b"\n\n"),
        ("update_only on a new peer", b"set=1\npublic_key=" + p2 + b"\nupdate_only=true\n"
         b"allowed_ip=10.2.0.0/16\n\n"),
        ("update_only on an existing peer", b"set=1\n" + peer + b"update_only=true\n"
         b"allowed_ip=10.11.0.0/16\n\n"),
        ("own public key", b"set=1\npublic_key=" + own + b"\nallowed_ip=10.7.0.0/16\n"
         b"endpoint=" + EP4.encode() + b"\n\n"),
        ("remove then more lines", b"set=1\npublic_key=" + p2 + b"\nallowed_ip=10.2.0.0/16\n"
         b"remove=true\nallowed_ip=10.3.0.0/16\nendpoint=" + EP4.encode() + b"\n\n"),
        ("error in the middle of an interface set",
         b"set=1\nfwmark=9\nlisten_port=%d\nfwmark=bad\nfwmark=10\n\n" % PORT_B),
        ("error in the middle of a peer set",
         b"set=1\n" + peer + b"replace_allowed_ips=true\nallowed_ip=10.5.0.0/16\n"
         b"endpoint=bogus\nallowed_ip=10.6.0.0/16\n\n"),
        ("error in the second peer",
         b"set=1\npublic_key=" + p2 + b"\nallowed_ip=10.2.0.0/16\n" + peer
         + b"persistent_keepalive_interval=5\npersistent_keepalive_interval=x\n"
         b"persistent_keepalive_interval=6\n\n"),
        ("CRLF lines", b"set=1\r\nfwmark=11\r\n\r\n"),
        ("set lines with CR", b"set=1\nfwmark=12\r\n\r\n"),
        ("replace_peers", b"set=1\nreplace_peers=true\n" + peer + b"allowed_ip=10.1.0.0/16\n\n"),
        ("set then EOF", b"set=1\n"),
        ("error early in a 150 KB set", b"set=1\nfwmark=15\nfwmark=bad\n"
         + b"fwmark=16\n" * 15000 + b"\n"),
        ("get=1 then X", b"get=1\nX"),
        ("get=1 then xget", b"get=1\nxget=1\n\n"),
        ("get=1 then EOF", b"get=1\n"),
        ("two gets pipelined", b"get=1\n\nget=1\n\n"),
        ("unknown operation", b"foo=1\n\n"),
        ("set=2", b"set=2\n\n"),
        ("get=2", b"get=2\n\n"),
        ("GET=1", b"GET=1\n\n"),
        ("get=1 CRLF", b"get=1\r\n\r\n"),
        ("empty operation line", b"\n"),
        ("operation without newline", b"get=1"),
        ("nothing", b""),
        ("line longer than 64 KiB", b"set=1\nfwmark=" + b"1" * 70000 + b"\n\n"),
        ("get after all that", b"get=1\n\n"),
    ]
    # Every case starts from the same state (listen port aside), so one difference does
    # not spill into the next cases.
    reset = (b"set=1\nprivate_key=" + key0 + b"\nfwmark=0\nreplace_peers=true\n" + peer
             + b"allowed_ip=10.1.0.0/16\nendpoint=" + EP4.encode() + b"\n\n")
    # What came before the error in a set stays applied (a set is not atomic).
    applied = {
        "error in the middle of an interface set": [b"fwmark=9\n", b"listen_port=%d\n" % PORT_B],
        "error in the middle of a peer set": [b"allowed_ip=10.5.0.0/16\nerrno"],
        "error in the second peer": [b"public_key=" + p2, b"persistent_keepalive_interval=5\n"],
        "error early in a 150 KB set": [b"fwmark=15\n"],
    }
    for label, data in cases:
        duo.raw(f"reset before {label}", reset)
        duo.same_state(f"after the reset before {label}")
        duo.raw(label, data)
        duo.same_state(f"after raw {label}")
        for d in duo.daemons:
            got = raw(d, b"get=1\n\n")
            for want in applied.get(label, []):
                duo.expect_same(f"{d.impl}: after raw {label}, get has {want!r}",
                                want in got, True)
    for label, family in (("v4", socket.AF_INET), ("v6", socket.AF_INET6)):
        duo.raw(f"reset before port in use ({label})", reset)
        with busy(duo, PORT_BUSY, family):
            duo.raw(f"port in use ({label})", b"set=1\nfwmark=13\nlisten_port=%d\nfwmark=14\n\n"
                    % PORT_BUSY)
            duo.same_state(f"after port in use ({label})")
    duo.check()


def test_several_requests_on_one_connection(duo: Duo) -> None:
    p1 = crypto.generate_private_key().hex().encode()
    duo.conversation("mixed", [
        b"get=1\n\n",
        b"set=1\nfwmark=3\nlisten_port=%d\n\n" % PORT_A,
        b"get=1\n\n",
        b"set=1\npublic_key=" + p1 + b"\nallowed_ip=10.1.0.0/16\n\n",
        b"set=1\nfwmark=bad\nfwmark=4\n\n",
        b"get=1\n\n",
        b"get=1\nX",
        b"get=1\n\n",
        b"set=1\npublic_key=" + p1 + b"\nremove=true\n\n",
        b"get=1\n\n",
        b"bogus=1\n",
        b"get=1\n\n",
    ])
    duo.same_state("after the conversation")
    duo.check()


def test_request_after_a_failed_set_without_its_blank_line(duo: Duo) -> None:
    """A set fails before its blank line; the client reads the errno, then sends a `get` on
    the same connection. wireguard-go has discarded what it had read of the failed set and
    takes the `get` as the next request."""
    duo.conversation("after an error without a blank line", [
        b"set=1\nfwmark=5\nfoo=1\n",  # error; the rest of this set never comes
        b"get=1\n\n",
    ])
    duo.same_state("after the conversation")
    duo.check()


# --- 130,560 allowed IPs --------------------------------------------------------------------------

def test_setconf_with_130560_allowed_ips(duo: Duo) -> None:
    """netns.sh's big configuration through `wg setconf`; `wg show IF allowed-ips` lists all
    130,560 prefixes (plus the key) on wgpy, byte for byte as wireguard-go does; 120 s in all."""
    peer = b64(crypto.public_key(crypto.generate_private_key()))
    conf = duo.file("big.conf", big_config(peer, b64(crypto.generate_private_key())))
    deadline = time.monotonic() + BIG_TIMEOUT
    timings = {}
    outputs = {}
    for d in duo.daemons:
        start = time.monotonic()
        d.ns.run("wg", "setconf", d.ifname, conf, timeout=max(deadline - start, 1))
        middle = time.monotonic()
        shown = d.ns.run("wg", "show", d.ifname, "allowed-ips",
                         timeout=max(deadline - middle, 1)).stdout
        timings[d.impl] = (round(middle - start, 2), round(time.monotonic() - middle, 2))
        outputs[d.impl] = shown
        tokens = shown.split()
        assert len(tokens) == BIG_COUNT + 1, (d.impl, len(tokens))
        assert tokens[0] == peer
    print("setconf, show allowed-ips (s):", timings)
    assert outputs["wgpy"] == outputs["wireguard-go"]

"""Two WireGuard daemons driven side by side, for the differential UAPI tests
(test_uapi_compat.py) and benchmark (bench_uapi.py).

`Duo` runs the same stock `wg` command, or writes the same raw UAPI request, on wgpy and on
wireguard-go, normalizes what legitimately differs, compares, and collects every difference;
`Duo.check` then fails with a unified diff (wireguard-go → wgpy) per difference and the tail
of wgpy's log. Normalized, and nothing else:

- the interface name (replaced by ``IF``);
- a random listen port: where the two daemons' bound ports differ, each one's own bound
  port (read with `ss`, not from the daemon) is replaced by ``PORT`` in value positions
  (after ``=`` or a blank; endpoint ports, after ``:``, are left alone);
- the order of peers (wireguard-go prints them in Go map order; `wg` sorts them only by
  latest handshake, which is zero for all when no traffic flows).

`raw` writes a request, shuts down its side and reads to the end (``<closed>``, ``<reset>``
or ``<no close>`` mark how it ended); `converse` sends requests one at a time on one
connection, each reply awaited. `busy` takes a UDP port in both namespaces.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from compat.conftest import in_netns
from compat.lab import Daemon, Lab, b64
from wgpy import crypto

__all__ = ["BIG_COUNT", "Duo", "Keys", "Outcome", "big_config", "busy", "converse", "raw",
           "replace_port", "sort_dump", "sort_get", "sort_lines", "sort_pretty"]

RAW_TIMEOUT = 5.0


# --- normalization -------------------------------------------------------------------------------

def bound_port(d: Daemon) -> int | None:
    """The UDP port the daemon's process has bound, from the kernel (ss), not from UAPI."""
    assert d.proc is not None
    out = d.ns.run("ss", "-Hunap", check=False).stdout
    ports = {line.split()[3].rsplit(":", 1)[1] for line in out.splitlines()
             if f"pid={d.proc.pid}," in line}
    return int(ports.pop()) if len(ports) == 1 else None


def replace_port(text: str, port: int | None) -> str:
    """`port` as a value (after '=', a blank, or at a line start) → PORT; endpoint ports
    (after ':') and digits inside keys are left alone."""
    if port is None:
        return text
    return re.sub(rf"(?:(?<=[=\s])|^){port}(?=\s|$)", "PORT", text, flags=re.M)


def sort_dump(text: str) -> str:
    """`wg show IF dump`: the interface line, then the peers sorted."""
    lines = text.splitlines()
    return "\n".join(lines[:1] + sorted(lines[1:])) + ("\n" if text.endswith("\n") else "")


def sort_lines(text: str) -> str:
    return "\n".join(sorted(text.splitlines())) + ("\n" if text.endswith("\n") else "")


def sort_showconf(text: str) -> str:
    head, *peers = text.split("\n[Peer]\n")
    return "\n[Peer]\n".join([head, *sorted(p.rstrip("\n") + "\n" for p in peers)])


def sort_pretty(text: str) -> str:
    """`wg show IF` / `wg show all`: blocks split by blank lines; peers sorted within the
    interface they follow."""
    out: list[str] = []
    group: list[str] = []
    for block in text.strip("\n").split("\n\n"):
        if block.startswith("interface:"):
            out += sorted(group)
            group = []
            out.append(block)
        else:
            group.append(block)
    out += sorted(group)
    return "\n\n".join(out) + "\n" if text else ""


def sort_get(reply: bytes) -> bytes:
    """One or more raw replies: the peers of each ``get`` reply sorted."""
    out = []
    for one in re.findall(rb".*?\n\n|.+$", reply, flags=re.S):
        lines = one.split(b"\n")
        head: list[bytes] = []
        peers: list[list[bytes]] = []
        tail: list[bytes] = []
        for line in lines:
            if line.startswith(b"public_key="):
                peers.append([line])
            elif line.startswith(b"errno=") or not line:
                tail.append(line)
            elif peers:
                peers[-1].append(line)
            else:
                head.append(line)
        out.append(b"\n".join(head + [b"\n".join(p) for p in sorted(peers)] + tail))
    return b"".join(out)


@dataclass(frozen=True)
class Outcome:
    """What one `wg` command did, normalized."""

    rc: int
    stdout: str
    stderr: str


@dataclass
class Duo:
    """wgpy (`w`) and wireguard-go (`g`); `expect_same` collects every difference."""

    lab: Lab
    w: Daemon
    g: Daemon
    mismatches: list[dict[str, object]] = field(default_factory=list)
    diverged: bool = False

    @property
    def daemons(self) -> tuple[Daemon, Daemon]:
        return self.w, self.g

    def file(self, name: str, text: str) -> str:
        path = self.lab.tmp / name
        path.write_text(text)
        path.chmod(0o600)
        return str(path)

    def ports(self) -> tuple[int | None, int | None]:
        """Each daemon's bound port, or None for both when they are equal."""
        pw, pg = bound_port(self.w), bound_port(self.g)
        return (None, None) if pw == pg else (pw, pg)

    def expect_same(self, label: str, mine: object, theirs: object) -> bool:
        if mine != theirs:
            self.mismatches.append({"step": label, "wgpy": mine, "wireguard-go": theirs})
            return False
        return True

    def check(self) -> None:
        """Fail with every difference: a unified diff, wireguard-go → wgpy, per step."""
        assert not self.mismatches, "\n" + "\n".join(
            f"=== {m['step']}\n" + describe(m["wireguard-go"], m["wgpy"])
            for m in self.mismatches) + f"\n=== wgpy log\n{self.w.log_tail(40)}"

    # --- stock wg ---

    def run_wg(self, d: Daemon, args: tuple[str, ...], sort: Callable[[str], str],
               port: int | None, input: str | None = None) -> Outcome:
        argv = [a.replace("{IF}", d.ifname) for a in args]
        p = d.ns.run("wg", *argv, check=False, input=input)

        def norm(text: str) -> str:
            return replace_port(text.replace(d.ifname, "IF"), port)

        return Outcome(p.returncode, sort(norm(p.stdout)), norm(p.stderr))

    def wg(self, *args: str, input: str | None = None, state: bool = False) -> Outcome:
        """Run `wg ARGS` ({IF} = the interface) on both; compare; then the state if asked."""
        sort = sorter(args)
        ports = self.ports()
        mine, theirs = (self.run_wg(d, args, sort, p, input) for d, p in zip(self.daemons, ports))
        self.expect_same("wg " + " ".join(args), mine, theirs)
        if state:
            self.same_state("after wg " + " ".join(args))
        return mine

    def state(self, d: Daemon, port: int | None) -> tuple[object, ...]:
        """`wg show IF dump`, `wg showconf IF`, a raw get, and whether the port that get
        reports is the one bound."""
        get = raw(d, b"get=1\n\n")
        match = re.search(rb"^listen_port=(\d+)$", get, re.M)
        reported, bound = (int(match[1]) if match else None), bound_port(d)
        return (
            self.run_wg(d, ("show", "{IF}", "dump"), sort_dump, port),
            self.run_wg(d, ("showconf", "{IF}"), sort_showconf, port),
            sort_get(replace_port(get.decode(), port).encode()),
            "port ok" if reported == bound else f"get reports port {reported}, bound: {bound}",
        )

    def same_state(self, label: str) -> None:
        """Compare the whole state; once it has diverged, only report it again after it
        has converged (one difference otherwise repeats at every later step)."""
        ports = self.ports()
        mine, theirs = (self.state(d, p) for d, p in zip(self.daemons, ports))
        if mine == theirs:
            self.diverged = False
        elif not self.diverged:
            self.diverged = True
            self.expect_same(label + " (state; not repeated while it stays different)",
                             mine, theirs)

    # --- raw UAPI ---

    def raw(self, label: str, data: bytes) -> bytes:
        """One connection per daemon: send `data`, shut down our side, read to EOF."""
        ports = self.ports()
        mine, theirs = (sort_get(replace_port(raw(d, data).decode(), p).encode())
                        for d, p in zip(self.daemons, ports))
        self.expect_same(f"raw {label}: {data[:200]!r}", mine, theirs)
        return mine

    def conversation(self, label: str, requests: list[bytes]) -> list[bytes]:
        """One connection per daemon, one request at a time, each reply awaited."""
        ports = self.ports()
        mine, theirs = ([sort_get(replace_port(r.decode(), p).encode())
                         for r in converse(d, requests)] for d, p in zip(self.daemons, ports))
        self.expect_same(f"conversation {label}: {requests!r}", mine, theirs)
        return mine


def lines_of(value: object) -> list[str]:
    """A readable, line-by-line form of an outcome, a state or a raw reply."""
    if isinstance(value, bytes):
        return value.decode(errors="replace").splitlines()
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, Outcome):
        return [f"rc={value.rc}", *(f"out| {line}" for line in value.stdout.splitlines()),
                *(f"err| {line}" for line in value.stderr.splitlines())]
    if isinstance(value, (tuple, list)):
        out: list[str] = []
        for i, item in enumerate(value):
            out += [f"[{i}] {line}" for line in lines_of(item)]
        return out
    return [repr(value)]


def describe(theirs: object, mine: object) -> str:
    return "\n".join(difflib.unified_diff(lines_of(theirs), lines_of(mine), "wireguard-go",
                                          "wgpy", n=1, lineterm=""))


def sorter(args: tuple[str, ...]) -> Callable[[str], str]:
    if args[0] == "showconf":
        return sort_showconf
    if args[0] != "show" or len(args) < 2 or args[1] == "interfaces":
        return lambda text: text
    if len(args) == 2:
        return sort_pretty
    return sort_dump if args[2] == "dump" else sort_lines


def raw(d: Daemon, data: bytes) -> bytes:
    """Everything the daemon answers to `data` before it closes (or a marker)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(RAW_TIMEOUT)
        sock.connect(str(d.socket))
        try:
            if data:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                return out + b"<no close>"
            except ConnectionResetError:
                return out + b"<reset>"
            if not chunk:
                return out + b"<closed>"
            out += chunk


def converse(d: Daemon, requests: list[bytes]) -> list[bytes]:
    """Each request on one shared connection, waiting for its reply (ends with a blank
    line); a close ends the conversation."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(RAW_TIMEOUT)
        sock.connect(str(d.socket))
        for request in requests:
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"\n\n"):
                try:
                    chunk = sock.recv(1 << 16)
                except TimeoutError:
                    replies.append(reply + b"<no reply>")
                    break
                if not chunk:
                    replies.append(reply + b"<closed>")
                    return replies
                reply += chunk
            else:
                replies.append(reply)
    return replies


@dataclass
class Keys:
    """Private keys (as files) and public keys for the battery."""

    duo: Duo
    names: tuple[str, ...] = ("k1", "k2", "p1", "p2", "p3")
    private: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            self.private[name] = crypto.generate_private_key()
            self.duo.file(name, b64(self.private[name]) + "\n")
        self.duo.file("psk", b64(crypto.generate_private_key()) + "\n")

    def path(self, name: str) -> str:
        return str(self.duo.lab.tmp / name)

    def pub(self, name: str) -> str:
        return b64(crypto.public_key(self.private[name]))

    def priv(self, name: str) -> str:
        return b64(self.private[name])

    def hexpub(self, name: str) -> bytes:
        return crypto.public_key(self.private[name]).hex().encode()


@contextlib.contextmanager
def busy(duo: Duo, port: int, family: socket.AddressFamily) -> Iterator[None]:
    """`port` taken in both namespaces by a UDP socket of `family` (IPv6: v6 only)."""
    socks: list[socket.socket] = []
    try:
        for d in duo.daemons:
            with in_netns(d.ns.name):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                socks.append(sock)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        yield
    finally:
        for sock in socks:
            sock.close()



# --- big configurations for the benchmark and the scale tests ------------------------------------

def big_config(peer_public: str, private: str) -> str:
    """The kernel selftest's (netns.sh) big config: one peer, 255*256 IPv4 /16 prefixes and
    as many IPv6 /128s."""
    lines = ["[Interface]", f"PrivateKey = {private}", "", "[Peer]",
             f"PublicKey = {peer_public}"]
    lines += [f"AllowedIPs = {a}.{b}.0.0/16,{a}::{b}/128"
              for a in range(1, 256) for b in range(256)]
    return "\n".join(lines) + "\n"


BIG_COUNT = 255 * 256 * 2  # the prefixes of big_config


def peer_prefixes(i: int, count: int) -> list[str]:
    """`count` allowed IPs for the `i`-th of many peers (i < 16384, count < 512): IPv4 /32s in
    10.64.0.0/10 and IPv6 /128s in fd00::/16, half each; none overlaps another peer's."""
    v4 = [f"10.{64 + (i >> 8)}.{i & 255}.{j}/32" for j in range((count + 1) // 2)]
    v6 = [f"fd00::{i:x}:{j:x}/128" for j in range(count // 2)]
    return [p for pair in zip(v4, v6) for p in pair] + v4[len(v6):]


def many_peers_config(publics: list[str], per_peer: int, private: str | None = None,
                      endpoints: bool = True) -> str:
    """A config (for `wg setconf`, or `wg addconf` without `private`) with one [Peer] per
    public key, each with `per_peer` allowed IPs (`peer_prefixes`) and, if asked, an
    endpoint in 198.18.0.0/15 (nothing is sent there: the benchmark's interfaces are down)."""
    lines = ["[Interface]"] + ([f"PrivateKey = {private}"] if private else [])
    for i, public in enumerate(publics):
        lines += ["", "[Peer]", f"PublicKey = {public}",
                  "AllowedIPs = " + ", ".join(peer_prefixes(i, per_peer))]
        if endpoints:
            lines.append(f"Endpoint = 198.18.{i >> 8}.{i & 255}:51820")
    return "\n".join(lines) + "\n"

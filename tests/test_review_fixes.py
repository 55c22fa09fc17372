"""Fixes from the issue 9 review, each pinned by a test that failed before it: unknown
IPv6 zones, secrets in logs, errors and reprs, repeated UDP receive errors, send errors
by cause, and the header and checksum rules of TCP coalescing."""

from __future__ import annotations

import base64
import errno
import os
import random
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Pair
from test_device import Node
from test_tunoffload import checksum, roundtrip, stream, tcp_segment
from uapi.errors import UapiError
from uapi.operations import PeerPresharedKey, SetPrivateKey
from uapi.protocol import CloseConnection, RequestError, ServerConnection
from uapi.responses import DeviceInfo, PeerInfo, parse_get_response
from wgpy import tunoffload
from wgpy.constants import UDP_RECEIVE_RETRIES
from wgpy.device import inbound as device_module  # the receive path
from wgpy.noise import handshake
from wgpy.device.bind import SendError
from wgpy.noise.actions import DropReason, SendBatch, SendDatagram
from wgpy.noise.handshake import StaticIdentity
from wgpy.noise.keypair import Keypair
from wgpy.tunoffload import NO_OFFLOAD, py_coalesce as coalesce  # the shapes of the writes


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node("wgrf", tmp_path)
    try:
        yield n
    finally:
        n.close()


def _raw(node: Node, data: bytes, replies: int, timeout: float = 3.0) -> bytes:
    """Send `data` on one connection and read until `replies` replies have come."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(node.client.path)
        sock.sendall(data)
        out = b""
        while out.count(b"\n\n") < replies:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


# --- 1. an unknown IPv6 zone ---------------------------------------------------------------------

def test_unknown_zone_is_einval_and_the_connection_keeps_serving(node: Node) -> None:
    peer = "ab" * 32
    out = _raw(node, (f"set=1\npublic_key={peer}\nendpoint=[fe80::1%nosuchif0]:51820\n"
                      "allowed_ip=10.1.0.0/16\n\nget=1\n\n").encode(), 2)
    first, _, second = out.partition(b"\n\n")
    assert first == b"errno=-22"  # what wireguard-go's Linux bind answers (zoneToUint32)
    assert second.endswith(b"errno=0\n\n") and f"public_key={peer}".encode() in second
    assert b"allowed_ip" not in second  # the rest of the failed set was skipped
    # A fresh connection is served too (the set's lock was released) ...
    assert [p.public_key.hex() for p in node.client.get().peers] == [peer]
    # ... a zone that is a number or an interface name is taken ...
    node.client.set([f"public_key={peer}", "endpoint=[fe80::1%lo]:51820"])
    node.client.set([f"public_key={peer}", "endpoint=[fe80::1%7]:51820"])
    # ... and nothing escaped as an exception.
    assert "connection failed" not in node.log.getvalue()
    assert not node.device.stopped.is_set()


# --- 2. no secret in a log line, an error message or a repr ------------------------------------

def _forms(secret: bytes) -> list[str]:
    """The ways a key could show: hex in both cases, base64, a bytes repr."""
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            repr(secret)[2:-1]]


def _leaks(text: str, secrets: list[bytes], window: int = 16) -> list[str]:
    """Every window of `window` characters of any form of any secret found in `text`."""
    found = []
    for secret in secrets:
        for form in _forms(secret):
            for i in range(len(form) - window + 1):
                if form[i:i + window] in text:
                    found.append(form[i:i + window])
                    break
    return found


def _key_lines(secret: bytes) -> list[bytes]:
    """Malformed (and some well-formed) lines that carry `secret`, for both secret keys."""
    h, b64 = secret.hex().encode(), base64.b64encode(secret)
    values = [h + b" ", b" " + h, h + b"\t", h[:-1], h + b"0", h[:-1] + b"g", h.upper() + b"x",
              b"0x" + h, b64, b'"' + h + b'"', h + b"=", h + b"\0", h + b"," + h, h + h,
              h[:32] + b" " + h[32:], h + b"\xff", h]
    out = []
    for name in (b"private_key", b"preshared_key"):
        out += [name + b"=" + v for v in values]
        out += [name + sep + h for sep in (b":", b" ", b"", b" = ", b"==", b"\t")]
        out += [name.upper() + b"=" + h, name.replace(b"_", b"-") + b"=" + h,
                name[:-1] + b"=" + h, b"x" * 70 + name + h]
    return out


def test_parser_errors_never_echo_a_key() -> None:
    secret = os.urandom(32)
    public = b"public_key=" + os.urandom(32).hex().encode() + b"\n"
    text = []
    for line in _key_lines(secret):
        for request in (b"set=1\n" + line + b"\n\n", b"set=1\n" + public + line + b"\n\n",
                        line + b"\n"):  # the last: a key line where the operation goes
            for split in (len(request), 7, 20):
                conn = ServerConnection()
                conn.receive_data(request[:split])
                events = list(conn.events())
                conn.receive_data(request[split:])
                events += conn.events()
                text += [repr(e) for e in events]
                text += [e.message for e in events if isinstance(e, RequestError)]
                text += [e.reason for e in events if isinstance(e, CloseConnection)]
        # The client's parser of replies, fed the same lines.
        for reply in (line + b"\nerrno=0\n\n", public + line + b"\nerrno=0\n\n"):
            try:
                text.append(repr(parse_get_response(reply)))
            except UapiError as exc:
                text += [str(exc), repr(exc)]
    assert _leaks("\n".join(text), [secret]) == []


def test_device_logs_never_show_a_key(node: Node) -> None:
    private, psk = node.private, os.urandom(32)
    peer = os.urandom(32).hex()
    node.client.set([f"private_key={private.hex()}", f"public_key={peer}",
                     f"preshared_key={psk.hex()}", "endpoint=127.0.0.1:9"])
    for secret in (private, psk):
        for line in _key_lines(secret):
            for request in (b"set=1\n" + line + b"\n\n",
                            b"set=1\npublic_key=" + peer.encode() + b"\n" + line + b"\n\n"):
                assert _raw(node, request + b"get=1\n\n", 2).count(b"errno=") == 2
            _raw(node, line + b"\n", 1)  # not an operation: closed without a reply
    node.client.get()
    log = node.log.getvalue()
    assert "UAPI:" in log  # the errors were logged ...
    assert _leaks(log, [private, psk]) == []  # ... without the keys


def test_reprs_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    session: list[bytes] = []
    real_init = Keypair.__init__

    def spy(self: Keypair, send_key: bytes, recv_key: bytes, *args: object) -> None:
        session.extend((send_key, recv_key))
        real_init(self, send_key, recv_key, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Keypair, "__init__", spy)
    pair = Pair()
    psk = os.urandom(32)
    pair.pa.preshared_key = pair.pb.preshared_key = psk
    pair.handshake(0.0)
    pair.pb.cookie.cookie = os.urandom(16)  # a cookie held, as after a cookie reply
    pair.pa.initiate(200.0)  # a handshake under way: ephemeral and chaining key held
    hs = pair.pa.handshake
    assert session and hs.ephemeral_private and hs.chaining_key
    secrets = [pair.a.identity.private, pair.b.identity.private, psk, hs.ephemeral_private,
               hs.chaining_key, hs.hash, hs.precomputed_static_static, pair.pb.cookie.cookie,
               *session]
    pair.a.cookie_checker._cookie(b"\x7f\0\0\1", 0.0)  # R_m exists now
    secrets.append(pair.a.cookie_checker._secret)
    objects: list[object] = [
        pair.a.identity, hs, pair.pb.handshake, pair.pa, pair.a, pair.pa.keypairs,
        *pair.pa.keypairs, *pair.pb.keypairs, pair.pa.cookie, pair.pb.cookie,
        pair.a.cookie_checker, StaticIdentity.from_private(pair.a.identity.private),
        SetPrivateKey(pair.a.identity.private), PeerPresharedKey(psk),
        DeviceInfo(private_key=pair.a.identity.private,
                   peers=[PeerInfo(public_key=pair.b.identity.public, preshared_key=psk)]),
    ]
    text = "\n".join(repr(o) for o in objects) + "\n".join(str(o) for o in objects)
    assert _leaks(text, [s for s in secrets if s]) == []


# --- 3. all-zero checks in constant time ----------------------------------------------------------

_VARIABLE_TIME_ZERO_CHECK = re.compile(
    r"(==|!=)\s*(crypto\.)?_?ZERO_KEY\b|\b_?ZERO_KEY\s*(==|!=)|\bany\(\s*(key|secret|ss)\b"
    r"|(==|!=)\s*bytes\(32\)")


def test_zero_checks_on_secrets_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`==` stops at the first differing byte; an all-zero check on a DH result or a key
    must take the same time whatever the bytes (hmac.compare_digest)."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in sorted([*root.glob("wgpy/**/*.py"), *root.glob("uapi/*.py")]):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if _VARIABLE_TIME_ZERO_CHECK.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert offenders == []
    # And the handshake's ss check goes through compare_digest.
    calls: list[bytes] = []
    real = handshake.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(handshake, "compare_digest", spy)
    Pair().handshake(0.0)
    assert calls.count(bytes(32)) >= 2  # ss on both sides


# --- 4. repeated UDP receive errors ---------------------------------------------------------------

class _FailingSocket:
    """Stands for the IPv4 socket: always readable, every receive fails with `err`."""

    family = socket.AF_INET

    def __init__(self, err: int) -> None:
        self.err = err
        self.calls = 0
        self.r, self.w = os.pipe()
        os.write(self.w, b"!")  # readable for ever

    def fileno(self) -> int:
        return self.r

    def recvmsg_into(self, *args: object) -> object:
        self.calls += 1
        raise OSError(self.err, os.strerror(self.err))

    def close(self) -> None:
        if self.r >= 0:
            os.close(self.r)
            os.close(self.w)
            self.r = self.w = -1


def _swap_in(node: Node, fake: _FailingSocket) -> None:
    bind = node.device.bind
    assert bind.sock4 is not None
    bind.sock4.close()
    bind.sock4 = fake  # type: ignore[assignment]
    node.device._bind_generation += 1
    node.device._wake_data.wake()


@pytest.mark.parametrize("err, tries", [(errno.ENFILE, 1 + UDP_RECEIVE_RETRIES),
                                        (errno.ENOMEM, 1)])
def test_repeated_receive_errors_give_up_on_the_socket(
        node: Node, monkeypatch: pytest.MonkeyPatch, err: int, tries: int) -> None:
    """wireguard-go: a transient error is retried after 1/3 s, 10 times in a row at most,
    any other error at once stops reading that socket; before, the reader spun on it."""
    monkeypatch.setattr(device_module, "UDP_RECEIVE_RETRY_PAUSE", 0.01)
    fake = _FailingSocket(err)
    try:
        _swap_in(node, fake)
        deadline = time.monotonic() + 3
        while fake.calls < tries and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert fake.calls == tries
        assert "UDP receive v4 stopped" in node.log.getvalue()
        # The reader goes on with the other socket: junk on IPv6 is read and counted.
        port = node.device.bind.port
        before = node.device.drops[DropReason.INVALID_MESSAGE]
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
            s6.sendto(b"junk", ("::1", port))
        deadline = time.monotonic() + 3
        while node.device.drops[DropReason.INVALID_MESSAGE] == before:
            assert time.monotonic() < deadline, "the IPv6 socket is no longer read"
            time.sleep(0.01)
        assert not node.device.stopped.is_set()
        # A rebind reads the new sockets again.
        node.client.set(["listen_port=0"])
        assert node.device.bind.sock4 is not fake  # type: ignore[comparison-overlap]
    finally:
        if node.device.bind.sock4 is fake:  # type: ignore[comparison-overlap]
            node.device.bind.sock4 = None
        fake.close()


def test_a_datagram_between_receive_errors_resets_the_count(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "UDP_RECEIVE_RETRY_PAUSE", 0.01)
    fake = _FailingSocket(errno.ENFILE)
    real = fake.recvmsg_into

    def sometimes(*args: object) -> object:
        if fake.calls % 8 == 7:  # every 8th call: nothing there (a successful empty read)
            fake.calls += 1
            raise BlockingIOError(errno.EAGAIN, "again")
        return real(*args)

    fake.recvmsg_into = sometimes  # type: ignore[method-assign]
    try:
        _swap_in(node, fake)
        time.sleep(0.5)
        assert fake.calls > 2 * (1 + UDP_RECEIVE_RETRIES)  # never 11 in a row: still read
        assert "stopped" not in node.log.getvalue()
    finally:
        if node.device.bind.sock4 is fake:  # type: ignore[comparison-overlap]
            node.device.bind.sock4 = None
        fake.close()


# --- 5. send errors by cause ----------------------------------------------------------------------

_CAUSES = {
    errno.ENETUNREACH: DropReason.SEND_FAILED_UNREACHABLE,
    errno.EHOSTUNREACH: DropReason.SEND_FAILED_UNREACHABLE,
    errno.EADDRNOTAVAIL: DropReason.SEND_FAILED_UNREACHABLE,
    errno.ECONNREFUSED: DropReason.SEND_FAILED_UNREACHABLE,
    errno.ENOBUFS: DropReason.SEND_FAILED_NO_BUFFER,
    errno.ENOMEM: DropReason.SEND_FAILED_NO_BUFFER,
    errno.EAGAIN: DropReason.SEND_FAILED_NO_BUFFER,
    errno.EAFNOSUPPORT: DropReason.SEND_FAILED_NO_SOCKET,
    errno.EBADF: DropReason.SEND_FAILED_NO_SOCKET,
    errno.EMSGSIZE: DropReason.SEND_FAILED,
    errno.EPERM: DropReason.SEND_FAILED,
    errno.EINVAL: DropReason.SEND_FAILED,
}


def test_send_errors_are_counted_by_cause(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    device = node.device
    for err, reason in _CAUSES.items():
        def send(datagrams: list[bytes], endpoint: object, source: object = None,
                 err: int = err) -> None:
            raise SendError(err, os.strerror(err), 1)  # the first of the batch went out

        monkeypatch.setattr(device.bind, "send", send)
        before = dict(device.drops)
        device.execute([SendBatch([b"x" * 32] * 3, ("192.0.2.9", 9), None)])
        counted = {r: n - before.get(r, 0) for r, n in device.drops.items()
                   if n != before.get(r, 0)}
        assert counted == {reason: 2}, errno.errorcode[err]
    assert device.drops[DropReason.NO_ENDPOINT] == 0
    # The real thing: an IPv6 endpoint with no IPv6 socket.
    monkeypatch.undo()
    sock6, device.bind.sock6 = device.bind.sock6, None
    before_no_socket = device.drops[DropReason.SEND_FAILED_NO_SOCKET]
    try:
        device.execute([SendDatagram(b"x" * 32, ("::1", 9, 0, 0), None)])
    finally:
        device.bind.sock6 = sock6
    assert device.drops[DropReason.SEND_FAILED_NO_SOCKET] == before_no_socket + 1


# --- 6. TCP coalescing: headers that disagree, bad checksums --------------------------------------

def _with(packet: bytes, offset: int, value: int, *, fix_ip: bool = True) -> bytes:
    """`packet` with one byte changed; the IPv4 header checksum fixed again if `fix_ip`."""
    p = bytearray(packet)
    p[offset] = value
    if fix_ip and p[0] >> 4 == 4:
        p[10:12] = b"\0\0"
        p[10:12] = checksum(bytes(p[:20])).to_bytes(2, "big")
    return bytes(p)


def _tcp_fixed(packet: bytes) -> bytes:
    """`packet` with its TCP checksum recomputed (after a change in the TCP header)."""
    p = bytearray(packet)
    ip_len = 20 if p[0] >> 4 == 4 else 40
    p[ip_len + 16:ip_len + 18] = b"\0\0"
    tcp = bytes(p[ip_len:])
    if ip_len == 20:
        pseudo = bytes(p[12:20]) + struct.pack("!xBH", 6, len(tcp))
    else:
        pseudo = bytes(p[8:40]) + struct.pack("!LxxxB", len(tcp), 6)
    p[ip_len + 16:ip_len + 18] = checksum(pseudo + tcp).to_bytes(2, "big")
    return bytes(p)


# (name, v6, offset, value, fix_tcp): one header field of the middle segment made different.
_DISAGREE = [
    ("DF", False, 6, 0x00, False), ("reserved flag", False, 6, 0xC0, False),
    ("TTL", False, 8, 63, False), ("TOS", False, 1, 0x10, False), ("ECN CE", False, 1, 0x03, False),
    ("TCP reserved bits", False, 20 + 12, 0x51, True), ("urgent pointer", False, 20 + 19, 7, True),
    ("traffic class", True, 1, 0x10, False), ("flow label", True, 3, 0x01, False),
    ("hop limit", True, 7, 63, False), ("v6 urgent pointer", True, 40 + 19, 7, True),
]


@pytest.mark.parametrize("name, v6, offset, value, fix_tcp", _DISAGREE,
                         ids=[d[0] for d in _DISAGREE])
def test_segments_whose_headers_disagree_do_not_merge(name: str, v6: bool, offset: int,
                                                      value: int, fix_tcp: bool) -> None:
    packets = stream(5, v6=v6)
    odd = _with(packets[2], offset, value)
    packets[2] = _tcp_fixed(odd) if fix_tcp else odd
    writes = coalesce(packets)
    alone = [bytes(w[1]) for w in writes if bytes(w[0]) == NO_OFFLOAD]
    assert packets[2] in alone, name  # the odd one is not folded into a super-packet
    assert roundtrip(packets) == packets


@pytest.mark.parametrize("where", [0, 2, 4])
@pytest.mark.parametrize("what, v6", [("tcp", False), ("tcp", True), ("ip", False)])
def test_a_segment_with_a_bad_checksum_is_written_alone(v6: bool, where: int, what: str) -> None:
    """A super-packet goes with NEEDS_CSUM: the kernel would fill in a checksum for the bad
    segment instead of dropping it. It is written alone, as it came, for the kernel to drop."""
    packets = stream(6, v6=v6)
    bad = bytearray(packets[where])
    if what == "tcp":
        bad[-1] ^= 0x40  # the payload changed, the checksum not
    else:
        bad[10] ^= 0x01  # the IPv4 header checksum itself
    packets[where] = bytes(bad)
    writes = coalesce(packets)
    assert [NO_OFFLOAD, packets[where]] in [[bytes(b) for b in w] for w in writes]
    assert roundtrip(packets) == packets  # nothing "repaired"
    assert len(writes) <= 3  # the good ones on either side still merge


def test_checksum_check_agrees_with_the_textbook_sum() -> None:
    rng = random.Random(9)
    for size in [1, 2, 3, 7, 8, 100, 1379, 1380, 1440, 1441, 9000, 20000]:
        for v6 in (False, True):
            p = tcp_segment(rng.randrange(1 << 32), rng.randbytes(size), v6=v6)
            ip_len = 40 if v6 else 20
            assert tunoffload._is_zero_mod_ffff(tunoffload._tcp_sum(p, ip_len))
            assert tunoffload._ip_ok(p, ip_len)
            flipped = bytearray(p)
            flipped[rng.randrange(ip_len, len(p))] ^= 1 << rng.randrange(8)
            assert not tunoffload._is_zero_mod_ffff(tunoffload._tcp_sum(bytes(flipped), ip_len))


def test_two_bad_segments_whose_errors_cancel_are_both_written_alone() -> None:
    """One sum over a group would pass them (+2**k in one, -2**k in the other): found by
    bench/fuzz.py in a first version that verified groups, not segments."""
    packets = stream(6)
    a, b = bytearray(packets[1]), bytearray(packets[3])
    k, bit = next((k, 1 << i) for k in range(len(a) - 2, 100, -2) for i in range(8)
                  if not a[k] & (1 << i) and b[k] & (1 << i))
    a[k] |= bit
    b[k] &= ~bit
    packets[1], packets[3] = bytes(a), bytes(b)
    writes = [[bytes(x) for x in w] for w in coalesce(packets)]
    assert [NO_OFFLOAD, packets[1]] in writes and [NO_OFFLOAD, packets[3]] in writes
    assert roundtrip(packets) == packets


# --- 5. a receive error met after part of a batch was read -------------------------------------

class _ErrorAfterOneSocket:
    """One junk datagram, then a pending socket error reported once (as the kernel's
    sock_error clears sk_err), then nothing."""

    family = socket.AF_INET

    def __init__(self) -> None:
        self.script: list[object] = [b"\x07junk", OSError(errno.ENETDOWN, "down")]

    def recvmsg_into(self, buffers: list[memoryview], *args: object) -> object:
        step = self.script.pop(0) if self.script else BlockingIOError()
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, bytes)
        buffers[0][:len(step)] = step
        return len(step), [], 0, ("192.0.2.1", 51820)


def test_a_receive_error_after_some_datagrams_is_raised_by_the_next_call() -> None:
    """The datagrams read before the error are delivered, and the error is raised by the
    next call on that socket (before, the kernel had cleared it and it was lost; the
    comment said it would come back)."""
    from wgpy.device.bind import Bind  # noqa: PLC0415

    bind, sock = Bind(), _ErrorAfterOneSocket()
    runs = bind.recv_runs(sock, 64)  # type: ignore[arg-type]
    assert [(index, datagrams) for index, datagrams, _, _ in runs] == [(-1, [b"\x07junk"])]
    with pytest.raises(OSError) as raised:
        bind.recv_runs(sock, 64)  # type: ignore[arg-type]
    assert raised.value.errno == errno.ENETDOWN
    assert bind.recv_runs(sock, 64) == []  # type: ignore[arg-type] - reported once

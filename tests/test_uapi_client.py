"""The blocking client against a tiny in-test UAPI server (a unix socket in a temporary
directory, no root), built on ServerConnection and a fake device with wireguard-go's
set semantics."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from ipaddress import ip_network

import pytest

from uapi.client import Client
from uapi.errors import EADDRINUSE, EINVAL, EPROTO, UapiError
from uapi.operations import (
    PeerAllowedIP,
    PeerAllowedIPs,
    PeerEndpoint,
    PeerPersistentKeepalive,
    PeerPresharedKey,
    PeerPublicKey,
    PeerRemove,
    PeerReplaceAllowedIPs,
    PeerUpdateOnly,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetOperation,
    SetPrivateKey,
)
from uapi.prefix import prefix_network
from uapi.protocol import (
    CloseConnection,
    GetRequest,
    RequestError,
    ServerConnection,
    SetRequestEnd,
    SetRequestStart,
    format_errno,
    format_get,
)
from uapi.responses import DeviceInfo, PeerInfo

PUB1 = bytes([1]) * 32
PUB2 = bytes([2]) * 32


class FakeDevice:
    """Applies set operations the way wireguard-go does, to a DeviceInfo; port 1 is busy."""

    def __init__(self) -> None:
        self.private_key: bytes | None = None
        self.listen_port = 0
        self.fwmark = 0
        self.peers: dict[bytes, PeerInfo] = {}
        self.current: PeerInfo | None = None
        self.created = False

    def begin(self) -> None:
        self.current = None

    def apply(self, op: SetOperation) -> int:
        peer = self.current
        match op:
            case SetPrivateKey(key):
                self.private_key = key
            case SetListenPort(port):
                if port == 1:
                    return EADDRINUSE
                self.listen_port = port
            case SetFwmark(mark):
                self.fwmark = mark
            case ReplacePeers():
                self.peers.clear()
            case PeerPublicKey(key):
                self.created = key not in self.peers
                self.current = self.peers.setdefault(key, PeerInfo(public_key=key))
            case PeerUpdateOnly():
                if self.created and peer is not None:
                    del self.peers[peer.public_key]
                    self.current = None
            case PeerRemove():
                if peer is not None:
                    self.peers.pop(peer.public_key, None)
                self.current = None
            case _ if peer is None:
                pass  # a removed or update-only peer: lines are ignored
            case PeerPresharedKey(key):
                peer.preshared_key = key
            case PeerEndpoint(host, port, scope):
                peer.endpoint = (host + (f"%{scope}" if scope else ""), port)
            case PeerPersistentKeepalive(seconds):
                peer.persistent_keepalive_interval = seconds
            case PeerReplaceAllowedIPs():
                peer.allowed_ips.clear()
            case PeerAllowedIP(network, remove):
                if remove:
                    if network in peer.allowed_ips:
                        peer.allowed_ips.remove(network)
                else:
                    peer.allowed_ips.append(network)
            case PeerAllowedIPs(prefixes):
                peer.allowed_ips += [prefix_network(p) for p in prefixes]
        return 0

    def info(self) -> DeviceInfo:
        return DeviceInfo(self.private_key, self.listen_port, self.fwmark,
                          list(self.peers.values()))


def serve_connection(sock: socket.socket, device: FakeDevice) -> None:
    conn = ServerConnection()
    with sock:
        while True:
            for event in conn.events():
                if isinstance(event, GetRequest):
                    sock.sendall(format_get(device.info()))
                elif isinstance(event, SetRequestStart):
                    device.begin()
                elif isinstance(event, SetRequestEnd):
                    sock.sendall(format_errno(0))
                elif isinstance(event, RequestError):
                    sock.sendall(format_errno(event.errno))
                elif isinstance(event, CloseConnection):
                    return
                else:
                    errno = device.apply(event)
                    if errno:
                        conn.abort_set()
                        sock.sendall(format_errno(errno))
            try:
                conn.receive_data(sock.recv(65536))
            except OSError:
                return


class Server:
    """Accepts connections on `path` and hands each to `handler` on its own thread."""

    def __init__(self, path: str, handler: Callable[[socket.socket], None]) -> None:
        self.path = path
        self.handler = handler
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self.handler, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.accepter.join(5)
        for t in self.threads:
            t.join(5)


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="uapi", dir="/tmp")  # short: unix socket paths are limited
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.fixture
def device(sockdir: str) -> Iterator[FakeDevice]:
    dev = FakeDevice()
    server = Server(os.path.join(sockdir, "wgtest0.sock"), lambda s: serve_connection(s, dev))
    try:
        yield dev
    finally:
        server.stop()


@pytest.fixture
def client(sockdir: str, device: FakeDevice) -> Client:
    return Client("wgtest0", socket_dir=sockdir, timeout=5)


def test_get_on_a_fresh_device(client: Client) -> None:
    assert client.get() == DeviceInfo()


def test_set_then_get(client: Client, device: FakeDevice) -> None:
    client.set(
        f"""
        private_key={'ab' * 32}
        listen_port=51820
        public_key={PUB1.hex()}
        endpoint=[fe80::1%eth0]:5
        persistent_keepalive_interval=25
        allowed_ip=10.1.2.3/8
        allowed_ip=fd00::/64
        """.replace("        ", "")
    )
    info = client.get()
    assert info.private_key == bytes.fromhex("a8" + "ab" * 30 + "6b")
    assert info.listen_port == 51820
    (peer,) = info.peers
    assert peer.public_key == PUB1
    assert peer.endpoint == ("fe80::1", 5)  # printed without its zone, as the reference
    assert peer.persistent_keepalive_interval == 25
    assert peer.allowed_ips == [ip_network("10.0.0.0/8"), ip_network("fd00::/64")]
    assert device.peers[PUB1].endpoint == ("fe80::1%eth0", 5)


def test_set_with_lines_and_typed_operations(client: Client) -> None:
    client.set([f"public_key={PUB1.hex()}", "allowed_ip=10.0.0.0/8"])
    client.set_operations([PeerPublicKey(PUB2), PeerAllowedIP(ip_network("10.2.0.0/16")),
                           PeerPublicKey(PUB1), PeerAllowedIP(ip_network("10.0.0.0/8"), True)])
    peers = {p.public_key: p for p in client.get().peers}
    assert peers[PUB1].allowed_ips == []
    assert peers[PUB2].allowed_ips == [ip_network("10.2.0.0/16")]
    client.set_operations([PeerPublicKey(PUB1), PeerRemove(), PeerPublicKey(bytes(32)),
                           PeerUpdateOnly(), PeerAllowedIP(ip_network("::/0"))])
    assert [p.public_key for p in client.get().peers] == [PUB2]


def test_set_error_is_raised_and_not_atomic(client: Client) -> None:
    with pytest.raises(UapiError) as info:
        client.set(["listen_port=5000", "listen_port=70000", "fwmark=9"])
    assert info.value.errno == EINVAL == -22
    got = client.get()
    assert got.listen_port == 5000 and got.fwmark == 0


def test_device_failure_aborts_the_rest_of_the_set(client: Client) -> None:
    with pytest.raises(UapiError) as info:
        client.set(["fwmark=3", "listen_port=1", "fwmark=4"])
    assert info.value.errno == EADDRINUSE
    assert client.get().fwmark == 3


def test_raw_requests(client: Client) -> None:
    assert client.request(b"get=1\n\n") == b"errno=0\n\n"
    assert client.request(b"get=1\nx") == b"errno=-22\n\n"
    assert client.request(b"hello\n") == b""  # closed without a reply
    assert client.request(b"set=1\nnope\n\n") == b"errno=-71\n\n"


def test_shared_connection(client: Client) -> None:
    with client as c:
        first = c._sock
        c.set(["listen_port=1234"])
        assert c.get().listen_port == 1234
        assert c.request(b"get=1\nx") == b"errno=-22\n\n"
        assert c._sock is first
        # Two requests in one write: the second reply is kept for the next call.
        assert c.request(b"get=1\n\nset=1\nfwmark=5\n\n").startswith(b"listen_port=1234\n")
        assert c.request(b"") == b"errno=0\n\n"
        assert c.request(b"bye\n") == b""  # the server closed it
        assert c._sock is None
        assert c.get().fwmark == 5  # a fresh connection
    assert client._sock is None


def test_many_allowed_ips_through_the_socket(client: Client) -> None:
    lines = [f"public_key={PUB1.hex()}", "replace_allowed_ips=true"]
    lines += [f"allowed_ip=10.{i >> 8}.{i & 255}.0/24" for i in range(20000)]
    client.set(lines)
    (peer,) = client.get().peers
    assert len(peer.allowed_ips) == 20000
    assert peer.allowed_ips[-1] == ip_network("10.78.31.0/24")


def test_from_path(sockdir: str, device: FakeDevice) -> None:
    c = Client.from_path(os.path.join(sockdir, "wgtest0.sock"), timeout=2)
    assert c.get() == DeviceInfo()


def test_bad_arguments(sockdir: str) -> None:
    for name in ["", "a/b", "..", "."]:
        with pytest.raises(ValueError):
            Client(name, socket_dir=sockdir)
    c = Client("x", socket_dir=sockdir)
    assert c.path == os.path.join(sockdir, "x.sock")
    for bad in (["a=1", ""], ["a=1\nb=2"]):
        with pytest.raises(ValueError):
            c.set(bad)
    with pytest.raises(FileNotFoundError):
        c.get()


def test_timeout(sockdir: str) -> None:
    done = threading.Event()

    def mute(sock: socket.socket) -> None:
        with sock:
            sock.recv(100)
            done.wait(5)  # never answers

    server = Server(os.path.join(sockdir, "mute.sock"), mute)
    try:
        with pytest.raises(TimeoutError):
            Client("mute", socket_dir=sockdir, timeout=0.2).get()
    finally:
        done.set()
        server.stop()


def test_reply_cut_short_is_eproto(sockdir: str) -> None:
    def handler(sock: socket.socket) -> None:
        with sock:
            sock.recv(100)
            sock.sendall(b"listen_port=1\n")

    server = Server(os.path.join(sockdir, "cut.sock"), handler)
    try:
        with pytest.raises(UapiError) as info:
            Client("cut", socket_dir=sockdir).get()
        assert info.value.errno == EPROTO
        with pytest.raises(UapiError):
            Client("cut", socket_dir=sockdir).set(["fwmark=1"])
    finally:
        server.stop()

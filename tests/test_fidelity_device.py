"""Issue 8 in the device: sticky source addresses, link down, tx_bytes, without root.

The device is driven without its threads: the test hands its UDP reader's batches to
`_decrypt_batch` (runs, as `Bind.recv_runs` makes them) with the local address each
"arrived on", and runs its timers by hand. Its
UDP sockets are real (0.0.0.0 and :: on a random port), and the remote peer is a sans-IO
core behind a test socket on 127.0.0.1, so the source address of every datagram the device
sends is seen on the wire: all of 127.0.0.0/8 is local, so 127.0.0.2 is a second address
of this host, and 192.0.2.1 (TEST-NET-1) an address that is not ours.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from typing import Iterator

import pytest

from fakes import FakeTun
from helpers import ipv4, sent
from wgpy import crypto, fastpath
from wgpy.constants import INITIATION_SIZE, MESSAGE_COOKIE_REPLY, REKEY_TIMEOUT
from uapi.operations import PeerEndpoint, PeerPublicKey
from wgpy.device import clock
from wgpy.device.config import SetTransaction
from wgpy.device.device import Device
from wgpy.device.log import VERBOSE, Logger
from wgpy.noise.actions import DropReason
from wgpy.noise.interface import Interface

DEV_IP, REMOTE_IP = "10.0.0.1", "10.0.0.2"
LO = socket.if_nametoindex("lo")
L1 = (socket.inet_aton("127.0.0.1"), LO)
L2 = (socket.inet_aton("127.0.0.2"), LO)
GONE = (socket.inet_aton("192.0.2.1"), LO)
QUIET = 0.3  # how long "nothing arrives" is watched for


class Rig:
    """A device (no threads) with one peer: `remote`, a core behind `sock`."""

    def __init__(self) -> None:
        self.device = Device(FakeTun("wgfid"), Logger("wgfid", VERBOSE, io.StringIO()))
        self.device.bind.open(0)
        self.port = self.device.bind.port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.src = self.sock.getsockname()  # the remote's endpoint, as the device sees it
        dev_key, remote_key = crypto.generate_private_key(), crypto.generate_private_key()
        iface = self.device.iface
        iface.jitter = lambda: 0.0
        iface.set_private_key(dev_key)
        self.peer = iface.add_peer(crypto.public_key(remote_key))
        iface.allowed_ips.insert(ipaddress.ip_network(REMOTE_IP + "/32"), self.peer)
        self.peer.endpoint = self.src
        self.remote = Interface(remote_key, jitter=lambda: 0.0)
        self.rpeer = self.remote.add_peer(crypto.public_key(dev_key))
        self.rpeer.endpoint = ("127.0.0.1", self.port)
        self.remote.allowed_ips.insert(ipaddress.ip_network(DEV_IP + "/32"), self.rpeer)

    def close(self) -> None:
        self.device.close()
        self.sock.close()

    def arrive(self, data: bytes, local: tuple[bytes, int] = L1) -> None:
        """`data` from the remote reaches the device on its local address `local`."""
        ((index, datagrams),) = fastpath.runs(data, len(data) or 1) or [(-1, [data])]
        self.device._decrypt_batch([(index, datagrams, self.src, local)])

    def recv(self) -> tuple[bytes, str]:
        """The next datagram the device sent the remote, and the address it left from."""
        data, frm = self.sock.recvfrom(4096)
        assert frm[1] == self.port
        return data, frm[0]

    def quiet(self) -> bool:
        """Nothing arrives for QUIET seconds."""
        self.sock.settimeout(QUIET)
        try:
            self.sock.recvfrom(4096)
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(2.0)

    def handshake(self, local: tuple[bytes, int] = L1) -> None:
        """The remote initiates; the device answers; the remote's keepalive confirms."""
        self.rpeer.last_sent_handshake = None
        now = clock.now()
        (init,) = sent(self.rpeer.initiate(now))
        self.arrive(init, local)
        resp, _ = self.recv()
        (keepalive,) = sent(self.remote.receive(resp, ("127.0.0.1", self.port), now))
        self.arrive(keepalive, local)
        assert self.peer.keypairs.current is not None

    def remote_data(self, payload: bytes = b"x") -> bytes:
        (d,) = sent(self.rpeer.send(ipv4(REMOTE_IP, DEV_IP, payload), clock.now()))
        return d

    def tun_quiet(self) -> bool:
        tun = self.device.tun
        tun.app.settimeout(QUIET)
        try:
            tun.app.recv(4096)
            return False
        except socket.timeout:
            return True


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    r.device.set_up(True)
    try:
        yield r
    finally:
        r.close()


# --- sticky source addresses -------------------------------------------------------------------

def test_forged_or_replayed_datagram_does_not_move_the_sticky_source(rig: Rig) -> None:
    rig.handshake(L1)
    good = rig.remote_data()
    rig.arrive(good, L1)
    assert rig.device.bind.sources[rig.src] == L1
    forged = bytearray(rig.remote_data())
    forged[-1] ^= 1
    rig.arrive(bytes(forged), L2)  # spoofed from the peer's address, to our other address
    assert rig.device.bind.sources[rig.src] == L1
    rig.arrive(good, L2)  # a replay
    assert rig.device.bind.sources[rig.src] == L1
    rig.device.execute(rig.peer.send_keepalive(clock.now()))
    assert rig.recv()[1] == "127.0.0.1"
    rig.arrive(rig.remote_data(), L2)  # the real thing moves it
    assert rig.device.bind.sources[rig.src] == L2
    rig.device.execute(rig.peer.send_keepalive(clock.now()))
    assert rig.recv()[1] == "127.0.0.2"


def test_handshake_retransmit_leaves_from_the_address_routing_picks(rig: Rig) -> None:
    device = rig.device
    device.bind.remember_source(rig.src, L2)
    now = clock.now()
    device.execute(rig.peer.initiate(now))
    data, frm = rig.recv()
    assert len(data) == INITIATION_SIZE and frm == "127.0.0.2"  # sticky until then
    with device.lock:
        actions = device.iface.tick(now + REKEY_TIMEOUT)
    device.execute(actions)
    data, frm = rig.recv()
    assert len(data) == INITIATION_SIZE and frm == "127.0.0.1"
    assert rig.src not in device.bind.sources


def test_endpoint_set_over_uapi_forgets_the_sticky_source(rig: Rig) -> None:
    # The kernel's set_peer sets an endpoint whose src is zero, even an unchanged one.
    device = rig.device
    device.bind.remember_source(rig.src, L2)
    txn = SetTransaction(device)
    with device.lock:
        txn.apply(PeerPublicKey(rig.peer.public_key), clock.now())
        txn.apply(PeerEndpoint("127.0.0.1", rig.src[1]), clock.now())
        txn.finish(clock.now())
    assert rig.peer.endpoint == rig.src
    assert rig.src not in device.bind.sources
    device.execute(rig.peer.initiate(clock.now()))
    assert rig.recv()[1] == "127.0.0.1"


def test_send_from_a_vanished_source_goes_again_at_once_and_counts(rig: Rig) -> None:
    rig.handshake(L1)
    device = rig.device
    device.bind.sources[rig.src] = GONE  # the address was removed from the host
    before = rig.peer.tx_bytes
    actions = rig.peer.send_batch([ipv4(DEV_IP, REMOTE_IP, bytes(100))] * 3
                                  + [ipv4(DEV_IP, REMOTE_IP, b"short")], clock.now())
    device.execute(actions)
    got = [rig.recv() for _ in range(4)]
    assert all(frm == "127.0.0.1" for _, frm in got)
    assert rig.src not in device.bind.sources
    assert rig.peer.tx_bytes - before == sum(len(d) for d, _ in got)
    assert device.drops[DropReason.SEND_FAILED] == 0


def test_tx_bytes_count_only_what_was_sent(rig: Rig) -> None:
    rig.handshake(L1)
    device = rig.device
    before = rig.peer.tx_bytes
    rig.peer.endpoint = ("127.0.0.1", 0)  # sendto port 0: EINVAL, nothing leaves
    device.execute(rig.peer.send_batch([ipv4(DEV_IP, REMOTE_IP)] * 2, clock.now()))
    assert rig.peer.tx_bytes == before
    assert device.drops[DropReason.SEND_FAILED] == 2


def test_cookie_reply_leaves_from_the_address_the_message_arrived_on(rig: Rig) -> None:
    device = rig.device
    now = clock.now()
    (init,) = sent(rig.rpeer.initiate(now))
    with device.lock:
        actions = device._handshake(init, rig.src, L2, now, True)  # under load
    device.execute(actions)
    data, frm = rig.recv()
    assert data[0] == MESSAGE_COOKIE_REPLY and frm == "127.0.0.2"
    assert rig.src not in device.bind.sources  # a cookie reply authenticates nothing


# --- link down ---------------------------------------------------------------------------------

def test_while_down_no_handshake_is_answered_and_nothing_decrypted(rig: Rig) -> None:
    device = rig.device
    device.set_up(False)
    now = clock.now()
    (init,) = sent(rig.rpeer.initiate(now))
    rig.arrive(init)
    assert rig.quiet(), "a handshake was answered while down"
    assert rig.peer.keypairs.next is None and rig.peer.keypairs.current is None
    assert device.drops[DropReason.INTERFACE_DOWN] == 1
    # The socket stays bound, and `get` still lists its port.
    assert device.bind.port == rig.port and device.bind.sockets
    device.set_up(True)
    rig.handshake()
    rig.arrive(rig.remote_data(b"up"))
    assert device.tun.app.recv(4096) == ipv4(REMOTE_IP, DEV_IP, b"up")
    device.set_up(False)
    rig.arrive(rig.remote_data(b"down"))
    assert rig.tun_quiet()


def test_packets_from_the_tun_before_up_are_staged_and_sent_at_up(rig: Rig) -> None:
    device = rig.device
    device.set_up(False)
    device._encrypt_batch([[ipv4(DEV_IP, REMOTE_IP, b"early")]])  # one read, one packet
    assert rig.quiet(), "sent while down"
    device.set_up(True)
    data, _ = rig.recv()
    assert len(data) == INITIATION_SIZE  # the staged packet asks for a handshake
    acts = rig.remote.receive(data, ("127.0.0.1", rig.port), clock.now())
    rig.arrive(sent(acts)[0])  # the response
    out, _ = rig.recv()
    got = rig.remote.receive(out, ("127.0.0.1", rig.port), clock.now())
    assert [a.packet for a in got if type(a).__name__ == "WriteToTun"] == [
        ipv4(DEV_IP, REMOTE_IP, b"early")]


def test_initiation_made_while_down_is_retried_once_up(rig: Rig) -> None:
    device = rig.device
    device.set_up(False)
    with device.lock:
        actions = rig.peer.initiate(clock.now())
    device.execute(actions)
    assert rig.quiet(), "sent while down"
    device.set_up(True)
    data, _ = rig.recv()
    assert len(data) == INITIATION_SIZE
    assert rig.peer.timers.deadlines["retransmit_handshake"] is not None

"""The Wireshark key log (WGPY_KEYLOG_FILE), without root.

The core's hook gets the keys of each handshake message created; the blocks it makes, read
as Wireshark's dissector reads them (packet-wireguard.c: `NAME = base64`, a PRESHARED_KEY
belongs to the LOCAL_EPHEMERAL_PRIVATE_KEY read before it), decrypt the handshake and the
transport data of a preshared-key session on the wire, from the initiator's block and from
the responder's. The file: created 0600, appended to, a wider mode tightened, symbolic
links, non-regular and foreign files refused, write failures logged once and never raised.
"""

from __future__ import annotations

import base64
import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import test_device
from helpers import IP_A, IP_B, Pair, ipv4, sent

from wgpy import crypto
from wgpy.constants import CONSTRUCTION, IDENTIFIER
from wgpy.device.device import Device
from wgpy.observe.keylog import KeyLog, KeyLogError
from wgpy.device.log import VERBOSE, Logger
from wgpy.noise.keylog import HandshakeSecrets, keylog_lines

NOW = 1000.0
NAMES = ["LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY",
         "LOCAL_EPHEMERAL_PRIVATE_KEY", "PRESHARED_KEY"]


def parse_block(block: bytes) -> dict[str, bytes]:
    """One block as the dissector reads it: `NAME = key`, spaces around `=` ignored, the
    key 44 base64 characters; the preshared key must come after the ephemeral key."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for line in block.decode().splitlines():
        m = re.fullmatch(r" *([A-Z_]+) *= *([A-Za-z0-9+/]{43}=)", line)
        assert m, line
        keys[m[1]] = base64.b64decode(m[2])
        order.append(m[1])
    assert order.index("LOCAL_EPHEMERAL_PRIVATE_KEY") < order.index("PRESHARED_KEY")
    return keys


def session_keys(keys: dict[str, bytes], initiation: bytes, response: bytes
                 ) -> tuple[bytes, bytes]:
    """The transport keys (initiator's sending key first) from one key log block and the
    two handshake messages on the wire: the dissector's derivation, in miniature. Which
    role the block is for shows from whose ephemeral it holds."""
    s_priv, eph = keys["LOCAL_STATIC_PRIVATE_KEY"], keys["LOCAL_EPHEMERAL_PRIVATE_KEY"]
    e_i, static_ct, ts_ct = initiation[8:40], initiation[40:88], initiation[88:116]
    e_r, empty_ct = response[12:44], response[44:60]
    initiator = crypto.public_key(eph) == e_i
    assert initiator or crypto.public_key(eph) == e_r, "ephemeral of neither message"
    s_pub_r = keys["REMOTE_STATIC_PUBLIC_KEY"] if initiator else crypto.public_key(s_priv)
    ck = crypto.hash(CONSTRUCTION)
    h = crypto.hash(crypto.hash(ck + IDENTIFIER) + s_pub_r)
    ck, h = crypto.kdf1(ck, e_i), crypto.hash(h + e_i)
    ck, k = crypto.kdf2(ck, crypto.dh(eph, s_pub_r) if initiator else crypto.dh(s_priv, e_i))
    s_pub_i = crypto.aead_decrypt(k, 0, static_ct, h)
    h = crypto.hash(h + static_ct)
    ck, k = crypto.kdf2(ck, crypto.dh(s_priv, s_pub_r if initiator else s_pub_i))
    crypto.aead_decrypt(k, 0, ts_ct, h)  # the timestamp
    h = crypto.hash(h + ts_ct)
    ck, h = crypto.kdf1(ck, e_r), crypto.hash(h + e_r)
    ck = crypto.kdf1(ck, crypto.dh(eph, e_r if initiator else e_i))  # ee
    ck = crypto.kdf1(ck, crypto.dh(s_priv, e_r) if initiator else crypto.dh(eph, s_pub_i))
    ck, tau, k = crypto.kdf3(ck, keys["PRESHARED_KEY"])
    h = crypto.hash(h + tau)
    crypto.aead_decrypt(k, 0, empty_ct, h)  # raises if the preshared key is wrong
    return crypto.kdf2(ck, b"")


def open_transport(key: bytes, datagram: bytes) -> bytes:
    counter = int.from_bytes(datagram[8:16], "little")
    return crypto.aead_decrypt(key, counter, datagram[16:], b"")


def psk_handshake() -> tuple[Pair, bytes, list[HandshakeSecrets], list[HandshakeSecrets],
                             bytes, bytes, bytes, bytes]:
    """A and B with a preshared key; A sends, B answers. Returns the pair, the psk, what
    each side's hook got, the initiation, the response and one data datagram each way."""
    p, psk = Pair(), os.urandom(32)
    p.pa.preshared_key = p.pb.preshared_key = psk
    got_a: list[HandshakeSecrets] = []
    got_b: list[HandshakeSecrets] = []
    p.a.keylog, p.b.keylog = got_a.append, got_b.append
    (initiation,) = sent(p.a.send(ipv4(IP_A, IP_B, b"to b"), NOW))
    (response,) = sent(p.to_b([initiation], NOW))
    (a_to_b,) = sent(p.to_a([response], NOW))  # the staged packet
    p.to_b([a_to_b], NOW)  # confirms the session to B, which may now send
    (b_to_a,) = sent(p.b.send(ipv4(IP_B, IP_A, b"to a"), NOW))
    assert (initiation[0], response[0], a_to_b[0], b_to_a[0]) == (1, 2, 4, 4)
    return p, psk, got_a, got_b, initiation, response, a_to_b, b_to_a


# --- the core's hook -----------------------------------------------------------------------------

def test_hook_gets_the_keys_of_each_message_created() -> None:
    p, psk, got_a, got_b, initiation, response, _, _ = psk_handshake()
    assert len(got_a) == 1 and len(got_b) == 1  # one initiation, one response
    a, b = got_a[0], got_b[0]
    assert a.initiator and not b.initiator
    assert crypto.public_key(a.local_ephemeral_private) == initiation[8:40]
    assert crypto.public_key(b.local_ephemeral_private) == response[12:44]
    assert a.local_static_private == p.a.identity.private
    assert b.local_static_private == p.b.identity.private
    assert (a.remote_static_public, b.remote_static_public) == (p.b.identity.public,
                                                                 p.a.identity.public)
    assert a.preshared_key == b.preshared_key == psk
    for secrets in (a, b):  # no secret in a repr (they end up in tracebacks and logs)
        for secret in (secrets.local_static_private, secrets.local_ephemeral_private, psk):
            assert secret.hex() not in repr(secrets) and repr(secret) not in repr(secrets)


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_each_sides_block_decrypts_the_session(side: str) -> None:
    _, _, got_a, got_b, initiation, response, a_to_b, b_to_a = psk_handshake()
    block = keylog_lines((got_a if side == "initiator" else got_b)[0])
    keys = parse_block(block)
    assert sorted(keys) == sorted(NAMES)
    send_i, send_r = session_keys(keys, initiation, response)
    assert open_transport(send_i, a_to_b).startswith(ipv4(IP_A, IP_B, b"to b"))
    assert open_transport(send_r, b_to_a).startswith(ipv4(IP_B, IP_A, b"to a"))
    wrong = dict(keys, PRESHARED_KEY=crypto.ZERO_KEY)  # the psk is needed: without, no
    with pytest.raises(crypto.InvalidTag):
        session_keys(wrong, initiation, response)


def test_no_hook_no_key_material() -> None:
    p = Pair()
    assert p.a.keylog is None
    assert len(sent(p.a.send(ipv4(IP_A, IP_B), NOW))) == 1  # handshakes run without one


def test_block_without_preshared_key_lists_zeros() -> None:
    secrets = HandshakeSecrets(bytes(range(32)), b"\x01" * 32, b"\x02" * 32, crypto.ZERO_KEY)
    keys = parse_block(keylog_lines(secrets))
    assert keys == dict(zip(NAMES, [bytes(range(32)), b"\x01" * 32, b"\x02" * 32,
                                    crypto.ZERO_KEY]))


# --- the file ------------------------------------------------------------------------------------

def some_secrets() -> HandshakeSecrets:
    return HandshakeSecrets(*(os.urandom(32) for _ in range(4)))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_is_created_0600_and_appended_to(tmp_path: Path) -> None:
    path, log = tmp_path / "keys.log", io.StringIO()
    old = os.umask(0)  # the mode must not depend on the umask
    try:
        keylog = KeyLog.open(str(path), Logger("wgk", VERBOSE, log))
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    blocks = [some_secrets() for _ in range(3)]
    keylog.write(blocks[0])
    keylog.write(blocks[1])
    keylog.close()
    keylog.write(blocks[2])  # closed: logged, not raised, not written
    again = KeyLog.open(str(path), Logger("wgk", VERBOSE, log))
    again.write(blocks[2])
    again.close()
    assert path.read_bytes() == b"".join(keylog_lines(s) for s in blocks)
    assert mode(path) == 0o600


def test_wider_mode_is_tightened(tmp_path: Path) -> None:
    path, log = tmp_path / "keys.log", io.StringIO()
    earlier = keylog_lines(some_secrets())
    path.write_bytes(earlier)
    path.chmod(0o644)
    keylog = KeyLog.open(str(path), Logger("wgk", VERBOSE, log))
    keylog.close()
    assert mode(path) == 0o600 and keylog.tightened_from == 0o644
    assert path.read_bytes() == earlier  # kept, appended to later
    assert log.getvalue() == ""  # said by report_open, once the daemon's logger is set up
    keylog.report_open(Logger("wgk", VERBOSE, log))
    assert "0644 tightened to 0600" in log.getvalue()
    again = KeyLog.open(str(path), Logger("wgk", VERBOSE, log))
    again.close()
    assert again.tightened_from is None


def test_symlink_fifo_and_directory_are_refused(tmp_path: Path) -> None:
    log = Logger("wgk", VERBOSE, io.StringIO())
    target = tmp_path / "target"
    target.write_bytes(b"")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")  # no reader: must fail, not block the start
    with pytest.raises(KeyLogError, match="symbolic link"):
        KeyLog.open(str(tmp_path / "link"), log)
    with pytest.raises(KeyLogError):
        KeyLog.open(str(tmp_path / "fifo"), log)
    with pytest.raises(KeyLogError):
        KeyLog.open(str(tmp_path), log)
    with pytest.raises(KeyLogError):
        KeyLog.open(str(tmp_path / "missing-dir" / "keys.log"), log)
    assert target.read_bytes() == b""


@pytest.mark.parametrize("content", [b"nameserver 192.0.2.53\n", b"\n", b"PRESHARED_KEY=x"])
def test_a_file_that_is_not_a_key_log_is_refused_and_left_alone(tmp_path: Path,
                                                                content: bytes) -> None:
    """WGPY_KEYLOG_FILE=/etc/resolv.conf by mistake: the file was tightened to 0600 and
    keys were appended to it before."""
    path = tmp_path / "resolv.conf"
    path.write_bytes(content)
    path.chmod(0o644)
    with pytest.raises(KeyLogError, match="is not a key log"):
        KeyLog.open(str(path), Logger("wgk", VERBOSE, io.StringIO()))
    assert path.read_bytes() == content and mode(path) == 0o644


def test_a_file_with_another_hard_link_is_refused_and_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "precious"
    elsewhere.write_bytes(b"keep")
    elsewhere.chmod(0o644)
    os.link(elsewhere, tmp_path / "keys.log")
    with pytest.raises(KeyLogError, match="2 hard links"):
        KeyLog.open(str(tmp_path / "keys.log"), Logger("wgk", VERBOSE, io.StringIO()))
    assert elsewhere.read_bytes() == b"keep" and elsewhere.stat().st_mode & 0o777 == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_bytes(b"")
    os.chown(path, 65534, 65534)
    with pytest.raises(KeyLogError, match="belongs to uid 65534"):
        KeyLog.open(str(path), Logger("wgk", VERBOSE, io.StringIO()))


def test_write_failures_are_logged_once_and_never_raised(tmp_path: Path) -> None:
    log = io.StringIO()
    keylog = KeyLog(os.open("/dev/full", os.O_WRONLY), "/dev/full", Logger("wgk", VERBOSE, log))
    try:
        for _ in range(3):
            keylog.write(some_secrets())  # ENOSPC
        assert log.getvalue().count("ERROR") == 1
        assert "write failed" in log.getvalue()
    finally:
        keylog.close()


# --- the device ----------------------------------------------------------------------------------

def test_device_writes_the_key_log_of_its_handshakes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two in-process devices over loopback UDP, each with a key log: after one packet
    with a preshared key, each file holds its own side's block, mode 0600, and the log
    says a key log is written without showing any key."""
    files = {name: tmp_path / f"{name}.keys" for name in ("wgka", "wgkb")}

    def device(tun: object, log: Logger, crypto_workers: int = 1) -> Device:
        keylog = KeyLog.open(str(files[tun.name]), log)  # type: ignore[attr-defined]
        keylog.report_open(log)
        return Device(tun, log, keylog=keylog, crypto_workers=crypto_workers)

    monkeypatch.setattr(test_device, "Device", device)
    a, b = test_device.Node("wgka", tmp_path), test_device.Node("wgkb", tmp_path)
    psk = os.urandom(32)
    try:
        test_device.configure(a, b)
        for x, y in ((a, b), (b, a)):
            x.client.set([f"public_key={y.public.hex()}", f"preshared_key={psk.hex()}"])
        out = ipv4("10.0.0.1", "10.0.0.2", b"over the tunnel")
        a.tun.app.send(out)
        assert b.tun.app.recv(2000) == out
    finally:
        a.close()
        b.close()
    for node, other in ((a, b), (b, a)):
        path = files[node.tun.name]
        assert mode(path) == 0o600
        assert len(path.read_bytes().splitlines()) == 4  # one handshake: one block each
        keys = parse_block(path.read_bytes())
        assert keys["LOCAL_STATIC_PRIVATE_KEY"] == crypto.clamp(node.private)
        assert keys["REMOTE_STATIC_PUBLIC_KEY"] == other.public
        assert keys["PRESHARED_KEY"] == psk
        text = node.log.getvalue()
        assert f"Writing the key log {path}" in text
        for secret in (node.private, psk, keys["LOCAL_EPHEMERAL_PRIVATE_KEY"]):
            assert base64.b64encode(secret).decode() not in text and secret.hex() not in text


def test_device_refuses_a_key_log_it_cannot_open(tmp_path: Path) -> None:
    """The embedding API opens the key log (the engine takes an open one): a path that
    cannot be opened is KeyLogError, and nothing stays bound (the same name works after)."""
    import wgpy  # noqa: PLC0415

    with pytest.raises(KeyLogError):
        wgpy.Device.in_memory("wgkx", keylog=str(tmp_path / "no" / "such" / "dir"))
    with wgpy.Device.in_memory("wgkx", keylog=str(tmp_path / "keys")) as dev:
        assert dev.name == "wgkx"
    assert (tmp_path / "keys").exists()



def test_daemon_refuses_to_start_with_a_key_log_it_cannot_open(tmp_path: Path) -> None:
    """Checked before the TUN is created: exit 1 with one line, and nothing made."""
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    name = f"wgk{os.getpid() % 100000}"
    env = {k: v for k, v in os.environ.items() if k not in ("WG_TUN_FD", "WG_UAPI_FD")}
    result = subprocess.run([sys.executable, "-m", "wgpy", "-f", name], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL,
                            env=dict(env, WGPY_KEYLOG_FILE=str(tmp_path / "link")))
    assert result.returncode == 1, result
    assert f"ERROR: ({name}) " in result.stdout
    assert "Cannot open key log" in result.stdout and "symbolic link" in result.stdout
    assert not (tmp_path / "elsewhere").exists()
    assert not os.path.exists(f"/sys/class/net/{name}")

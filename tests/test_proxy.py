"""`wgpy proxy` without root: the wg-quick parser, DNS messages, and the proxy serving
SOCKS5 and a port forward into a WireGuard network whose other end is an in-process
`wgpy.Tunnel` with a `wgpy.Network` (a TCP server and a DNS server at 10.60.0.1).
Against wireguard-go in a namespace, as `nobody`: compat/test_proxy.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Iterator

import pytest

import wgpy
from wgpy.api import proxy as proxy_module
from wgpy.api.proxy import Forward, Proxy, serve
from wgpy.netstack import dns
from wgpy.wgquick import parse

SERVER, CLIENT = "10.60.0.1", "10.60.0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dns_reply(query: bytes, address: str | None) -> bytes:
    """What a resolver answers: the question, then one A record (or NXDOMAIN)."""
    ident = query[:2]
    question = query[12:]
    if address is None:
        return ident + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0) + question
    return (ident + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question
            + struct.pack("!HHHIH", 0xC00C, dns.A, 1, 60, 4) + socket.inet_aton(address))


def test_wg_quick_files() -> None:
    key, peer = wgpy.generate_private_key(), wgpy.public_key(wgpy.generate_private_key())
    import base64  # noqa: PLC0415
    k, p = base64.b64encode(key).decode(), base64.b64encode(peer).decode()
    config = parse(f"""
        [Interface]  # comment
        PrivateKey = {k}
        Address = 10.60.0.2/32, fd00:60::2/128
        DNS = 10.60.0.1, wg.example
        MTU = 1380
        PostUp = iptables -A ...
        [Peer]
        PublicKey = {p}
        Endpoint = 192.0.2.1:51820
        AllowedIPs = 10.60.0.0/24, fd00:60::/64
        PersistentKeepalive = 25
    """)
    assert config.private_key == k and config.mtu == 1380 and config.dns == ["10.60.0.1"]
    assert config.search == ["wg.example"] and len(config.addresses) == 2
    assert config.peers[0].allowed_ips == ["10.60.0.0/24", "fd00:60::/64"]
    assert config.peers[0].persistent_keepalive == 25
    for bad, says in ((f"[Interface]\nPrivateKey = {k}\n", "no Address"),
                      ("[Interface]\nAddress = 10.0.0.1/24\n", "no PrivateKey"),
                      ("[Interfaec]\n", "line 1: unknown section"),
                      (f"[Interface]\nPrivateKey = {k}\nAddress = nonsense\n", "line 3"),
                      (f"[Interface]\nPrivateKey = {k}\nColour = blue\n", "unknown key")):
        with pytest.raises(ValueError) as caught:
            parse(bad)
        assert says in str(caught.value) and k not in str(caught.value)


def test_dns_messages() -> None:
    q = dns.query("web.wg", dns.A, 7)
    assert q[12:] == b"\x03web\x02wg\x00\x00\x01\x00\x01"
    assert dns.answers(dns_reply(q, "10.60.0.1"), 7, dns.A) == ["10.60.0.1"]
    with pytest.raises(dns.DnsError, match="NXDOMAIN"):
        dns.answers(dns_reply(q, None), 7, dns.A)
    with pytest.raises(dns.DnsError, match="not the reply"):
        dns.answers(dns_reply(q, "10.60.0.1"), 8, dns.A)
    looping = dns_reply(q, "10.60.0.1")[:12 + len(q) - 12] + b"\xc0\x0c"
    with pytest.raises(dns.DnsError):
        dns.answers(looping + b"\x00", 7, dns.A)
    with pytest.raises(dns.DnsError):
        dns.query("x" * 64 + ".wg", dns.A, 1)


def test_forward_specs() -> None:
    f = Forward("8080:10.60.0.1:80")
    assert (f.bind, f.port, f.host, f.host_port) == ("127.0.0.1", 8080, "10.60.0.1", 80)
    f = Forward("0.0.0.0:8443:[fd00::1]:443")
    assert (f.bind, f.port, f.host, f.host_port) == ("0.0.0.0", 8443, "fd00::1", 443)
    with pytest.raises(ValueError):
        Forward("8080:host")


@contextlib.contextmanager
def proxied_network() -> Iterator[tuple[int, int]]:
    """The far side (an echo server on 7 and a DNS server on 53 at 10.60.0.1) and the
    proxy (SOCKS5 and -L to port 7) in a thread; yields the SOCKS and forward ports."""
    import base64  # noqa: PLC0415
    far_key, near_key = wgpy.generate_private_key(), wgpy.generate_private_key()
    with wgpy.Tunnel(far_key, wgpy.public_key(near_key), ("127.0.0.1", 9),
                     address=SERVER) as far, wgpy.Network(far) as net:
        text = f"""[Interface]
PrivateKey = {base64.b64encode(near_key).decode()}
Address = {CLIENT}/32
DNS = {SERVER}
[Peer]
PublicKey = {base64.b64encode(wgpy.public_key(far_key)).decode()}
Endpoint = 127.0.0.1:{far.listen_port}
AllowedIPs = 10.60.0.0/24
"""
        listener, resetter, resolver = net.listen(7), net.listen(9), net.udp(53)
        stop_far = threading.Event()

        def echo() -> None:
            while not stop_far.is_set():
                try:
                    sock = listener.accept(timeout=0.2)
                except (TimeoutError, OSError):
                    continue
                sock.timeout = 10

                def one(sock: wgpy.api.network.TcpSocket = sock) -> None:
                    with contextlib.suppress(OSError):
                        while data := sock.recv(65536):
                            sock.sendall(data)
                    sock.close()
                threading.Thread(target=one, daemon=True).start()

        def reset() -> None:  # port 9: read a little, then reset the connection
            while not stop_far.is_set():
                try:
                    sock = resetter.accept(timeout=0.2)
                except (TimeoutError, OSError):
                    continue
                sock.timeout = 10
                with contextlib.suppress(OSError):
                    sock.recv(10)
                sock.abort()

        def answer() -> None:
            while not stop_far.is_set():
                try:
                    query, source = resolver.recvfrom(timeout=0.2)
                except (TimeoutError, OSError):
                    continue
                name = query[13:13 + query[12]]
                resolver.sendto(dns_reply(query, SERVER if name == b"echo" else None), source)

        workers = [threading.Thread(target=target) for target in (echo, reset, answer)]
        for w in workers:
            w.start()
        proxy = Proxy(parse(text))
        socks_port, forward_port = _free_port(), _free_port()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=loop.run_until_complete, args=(serve(
            proxy, ("127.0.0.1", socks_port), [Forward(f"{forward_port}:{SERVER}:7")],
            stop),))
        thread.start()
        try:
            for port in (socks_port, forward_port):
                for _ in range(100):
                    with contextlib.suppress(OSError):
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    threading.Event().wait(0.05)
            yield socks_port, forward_port
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()
            proxy.close()
            stop_far.set()
            for w in workers:
                w.join(5)


def socks_connect(port: int, host: str, dport: int) -> tuple[socket.socket, int]:
    """A SOCKS5 CONNECT by name or address; the socket and the reply code."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    try:
        addr = b"\x01" + socket.inet_aton(host)
    except OSError:
        addr = b"\x03" + bytes([len(host)]) + host.encode()
    sock.sendall(b"\x05\x01\x00" + addr + dport.to_bytes(2, "big"))
    reply = sock.recv(10)
    return sock, reply[1]


def test_socks5_by_name_and_address_and_a_port_forward() -> None:
    with proxied_network() as (socks_port, forward_port):
        for host in ("echo", SERVER):
            sock, code = socks_connect(socks_port, host, 7)
            assert code == 0
            data = bytes(range(256)) * 400
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
            assert got == data
            sock.close()
        with socket.create_connection(("127.0.0.1", forward_port), timeout=20) as sock:
            sock.sendall(b"through -L")
            assert sock.recv(100) == b"through -L"


def test_socks5_errors_and_the_proxy_serves_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "CONNECT_TIMEOUT", 2.0)
    with proxied_network() as (socks_port, _):
        assert socks_connect(socks_port, SERVER, 8)[1] == 5  # refused: nothing on port 8
        assert socks_connect(socks_port, "nowhere", 7)[1] == 4  # NXDOMAIN
        assert socks_connect(socks_port, "192.0.2.1", 7)[1] == 2  # outside AllowedIPs
        assert socks_connect(socks_port, "10.60.0.9", 7)[1] == 4  # nobody there: timeout
        with socket.create_connection(("127.0.0.1", socks_port), timeout=20) as sock:
            sock.sendall(b"\x05\x01\x00\x05\x02\x00\x01" + bytes(6))  # BIND
            assert sock.recv(2) == b"\x05\x00" and sock.recv(10)[1] == 7
        with socket.create_connection(("127.0.0.1", socks_port), timeout=20) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not SOCKS at all
            assert sock.recv(100)[:2] in (b"", b"\x05\x01")
        sock, code = socks_connect(socks_port, SERVER, 9)
        assert code == 0
        sock.sendall(b"then reset")
        with pytest.raises(ConnectionResetError):
            while sock.recv(100):  # the far end's reset is passed on as one
                pass
        sock.close()
        sock, code = socks_connect(socks_port, "echo", 7)
        assert code == 0  # still serving
        sock.sendall(b"ok")
        assert sock.recv(2) == b"ok"
        sock.close()


def test_the_command_line_says_what_is_wrong_and_never_a_key(tmp_path: object) -> None:
    import base64  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415
    assert isinstance(tmp_path, Path)
    key = base64.b64encode(wgpy.generate_private_key()).decode()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wgpy", "proxy", *args],
                              capture_output=True, text=True, timeout=30)

    missing = run(str(tmp_path / "none.conf"))
    assert missing.returncode == 1 and "No such file" in missing.stderr
    conf = tmp_path / "two.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {key}\nAddress = 10.0.0.2/32\n")
    none = run(str(conf))
    assert none.returncode == 1 and "one [Peer]" in none.stderr and key not in none.stderr
    conf.write_text(f"[Interface]\nPrivateKey = {key}\nAddress = 10.0.0.2/32\nMTU = 9\n")
    bad = run(str(conf))
    assert bad.returncode == 1 and "line 4" in bad.stderr and key not in bad.stderr
    peer = base64.b64encode(wgpy.public_key(wgpy.generate_private_key())).decode()
    conf.write_text(f"[Interface]\nPrivateKey = {key}\nAddress = 10.0.0.2/32\n"
                    f"[Peer]\nPublicKey = {peer}\nEndpoint = 127.0.0.1:9\n")
    forward = run(str(conf), "-L", "nonsense", "--socks", "127.0.0.1:0")
    assert forward.returncode == 1 and "expected [BIND:]PORT:HOST:HOSTPORT" in forward.stderr

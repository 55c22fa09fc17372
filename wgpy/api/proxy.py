"""`wgpy proxy CONFIG`: a SOCKS5 proxy and TCP port forwards into a WireGuard network, as
an ordinary user: no TUN, no root, nothing changed on the host.

Theory of operation: CONFIG is a wg-quick file (`wgpy.wgquick`) with one `[Peer]`. Its
`[Interface]` becomes a `wgpy.Tunnel` to that peer on an unprivileged UDP socket, and a
`wgpy.Network` on the tunnel is this host's TCP/IP inside the WireGuard network, at the
file's `Address`. On the host side asyncio serves ordinary sockets: SOCKS5 (RFC 1928,
no authentication, `CONNECT`) on `--socks` (127.0.0.1:1080 by default) and, for each
`-L [BIND:]PORT:HOST:HOSTPORT`, a listener on BIND (127.0.0.1) that connects each client
to HOST:HOSTPORT through the tunnel (ssh -L's syntax). Bytes are then copied both ways,
and each direction's end (EOF) is passed on as a half-close.

Names (SOCKS5 `DOMAINNAME`, a forward's HOST) are resolved through the tunnel by the DNS
server the file names (`DNS =`), over UDP with `wgpy.netstack.dns`; without one, by the
host's resolver. A destination outside the peer's `AllowedIPs` is refused at once (SOCKS
reply 2) rather than left to time out. Every failure of one client (a bad request, an
unreachable host, a reset) is answered with its SOCKS reply code or a closed connection,
logged with its cause, and the proxy serves on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import itertools
import logging
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Sequence

from wgpy.api.network import Network
from wgpy.api.tunnel import Tunnel
from wgpy.constants import DEFAULT_MTU
from wgpy.netstack import dns
from wgpy.wgquick import WgQuickConfig, parse

__all__ = ["Proxy", "Forward", "main"]

log = logging.getLogger("wgpy.proxy")

CONNECT_TIMEOUT = 30.0  # a SYN unanswered this long is "host unreachable"
DNS_TIMEOUT = 2.0  # per try; three tries per server
_COPY_CHUNK = 1 << 16
# RFC 1928 section 6 reply codes.
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, NETWORK_UNREACHABLE, HOST_UNREACHABLE, \
    CONNECTION_REFUSED, TTL_EXPIRED, COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = range(9)
_IDS = itertools.count(0x2A2A)


class Refused(Exception):
    """A SOCKS request we answer with `code`; the message says why."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class Forward:
    """-L [BIND:]PORT:HOST:HOSTPORT (HOST may be [IPv6])."""

    def __init__(self, spec: str) -> None:
        parts, rest = [], spec
        while rest:
            if rest.startswith("["):
                end = rest.index("]")
                parts.append(rest[1:end])
                rest = rest[end + 2:]
            else:
                head, _, rest = rest.partition(":")
                parts.append(head)
        if len(parts) == 3:
            parts.insert(0, "127.0.0.1")
        if len(parts) != 4 or not parts[1].isdigit() or not parts[3].isdigit():
            raise ValueError(f"-L {spec}: expected [BIND:]PORT:HOST:HOSTPORT")
        self.bind, self.port = parts[0], int(parts[1])
        self.host, self.host_port = parts[2], int(parts[3])


class Proxy:
    """The tunnel, its network, and how one client's destination is reached."""

    def __init__(self, config: WgQuickConfig) -> None:
        if len(config.peers) != 1:
            raise ValueError(f"wgpy proxy talks to one [Peer]; the file has "
                             f"{len(config.peers)}")
        peer = config.peers[0]
        if peer.endpoint is None:
            raise ValueError("the [Peer] has no Endpoint")
        self.config = config
        self.allowed = [ipaddress.ip_network(a) for a in peer.allowed_ips] or \
            [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        address = config.addresses[0].ip
        self.tunnel = Tunnel(config.private_key, peer.public_key, peer.endpoint,
                             address=str(address), preshared_key=peer.preshared_key,
                             allowed_ips=[str(a) for a in self.allowed],
                             listen_port=config.listen_port,
                             persistent_keepalive=peer.persistent_keepalive,
                             mtu=config.mtu or DEFAULT_MTU, name="wgpy-proxy")
        try:
            self.network = Network(self.tunnel, [str(a.ip) for a in config.addresses])
        except BaseException:
            self.tunnel.close()
            raise

    def close(self) -> None:
        self.network.close()
        self.tunnel.close()

    # --- reaching a destination -------------------------------------------------------------

    async def resolve(self, host: str) -> str:
        try:
            return str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            pass
        if not self.config.dns:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, None, proto=6)
            except OSError as exc:
                raise Refused(HOST_UNREACHABLE, f"cannot resolve {host}: {exc}") from None
            return str(infos[0][4][0])
        return await asyncio.get_running_loop().run_in_executor(None, self._resolve, host)

    def _resolve(self, host: str) -> str:
        """Through the tunnel: A first, then AAAA if the tunnel has an IPv6 address."""
        kinds = [dns.A] + ([dns.AAAA] if any(a.version == 6 for a in self.config.addresses)
                           else [])
        why = "no answer"
        sock = self.network.udp()
        try:
            for server in self.config.dns:
                for qtype in kinds:
                    for _ in range(3):
                        ident = next(_IDS) & 0xFFFF
                        sock.sendto(dns.query(host, qtype, ident), (server, 53))
                        try:
                            reply, source = sock.recvfrom(timeout=DNS_TIMEOUT)
                            if source[0] != server:
                                continue
                            found = dns.answers(reply, ident, qtype)
                        except TimeoutError:
                            why = f"DNS server {server} did not answer"
                            continue
                        except dns.DnsError as exc:
                            why = str(exc)
                            break
                        if found:
                            return found[0]
                        break
        finally:
            sock.close()
        raise Refused(HOST_UNREACHABLE, f"cannot resolve {host}: {why}")

    async def connect(self, host: str, port: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        address = await self.resolve(host)
        if not any(ipaddress.ip_address(address) in net for net in self.allowed):
            raise Refused(NOT_ALLOWED, f"{address} is outside the peer's AllowedIPs")
        try:
            return await asyncio.wait_for(self.network.open_connection(address, port),
                                          CONNECT_TIMEOUT)
        except ConnectionRefusedError as exc:
            raise Refused(CONNECTION_REFUSED, str(exc)) from None
        except (TimeoutError, asyncio.TimeoutError):
            raise Refused(HOST_UNREACHABLE, f"no answer from {address} port {port} within "
                                            f"{CONNECT_TIMEOUT:.0f} s") from None
        except OSError as exc:
            code = NETWORK_UNREACHABLE if exc.errno == errno.ENETDOWN else GENERAL_FAILURE
            raise Refused(code, f"{address} port {port}: {exc}") from None

    # --- serving clients --------------------------------------------------------------------

    async def socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            greeting = await reader.readexactly(2)
            if greeting[0] != 5:
                raise Refused(GENERAL_FAILURE, f"SOCKS version {greeting[0]}, not 5")
            methods = await reader.readexactly(greeting[1])
            if 0 not in methods:
                writer.write(b"\x05\xff")
                raise Refused(GENERAL_FAILURE, "the client offers no method we take "
                                               "(only 'no authentication')")
            writer.write(b"\x05\x00")
            version, command, _, kind = await reader.readexactly(4)
            if kind == 1:
                host = str(ipaddress.ip_address(await reader.readexactly(4)))
            elif kind == 4:
                host = str(ipaddress.ip_address(await reader.readexactly(16)))
            elif kind == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode(
                    "idna")
            else:
                raise Refused(ADDRESS_NOT_SUPPORTED, f"address type {kind}")
            port = int.from_bytes(await reader.readexactly(2), "big")
            if command != 1:
                raise Refused(COMMAND_NOT_SUPPORTED, f"command {command} (only CONNECT)")
            remote_reader, remote_writer = await self.connect(host, port)
        except Refused as exc:
            log.info("SOCKS %s: %s", peer, exc)
            if not writer.is_closing():
                writer.write(bytes([5, exc.code, 0, 1]) + bytes(6))
            await _close(writer)
            return
        except (asyncio.IncompleteReadError, ConnectionError, UnicodeError, ValueError) as exc:
            log.info("SOCKS %s: bad request (%s)", peer, type(exc).__name__)
            await _close(writer)
            return
        bound = remote_writer.get_extra_info("sockname")
        addr = ipaddress.ip_address(bound[0])
        writer.write(bytes([5, SUCCEEDED, 0, 1 if addr.version == 4 else 4]) + addr.packed
                     + bound[1].to_bytes(2, "big"))
        await _splice(reader, writer, remote_reader, remote_writer)

    async def forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      target: Forward) -> None:
        try:
            remote_reader, remote_writer = await self.connect(target.host, target.host_port)
        except Refused as exc:
            log.info("forward %d -> %s:%d: %s", target.port, target.host, target.host_port,
                     exc)
            await _close(writer)
            return
        await _splice(reader, writer, remote_reader, remote_writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_COPY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError) as exc:
        log.info("connection ended: %s", exc)
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Pass a reset on as one: a host socket closed with SO_LINGER 0 sends RST, not FIN
    (our tunnel transports reset on abort)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _splice(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                  b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter) -> None:
    await asyncio.gather(_copy(a_reader, b_writer), _copy(b_reader, a_writer))
    await asyncio.gather(_close(a_writer), _close(b_writer))


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--socks {text}: expected HOST:PORT")
    return host.strip("[]"), int(port)


async def serve(proxy: Proxy, socks: tuple[str, int] | None, forwards: Sequence[Forward],
                stop: asyncio.Event) -> None:
    servers = []
    try:
        if socks is not None:
            servers.append(await asyncio.start_server(proxy.socks, socks[0], socks[1]))
            print(f"wgpy proxy: SOCKS5 on {socks[0]}:{socks[1]}", flush=True)
        for target in forwards:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                             target: Forward = target) -> None:
                await proxy.forward(r, w, target)
            servers.append(await asyncio.start_server(handle, target.bind, target.port))
            print(f"wgpy proxy: {target.bind}:{target.port} -> {target.host}:"
                  f"{target.host_port}", flush=True)
        await stop.wait()
    finally:
        for server in servers:
            server.close()


USAGE = """usage: wgpy proxy CONFIG [--socks HOST:PORT | --no-socks]
                  [-L [BIND:]PORT:HOST:HOSTPORT]...

A SOCKS5 proxy (default 127.0.0.1:1080) and port forwards into the WireGuard network that
the wg-quick file CONFIG describes (one [Peer]), as an ordinary user.
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wgpy proxy", usage=USAGE)
    parser.add_argument("config", type=Path)
    parser.add_argument("--socks", default="127.0.0.1:1080")
    parser.add_argument("--no-socks", action="store_true")
    parser.add_argument("-L", dest="forwards", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="wgpy proxy: %(message)s",
                        stream=sys.stderr)
    try:
        config = parse(args.config.read_text())
        socks = None if args.no_socks else _host_port(args.socks)
        forwards = [Forward(spec) for spec in args.forwards]
        proxy = Proxy(config)
    except (OSError, ValueError) as exc:
        print(f"wgpy proxy: {exc}", file=sys.stderr)
        return 1

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(proxy, socks, forwards, stop)

    try:
        asyncio.run(run())
    except OSError as exc:  # a port we cannot listen on
        print(f"wgpy proxy: {exc}", file=sys.stderr)
        return 1
    finally:
        proxy.close()
    return 0

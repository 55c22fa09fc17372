"""The Wireshark key log (WGPY_KEYLOG_FILE) decrypts a real capture.

wgpy in one network namespace, Debian's wireguard-go in another, a preshared key on both
sides. `dumpcap` captures the veth between them while a few pings cross the tunnel; then
`tshark -o wg.keylog_file:FILE` must show the inner ICMP echo requests and replies, and
without the key log it must show none (though the WireGuard transport data is there).
Run twice: wgpy starts the handshake (its key log holds the initiator's keys), and
wireguard-go does (wgpy's holds the responder's). Only wgpy's keys are ever given to tshark.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from compat.lab import Daemon, Lab, Namespace, b64, run
from wgpy.testing.lab import stop_process

pytestmark = pytest.mark.root

PORT = 51820
LINK = ("192.168.79.1/24", "192.168.79.2/24")
TUNNEL = ("10.79.0.1", "10.79.0.2")  # wgpy's, wireguard-go's inner address
PINGS = 3
CAPTURE_START_TIMEOUT = 10.0
CAPTURE_STOP_TIMEOUT = 10.0
CAPTURE_FLUSH_TIMEOUT = 10.0
PROBE_PORT = 9  # discard: nothing listens, the probe only has to be captured
TSHARK_TIMEOUT = 60.0


def require_wireshark() -> None:
    missing = [tool for tool in ("tshark", "dumpcap") if shutil.which(tool) is None]
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install tshark)"
        if os.environ.get("WGPY_REQUIRE_ROOT") == "1":
            pytest.fail(f"WGPY_REQUIRE_ROOT=1 but {message}", pytrace=False)
        pytest.skip(message)


def tshark(capture: Path, *options: str) -> list[tuple[str, str, str]]:
    """(inner source, inner destination, ICMP type) of each ICMP packet tshark can see."""
    result = run("tshark", "-r", str(capture), "-n", "-d", f"udp.port=={PORT},wg",
                 *options, "-Y", "icmp", "-T", "fields",
                 "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type", timeout=TSHARK_TIMEOUT)
    rows = []
    for line in result.stdout.splitlines():
        src, dst, kind = line.split("\t")
        # Decrypted, a packet has two IP layers: the outer (UDP) one first, the inner last.
        rows.append((src.split(",")[-1], dst.split(",")[-1], kind))
    return rows


def count(capture: Path, display_filter: str) -> int:
    """How many packets of the capture match (it may still be written: a packet cut short
    at its end makes tshark exit 2 after the others)."""
    result = run("tshark", "-r", str(capture), "-n", "-d", f"udp.port=={PORT},wg",
                 "-Y", display_filter, "-T", "fields", "-e", "frame.number",
                 check=False, timeout=TSHARK_TIMEOUT)
    return len(result.stdout.split())


def summary(capture: Path, *options: str) -> str:
    """tshark's one line per packet, for a failure message."""
    return run("tshark", "-r", str(capture), "-n", "-d", f"udp.port=={PORT},wg", *options,
               check=False, timeout=TSHARK_TIMEOUT).stdout


class Capture:
    """dumpcap on one interface of a namespace, stopped by its pid (SIGINT: it then
    finishes the file). It counts as started once a probe datagram from the other end of
    the link (`probe`: namespace, destination address) is in the file: "Capturing on" on
    its standard error comes before the kernel hands it packets."""

    def __init__(self, d: Daemon, iface: str, path: Path, probe: tuple[Namespace, str]
                 ) -> None:
        self.path = path
        self.err = path.with_suffix(".err")
        with open(self.err, "w") as err:
            self.proc = d.ns.popen("dumpcap", "-q", "-i", iface, "-f", "udp", "-w", str(path),
                                   stdout=subprocess.DEVNULL, stderr=err,
                                   stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + CAPTURE_START_TIMEOUT
        sock = probe[0].socket()
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                sock.sendto(b"probe", (probe[1], PROBE_PORT))
                if self.path.exists() and count(path, f"udp.dstport == {PROBE_PORT}"):
                    return
                time.sleep(0.25)
        finally:
            sock.close()
        self.stop()
        raise RuntimeError(f"dumpcap did not start: {self.err.read_text(errors='replace')}")

    def wait_for(self, transport: int) -> None:
        """Until `transport` data messages are in the file, for at most
        CAPTURE_FLUSH_TIMEOUT: libpcap hands packets over by blocks, filled or timed
        out, and dumpcap stopped at once would lose the last ones."""
        deadline = time.monotonic() + CAPTURE_FLUSH_TIMEOUT
        while time.monotonic() < deadline and count(self.path, "wg.type == 4") < transport:
            time.sleep(0.25)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT, CAPTURE_STOP_TIMEOUT)  # dumpcap ends its file


@pytest.mark.parametrize("initiator", ["wgpy", "wireguard-go"])
def test_tshark_decrypts_the_tunnel_with_the_key_log(initiator: str) -> None:
    require_wireshark()
    with Lab() as lab:
        a, b = lab.namespace("ka"), lab.namespace("kb")
        va, _ = lab.link(a, b, *LINK)
        keys = lab.tmp / "wgpy.keys"
        wgpy = lab.daemon(a, "wgpy", env={"WGPY_KEYLOG_FILE": str(keys)})
        go = lab.daemon(b, "wireguard-go")
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and keys.read_bytes() == b""
        psk = lab.tmp / "psk"
        psk.write_text(b64(os.urandom(32)) + "\n")
        psk.chmod(0o600)
        for d, other, side in ((wgpy, go, 0), (go, wgpy, 1)):
            lab.configure(d, f"{TUNNEL[side]}/24", PORT)
            # Only the initiator knows the other's endpoint: the responder learns it.
            knows = d.impl == initiator
            endpoint = f"{LINK[1 - side].split('/')[0]}:{PORT}" if knows else None
            lab.peer(d, other, f"{TUNNEL[1 - side]}/32", endpoint, "preshared-key", str(psk))

        capture = Capture(wgpy, va, lab.tmp / "wg.pcapng", (b, LINK[0].split("/")[0]))
        try:
            pinger, target = (wgpy, TUNNEL[1]) if initiator == "wgpy" else (go, TUNNEL[0])
            ping = pinger.ns.run("ping", "-c", str(PINGS), "-i", "0.2", "-W", "2", target,
                                 check=False, timeout=60)
            capture.wait_for(2 * PINGS)
        finally:
            capture.stop()
        assert ping.returncode == 0, ping.stdout + ping.stderr + wgpy.log_tail()

        lines = keys.read_text().splitlines()
        assert lines and len(lines) % 4 == 0, lines
        assert [line.split(" = ")[0] for line in lines[:4]] == [
            "LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY",
            "LOCAL_EPHEMERAL_PRIVATE_KEY", "PRESHARED_KEY"]
        assert lines[0] == f"LOCAL_STATIC_PRIVATE_KEY = {b64(wgpy.private_key)}"
        assert lines[3] == f"PRESHARED_KEY = {psk.read_text().strip()}"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600
        log = wgpy.log.read_text(errors="replace")
        assert f"Writing the key log {keys}" in log
        assert all(line.split(" = ")[1] not in log for line in lines)  # no key in the log

        decrypting = ("-o", f"wg.keylog_file:{keys}")
        why = summary(capture.path, *decrypting) + "\n".join(lines)
        assert count(capture.path, "wg.type == 4") >= 2 * PINGS, why  # the tunnel is in it
        assert tshark(capture.path) == []  # without the key log: nothing inside it
        seen = tshark(capture.path, *decrypting)
        src, dst = (TUNNEL[0], TUNNEL[1]) if initiator == "wgpy" else (TUNNEL[1], TUNNEL[0])
        requests = [row for row in seen if row == (src, dst, "8")]
        replies = [row for row in seen if row == (dst, src, "0")]
        assert len(requests) == PINGS and len(replies) == PINGS, f"{seen}\n{why}"

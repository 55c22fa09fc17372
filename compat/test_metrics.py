"""WGPY_METRICS_ADDRESS on the real daemon: two wgpy interfaces in namespaces of their own,
a ping through the tunnel, then `/metrics` scraped from inside each namespace (IPv4 and
`[::1]`), read with prometheus_client's parser and checked against `wg show dump`; the
daemonized start (the launcher binds, the background copy serves); a bad address fails
the command with one line on stderr and exit status 1, leaving no interface behind."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from compat.lab import WG_RUN_DIR, WGPY, Lab, Namespace, b64
from compat.test_daemon import Background, clean_env, link_exists

pytestmark = pytest.mark.root

PORT = 9586
SCRAPE = ("import sys, urllib.request\n"
          "with urllib.request.urlopen(sys.argv[1], timeout=5) as r:\n"
          "    sys.stdout.write(r.headers['Content-Type'] + '\\n' + r.read().decode())\n")
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(ns: Namespace, url: str) -> tuple[str, Series]:
    """GET `url` from inside `ns`: the Content-Type and the parsed samples."""
    done = ns.run(sys.executable, "-c", SCRAPE, url)
    content_type, _, text = done.stdout.partition("\n")
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            series[(s.name, frozenset(s.labels.items()))] = s.value
    return content_type, series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def dump(ns: Namespace, ifname: str) -> dict[str, list[str]]:
    """`wg show IFNAME dump`'s peer lines by public key."""
    lines = ns.run("wg", "show", ifname, "dump").stdout.splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t") for line in lines}


def test_the_daemon_serves_metrics() -> None:
    with Lab() as lab:
        ns1, ns2 = lab.namespace("ma"), lab.namespace("mb")
        lab.link(ns1, ns2, "192.168.93.1/24", "192.168.93.2/24")
        a = lab.daemon(ns1, "wgpy", env={"WGPY_METRICS_ADDRESS": f"127.0.0.1:{PORT}"})
        b = lab.daemon(ns2, "wgpy", env={"WGPY_METRICS_ADDRESS": f"[::1]:{PORT}"})
        lab.configure(a, "10.93.0.1/24", 51820)
        lab.configure(b, "10.93.0.2/24", 51820)
        lab.peer(a, b, "10.93.0.2/32", "192.168.93.2:51820")
        lab.peer(b, a, "10.93.0.1/32")
        ping = ns1.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.93.0.2", check=False)
        assert ping.returncode == 0, ping.stdout + a.log_tail()

        for d, url in ((a, f"http://127.0.0.1:{PORT}/metrics"),
                       (b, f"http://[::1]:{PORT}/metrics")):
            other = b if d is a else a
            key = dict(device=d.ifname, public_key=b64(other.public_key))
            for _ in range(20):  # between two equal dumps: the counters did not move
                before = dump(d.ns, d.ifname)
                content_type, series = scrape(d.ns, url)
                if dump(d.ns, d.ifname) == before:
                    break
            assert content_type == "text/plain; version=0.0.4; charset=utf-8"
            (peer,) = before.values()
            # dump: key, psk, endpoint, allowed ips, handshake, rx, tx, keepalive
            rx, tx, handshake = int(peer[5]), int(peer[6]), int(peer[4])
            assert rx > 0 and tx > 0 and handshake > 1_600_000_000
            assert value(series, "wireguard_peer_receive_bytes_total", **key) == rx
            assert value(series, "wireguard_peer_transmit_bytes_total", **key) == tx
            assert value(series, "wireguard_peer_last_handshake_seconds", **key) == handshake
            assert value(series, "wireguard_device_info", device=d.ifname,
                         public_key=b64(d.public_key)) == 1
            sent = "initiation" if d is a else "response"
            assert value(series, "wgpy_handshakes_sent_total", device=d.ifname, type=sent) >= 1
            assert value(series, "wgpy_dropped_packets_total", device=d.ifname,
                         reason="invalid_message") == 0
        assert f"Metrics at http://127.0.0.1:{PORT}/metrics" in a.log.read_text()


def test_the_daemonized_copy_serves_the_launchers_socket() -> None:
    with Lab() as lab, Background() as bg:
        ns = lab.namespace("md")
        ifname = lab.ifname()
        bg.own(ns, ifname)
        done = subprocess.run(["ip", "netns", "exec", ns.name, WGPY, ifname],
                              capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
                              env=clean_env(WGPY_METRICS_ADDRESS=f"127.0.0.1:{PORT}"))
        assert done.returncode == 0, done.stdout + done.stderr
        content_type, series = scrape(ns, f"http://127.0.0.1:{PORT}/metrics")
        assert value(series, "wireguard_device_info", device=ifname, public_key="") == 1
        assert value(series, "wgpy_queue_length", device=ifname, queue="handshake") == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "[::1]:99999", "no-such-host.invalid:9586",
                                     "in use"])
def test_a_bad_address_fails_the_command(address: str) -> None:
    with Lab() as lab, Background() as bg:
        ns = lab.namespace("mx")
        ifname = lab.ifname()
        bg.own(ns, ifname)
        holder = None
        if address == "in use":  # a listener of our own on the port, in that namespace
            holder = ns.popen(sys.executable, "-c",
                              "import socket, time\n"
                              f"s = socket.create_server(('127.0.0.1', {PORT}))\n"
                              "print('ready', flush=True)\ntime.sleep(30)\n",
                              stdout=subprocess.PIPE)
            assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
            address = f"127.0.0.1:{PORT}"
        try:
            done = subprocess.run(["ip", "netns", "exec", ns.name, WGPY, ifname],
                                  capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL,
                                  env=clean_env(WGPY_METRICS_ADDRESS=address))
        finally:
            if holder is not None:
                holder.kill()
                holder.wait(5)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith(f"wgpy: WGPY_METRICS_ADDRESS={address!r}")
        assert done.stderr.count("\n") == 1 and done.stdout == ""
        assert not link_exists(ns, ifname) and not (WG_RUN_DIR / f"{ifname}.sock").exists()


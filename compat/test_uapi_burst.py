"""A burst of UAPI clients against the real daemon (issue 18): while 1,000 clients that
connected at once hold their connections, the stock `wg show` answers, within a second, as
it does with wireguard-go. Root (a namespace and a TUN); the in-process version of the test
is tests/test_uapi_abuse.py."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from compat.lab import Lab

pytestmark = pytest.mark.root

HOLD = """
import socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
clients, refused = [], 0
for _ in range(count):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)  # non-blocking underneath: a full listen queue is EAGAIN at once
    try:
        sock.connect(path)
        clients.append(sock)
    except OSError:
        refused += 1
        sock.close()
print(refused, flush=True)
sys.stdin.read()  # hold them until the test closes our input
"""


@pytest.mark.parametrize("impl", ["wgpy", "wireguard-go"])
def test_wg_show_answers_while_a_thousand_clients_hold_connections(impl: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if min(soft, hard) < 1200 and hard != resource.RLIM_INFINITY:
        pytest.skip(f"needs 1,200 file descriptors, the hard limit is {hard}")
    with Lab() as lab:
        daemon = lab.daemon(lab.namespace("ub"), impl, env={"LOG_LEVEL": "error"})
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(daemon.socket), "1000"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            refused = int(holder.stdout.readline() or -1)
            started = time.monotonic()
            show = daemon.ns.run("wg", "show", daemon.ifname, check=False, timeout=10)
            took = time.monotonic() - started
            assert refused == 0
            assert show.returncode == 0 and f"interface: {daemon.ifname}" in show.stdout, \
                show.stderr
            assert took < 1.0, took
            assert holder.poll() is None  # still holding all of them
        finally:
            holder.kill()
            holder.wait(10)

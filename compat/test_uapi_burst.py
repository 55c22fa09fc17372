"""A burst of UAPI clients against the real daemon (issue 18): while 1,000 clients that
connected at once hold their connections, the stock `wg show` answers, within a second, as
it does with wireguard-go. Root (a namespace and a TUN); the in-process version of the test
is tests/test_uapi_abuse.py."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compat.lab import Lab

pytestmark = pytest.mark.root

BURST = Path(__file__).resolve().parent / "uapi_burst.py"


@pytest.mark.parametrize("impl", ["wgpy", "wireguard-go"])
def test_wg_show_answers_while_a_thousand_clients_hold_connections(impl: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if min(soft, hard) < 1200 and hard != resource.RLIM_INFINITY:
        pytest.skip(f"needs 1,200 file descriptors, the hard limit is {hard}")
    with Lab() as lab:
        daemon = lab.daemon(lab.namespace("ub"), impl, env={"LOG_LEVEL": "error"})
        holder = subprocess.Popen([sys.executable, str(BURST), str(daemon.socket), "1000",
                                   "--hold"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            refused = json.loads(holder.stdout.readline() or '{"refused": -1}')["refused"]
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

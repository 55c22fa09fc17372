"""A burst of UAPI clients, as a new user makes one: COUNT clients connect to the socket at
once, each with a 5 s timeout (a non-blocking connect underneath, as Go's net.Dial: a full
listen queue answers EAGAIN at once, it does not wait). Run by tests/test_uapi_abuse.py and
compat/test_uapi_burst.py in a process of its own, so that it competes with the daemon's
accept thread as another program would.

    python compat/uapi_burst.py SOCKET COUNT [--hold]

It prints one JSON line: how many were refused; then, unless --hold, how long a fresh
`get=1` took after the burst, the end of its reply, and how many of the first and last five
clients were answered too. With --hold it keeps the connections open until its standard
input closes (the caller runs `wg show` meanwhile).
"""

from __future__ import annotations

import json
import socket
import sys
import time

CONNECT_TIMEOUT = 5.0


def get(sock: socket.socket) -> bytes:
    """One `get=1` on `sock`: the reply up to its blank line (or what came before EOF)."""
    sock.sendall(b"get=1\n\n")
    reply = b""
    while not reply.endswith(b"\n\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def main(path: str, count: int, hold: bool) -> None:
    clients, refused = [], 0
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            refused += 1
            sock.close()
            continue
        clients.append(sock)
    if hold:
        print(json.dumps({"refused": refused}), flush=True)
        sys.stdin.read()
        return
    started = time.monotonic()
    fresh = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fresh.settimeout(CONNECT_TIMEOUT)
    try:
        fresh.connect(path)
        reply = get(fresh)
    except OSError as exc:
        reply = repr(exc).encode()
    took = time.monotonic() - started
    held = 0
    for sock in clients[:5] + clients[-5:]:
        try:
            held += get(sock).endswith(b"errno=0\n\n")
        except OSError:
            pass
    print(json.dumps({"refused": refused, "took": took, "held": held,
                      "reply": reply[-40:].decode(errors="replace")}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--hold" in sys.argv[3:])

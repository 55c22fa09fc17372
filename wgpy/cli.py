"""The wireguard-go-compatible command line: `wgpy [-f|--foreground] IFNAME`, `--version`.

The daemon (TUN, UDP, UAPI socket) is not built yet; until it is, `wgpy IFNAME` says so
and exits 1 rather than pretending to run.
"""

from __future__ import annotations

import sys

from wgpy import __version__

USAGE = "Usage: wgpy [-f/--foreground] INTERFACE-NAME\n       wgpy --version\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        print(f"wgpy v{__version__}\n\nWireGuard in Python, a drop-in for wireguard-go.")
        return 0
    if not args or args[0] in ("-h", "--help") or len(args) > 2:
        sys.stderr.write(USAGE)
        return 0  # like wireguard-go: a usage error prints the usage and exits 0
    sys.stderr.write("wgpy: the daemon (TUN, UDP and UAPI socket) is not implemented yet; "
                     "only the protocol core is.\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Today's wireguard-go, the anchor of the benchmarks and an interop peer.

Debian's `wireguard-go` (0.0.20220316) predates the offloads wireguard-go gained in 2023
(TUN TSO/GRO through the virtio-net header, UDP GSO/GRO). `ensure_upstream()` gives the
path of upstream wireguard-go f333402 (v0.0.20250522) as the command `wireguard-go-upstream`
on PATH: the one already there, or one built from the vendored source by
`../shared/wireguard-go/build.sh` (about 20 s, Go from PyPI; .ci/run builds it first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["UPSTREAM", "ensure_upstream", "upstream_available"]

UPSTREAM = "wireguard-go-upstream"
ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT.parent / "shared" / "wireguard-go" / "build.sh"
INSTALL_TO = Path("/usr/local/bin") / UPSTREAM


def upstream_available() -> bool:
    return shutil.which(UPSTREAM) is not None


def ensure_upstream() -> str:
    """The path of `wireguard-go-upstream`, built first when it is missing (RuntimeError
    when it cannot be)."""
    found = shutil.which(UPSTREAM)
    if found:
        return found
    if not BUILD_SCRIPT.is_file():
        raise RuntimeError(f"{UPSTREAM} is not on PATH and {BUILD_SCRIPT} is missing")
    result = subprocess.run(["bash", str(BUILD_SCRIPT), str(INSTALL_TO)], capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0 or not os.access(INSTALL_TO, os.X_OK):
        raise RuntimeError(f"building {UPSTREAM} failed:\n{result.stdout[-2000:]}"
                           f"{result.stderr[-2000:]}")
    return str(INSTALL_TO)

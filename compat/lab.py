"""The lab of the compatibility tests is the packaged one, `wgpy.testing.lab` (namespaces,
veth links, wgpy and wireguard-go daemons, teardown by pid): this module re-exports it under
its old name, so that the compat tests run the same code users of the pytest plugin get.
"""

from wgpy.testing.lab import (  # noqa: F401
    WG_RUN_DIR,
    WGPY,
    Daemon,
    Lab,
    LabTunnel,
    Namespace,
    NamespacePair,
    b64,
    endpoint,
    run,
)

__all__ = ["Lab", "Namespace", "NamespacePair", "Daemon", "LabTunnel", "run", "b64",
           "endpoint", "WGPY", "WG_RUN_DIR"]

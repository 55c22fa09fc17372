"""The lab of `wgpy.testing` (namespaces, veth links, wgpy and wireguard-go daemons, teardown
by pid). It runs processes and opens sockets, so it lives with the other I/O code, in
`wgpy.device.lab`; this module is its name for tests."""

from wgpy.device.lab import *  # noqa: F401,F403
from wgpy.device.lab import __all__  # noqa: F401

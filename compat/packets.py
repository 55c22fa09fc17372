"""The compat tests' IPv4 / ICMP echo packets: `wgpy.packets`, which `wgpy.Tunnel` uses."""

from wgpy.packets import *  # noqa: F401,F403
from wgpy.packets import __all__  # noqa: F401

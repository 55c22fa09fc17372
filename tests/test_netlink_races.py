"""The netlink thread survives an interface that leaves between two queries (moved to
another namespace or deleted meanwhile: ENODEV). CI once lost a daemon this way: `ip link
set IF netns NS` right after start made `link get` fail, and the thread's exception
stopped the device."""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from wgpy.device import netlink


class VanishingIPRoute:
    """Finds the interface, then answers ENODEV, as when it moves away in between."""

    def __enter__(self) -> VanishingIPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def link_lookup(self, **kw: Any) -> list[int]:
        return [7]

    def link(self, *args: Any, **kw: Any) -> Any:
        raise NetlinkError(19, "No such device")

    def get_routes(self, **kw: Any) -> Any:
        raise NetlinkError(19, "No such device")


def test_queries_about_a_vanishing_interface_answer_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "IPRoute", VanishingIPRoute)
    assert netlink.link_state("wgvanish") is None
    assert netlink.routes_into(7) == []

"""The netlink thread survives an interface that leaves between two queries (moved to
another namespace or deleted meanwhile: ENODEV). CI once lost a daemon this way: `ip link
set IF netns NS` right after start made `link get` fail, and the thread's exception
stopped the device.

pyroute2 is scripted (tests/test_link.py's FakeIPRoute): its requests raise pyroute2's own
NetlinkError(ENODEV), which wgpy.link.rtnetlink must turn into "gone"."""

from __future__ import annotations

import errno

import pytest

from test_link import A, INDEX, NAME, ROUTE_A, FakeDevice, Script, link_msg, run, script
from wgpy.link import netlink

__all__ = ["script"]  # the fixture, imported for pytest

NetlinkError = pytest.importorskip("pyroute2.netlink.exceptions").NetlinkError


def enodev() -> Exception:
    return NetlinkError(errno.ENODEV)  # type: ignore[no-any-return]


def test_queries_about_a_vanishing_interface_answer_gone(script: Script) -> None:
    script.links = [enodev()]
    script.dumps = [enodev()]
    assert netlink.link_state(NAME) is None
    assert netlink.routes_into(INDEX) == []
    assert script.links == [] and script.dumps == []


def test_the_thread_survives_an_interface_that_leaves_at_start(script: Script) -> None:
    """The link is there, but its route dump already fails (moved away meanwhile): the
    interface left, nothing is applied; the fake TUN cannot name its namespace, so the
    thread takes the link as up and ends, without an exception."""
    script.links = [link_msg(1420)]
    script.dumps = [enodev()]
    device = FakeDevice()
    run(device, script)
    assert device.mtus == [] and device.routes == []
    assert device.ups == [True]


def test_the_thread_survives_an_interface_that_leaves_after_an_event(
        script: Script) -> None:
    """Start: the state is read. Then an RTM_NEWLINK (MTU 1380, down) arrives and is
    applied, and reading the state back finds the interface gone."""
    script.links = [link_msg(1420), enodev()]
    script.dumps = [[A], []]
    script.events = [[link_msg(1380, up=False)]]
    device = FakeDevice()
    run(device, script)
    assert device.mtus == [1420, 1380]
    assert device.ups == [True, False, True]
    assert device.routes == [[ROUTE_A]]
    assert script.links == [] and script.dumps == []
    assert not [line for line in device.lines if line[0] == "error"]

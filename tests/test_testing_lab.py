"""wgpy.testing without root: the pieces of the lab and the plugin that need no namespace
(dump parsing, generated addresses and keys, the wgpy command, the skip policy). The lab
and the fixtures themselves run as root in compat/ (test_plugin.py, test_netns.py)."""

from __future__ import annotations

import base64
import ipaddress
import sys

import pytest

from wgpy import crypto
from wgpy.testing import InterfaceDump, KeyPair, Lab, endpoint, lab, wgpy_command
from wgpy.testing.plugin import require

DUMP = ("cHJpdmF0ZQ==\tcHVibGlj\t51820\toff\n"
        "cGVlcjE=\t(none)\t192.0.2.2:51820\t10.0.0.2/32,fd00::2/128\t1700000000\t92\t180\t25\n"
        "cGVlcjI=\t(none)\t(none)\t(none)\t0\t0\t0\toff\n")


def test_dump_is_parsed() -> None:
    dump = InterfaceDump.parse(DUMP)
    assert (dump.private_key, dump.public_key, dump.listen_port, dump.fwmark) == \
        ("cHJpdmF0ZQ==", "cHVibGlj", 51820, "off")
    assert [p.public_key for p in dump.peers] == ["cGVlcjE=", "cGVlcjI="]
    peer = dump.peer("cGVlcjE=")
    assert (peer.endpoint, peer.allowed_ips, peer.latest_handshake, peer.rx_bytes,
            peer.tx_bytes, peer.persistent_keepalive) == \
        ("192.0.2.2:51820", "10.0.0.2/32,fd00::2/128", 1700000000, 92, 180, "25")
    with pytest.raises(KeyError):
        dump.peer("bm9uZQ==")


@pytest.mark.parametrize("text", ["", "interface: wg0\n", "a\tb\tc\td\nshort\tline\n"])
def test_dump_rejects_other_output(text: str) -> None:
    with pytest.raises(ValueError):
        InterfaceDump.parse(text)


def test_endpoint_brackets_ipv6_and_drops_the_prefix() -> None:
    assert endpoint("10.0.1.2/24", 51820) == "10.0.1.2:51820"
    assert endpoint("fd00::2/64", 7) == "[fd00::2]:7"


def test_keys_are_fresh_pairs() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert a.private != b.private and a.public == crypto.public_key(a.private)
    assert base64.b64decode(a.public_b64) == a.public and len(a.private) == 32
    assert base64.b64decode(a.private_b64) == a.private


def test_lab_addresses_are_distinct_subnets_and_its_directory_goes() -> None:
    with Lab() as one:
        nets = [one.tunnel_subnet] + [one.subnet() for _ in range(3)]
        assert one.tmp.is_dir()
    assert not one.tmp.exists()
    assert len({n.v4 for n in nets}) == len({n.v6 for n in nets}) == 4
    for n in nets:
        assert n.v4.subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))
        assert n.v6.subnet_of(ipaddress.IPv6Network("fd00::/8")) and n.v6.prefixlen == 64
    v4, v6 = nets[0].host(2)
    assert ipaddress.ip_interface(v4).network == nets[0].v4
    assert ipaddress.ip_interface(v6).network == nets[0].v6
    with Lab() as other:  # another lab: another random IPv6 prefix
        assert other.tunnel_subnet.v6 != nets[0].v6
        assert other.tag != one.tag


def test_wgpy_command_is_the_console_script_else_python_m(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert wgpy_command() == [lab.WGPY]  # installed with the package, next to this Python
    monkeypatch.setattr(lab, "WGPY", "/nonexistent/wgpy")
    assert wgpy_command() == [sys.executable, "-m", "wgpy"]


def test_require_skips_or_fails_under_wgpy_require_root(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WGPY_REQUIRE_ROOT", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require("wgpy-no-such-tool")
    monkeypatch.setenv("WGPY_REQUIRE_ROOT", "1")
    with pytest.raises(pytest.fail.Exception, match="WGPY_REQUIRE_ROOT=1 but needs"):
        require("wgpy-no-such-tool")


def test_sysctl_hands_the_value_to_no_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value is the input of `tee`, the path its argument (before, both were pasted into
    an `sh -c` string, so a quote in the value ran as shell)."""
    calls: list[tuple[tuple[str, ...], object]] = []
    monkeypatch.setattr(lab, "run", lambda *argv, **kw: calls.append((argv, kw.get("input"))))
    lab.Namespace("wgns0").sysctl("net.ipv4.ip_forward", "1' ; touch /tmp/owned '")
    assert calls == [(("ip", "netns", "exec", "wgns0", "tee", "/proc/sys/net/ipv4/ip_forward"),
                      "1' ; touch /tmp/owned '")]
    for bad in ("net/../../etc/passwd", "", "net..ipv4"):
        with pytest.raises(ValueError):
            lab.Namespace("wgns0").sysctl(bad, 1)

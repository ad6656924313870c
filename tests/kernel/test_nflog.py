"""The NFLOG reader against the real kernel, inside a scratch namespace.

The rules here are written by hand (the compiled drop path has its own tests in
test_drop_events.py): this checks the netlink side alone. Binding, both
families, prefixes, a second socket refused while the first holds the group, a
new socket binding it after the first closed (an agent restart), and a
flood logged through `hashlimit` giving a bounded number of messages.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import time

import pytest

from agent.core.errors import DataplaneError
from agent.core.packets import decode_packet
from agent.dataplane.nflog import NflogReader
from agent.sandbox.setns import inside
from tests.kernel import icmp
from tests.kernel.kit import assert_not_host

pytestmark = pytest.mark.kernel
GROUP = 41


def _rules(*lines: str) -> None:
    assert_not_host()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for line in lines:
        subprocess.run(shlex.split(line), check=True)


def _read_all(reader: NflogReader, want: int, timeout: float = 3.0) -> list:  # type: ignore[type-arg]
    out: list = []  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        out.extend(reader.read(0.2))
    return out


def _udp(host: str, port: int, family: socket.AddressFamily, n: int = 1) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        for _ in range(n):
            s.sendto(b"x", (host, port))


def test_both_families_and_protocols(agent_ns: str) -> None:
    with inside(agent_ns):
        _rules(
            f"iptables -A OUTPUT -p udp --dport 9 -j NFLOG --nflog-group {GROUP} --nflog-prefix 'npa:DE x/a'",
            f"ip6tables -A OUTPUT -p udp --dport 9 -j NFLOG --nflog-group {GROUP} --nflog-prefix 'npa:DI y/b'",
            f"iptables -A OUTPUT -p icmp -j NFLOG --nflog-group {GROUP} --nflog-prefix 'npa:AE x/a'",
            f"ip6tables -A OUTPUT -p tcp --dport 9 -j NFLOG --nflog-group {GROUP} --nflog-prefix 'npa:DE z/c'",
        )
        with NflogReader(GROUP) as reader:
            _udp("127.0.0.1", 9, socket.AF_INET)
            _udp("::1", 9, socket.AF_INET6)
            icmp.echo("127.0.0.1")
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                with contextlib.suppress(OSError):
                    s.connect(("::1", 9))
            got = _read_all(reader, 4)
    seen: dict[str, tuple[int, str, int | None, str]] = {}
    for p in got:
        info = decode_packet(p.family, p.payload)
        assert info is not None
        seen.setdefault(p.prefix, (p.family, info.protocol, info.dport, info.dst))
    assert seen == {
        "npa:DE x/a": (4, "UDP", 9, "127.0.0.1"),
        "npa:DI y/b": (6, "UDP", 9, "::1"),
        "npa:AE x/a": (4, "ICMP", None, "127.0.0.1"),
        "npa:DE z/c": (6, "TCP", 9, "::1"),
    }
    assert reader.lost == 0


def test_group_is_exclusive_and_rebinds_after_close(agent_ns: str) -> None:
    with inside(agent_ns):
        _rules(
            f"iptables -A OUTPUT -p udp -j NFLOG --nflog-group {GROUP} --nflog-prefix 'npa:DE x/a'"
        )
        first = NflogReader(GROUP).open()
        with pytest.raises(DataplaneError, match="already bound"):
            NflogReader(GROUP).open()
        first.close()  # the agent exits: the kernel frees the group
        with NflogReader(GROUP) as second:
            _udp("127.0.0.1", 9, socket.AF_INET)
            assert len(_read_all(second, 1)) == 1


def test_flood_through_hashlimit_is_bounded(agent_ns: str) -> None:
    with inside(agent_ns):
        _rules(
            "iptables -A OUTPUT -p udp --dport 9 -m hashlimit --hashlimit-upto 10/second "
            "--hashlimit-burst 5 --hashlimit-mode srcip,dstip --hashlimit-name npa-t "
            f"-j NFLOG --nflog-group {GROUP} --nflog-prefix 'npa:DE x/a'",
        )
        with NflogReader(GROUP) as reader:
            started = time.monotonic()
            _udp("127.0.0.1", 9, socket.AF_INET, n=5000)
            elapsed = time.monotonic() - started
            got = _read_all(reader, 10_000, timeout=1.0)
        # burst 5, then 10 a second for however long the flood took
        assert 5 <= len(got) <= 5 + 10 * (elapsed + 1.5)
        assert reader.lost == 0


def test_sequence_gaps_and_undecodable_messages_count_as_lost() -> None:
    import struct

    from agent.dataplane.nflog import NFULNL_MSG_PACKET, nfulnl_packet_msg

    def message(seq: int) -> bytes:
        msg = nfulnl_packet_msg()
        msg["nfgen_family"], msg["version"], msg["res_id"] = 2, 0, GROUP
        msg["attrs"] = [
            ("NFULA_PREFIX", "npa:DI"),
            ("NFULA_SEQ", seq),
            ("NFULA_PAYLOAD", b"\x45" + b"\0" * 19),
        ]
        msg["header"]["type"] = NFULNL_MSG_PACKET
        msg.encode()
        return bytes(msg.data)

    reader = NflogReader(GROUP)
    got = reader._parse(message(0) + message(1) + message(5))
    assert [p.prefix for p in got] == ["npa:DI"] * 3 and reader.lost == 3
    broken = struct.pack("=IHHII", 24, NFULNL_MSG_PACKET, 0, 0, 0) + b"\x02\0\0\x29\xff\xff\0\0"
    assert reader._parse(broken) == [] and reader.lost == 4

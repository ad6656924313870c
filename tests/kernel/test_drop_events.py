"""Every drop path logs an event naming pods and policies; a flood is bounded; rebinding works.

node-0 with pods x/a (ingress denied), x/b (egress denied) and y/c (open).
The compiled ruleset carries the drop-logging extension (NFLOG + hashlimit at
the head of both drop chains); the agent's reader binds the group inside the
node namespace and the core names the events, as in the running agent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from agent.core.compile import CompileOptions
from agent.core.dropevents import DropEvent, EventNamer
from agent.core.droplogging import DropLogging
from agent.core.model import ClusterState, Family
from agent.core.naming import DROP_INGRESS
from agent.dataplane.nflog import NflogReader
from agent.sandbox.setns import inside
from agent.sandbox.sockets import Probe, echo_ok, open_tcp, probe_many
from tests.builders import make_policy, sel
from tests.kernel import icmp
from tests.kernel.harness import KernelNode, kernel_node
from tests.kernel.kit import saved

pytestmark = pytest.mark.kernel
GROUP = 77
DENY_IN = make_policy("x/deny-in", {"podSelector": sel("pod=a"), "policyTypes": ["Ingress"]})
DENY_OUT = make_policy("x/deny-out", {"podSelector": sel("pod=b"), "policyTypes": ["Egress"]})


# python-iptables cannot program hashlimit (the kernel refuses its rules with EINVAL)
# and crashes on an NFLOG prefix after a match: the agent logs no drops with that
# backend (agent.node.engine).
@pytest.fixture(params=["nft", "legacy"])
def node(request: pytest.FixtureRequest) -> Iterator[tuple[KernelNode, ClusterState]]:
    with kernel_node(request.param, "x", "y") as kn:
        kn.options = CompileOptions(extensions=(DropLogging(GROUP, rate=50, burst=10),))
        kn.add_pod("x/a", "pod=a")
        kn.add_pod("x/b", "pod=b")
        kn.add_pod("y/c", "pod=c")
        state = kn.state([DENY_IN, DENY_OUT])
        kn.apply(state)
        with kn.agent() as applier:
            assert not applier.tampered()
            mode = "legacy" if request.param == "legacy" else "nft"
            ruleset = kn.compile(state)
            for family in (Family.V4, Family.V6):
                chain = next(c for c in ruleset.tables[family].chains if c.name == DROP_INGRESS)
                # iptables-save gives back the logging rule exactly as rendered
                assert chain.rules[0].render(DROP_INGRESS) in saved(mode, family, "filter")
        yield kn, state


def _events(kn: KernelNode, state: ClusterState, reader: NflogReader, want: int) -> set[tuple]:  # type: ignore[type-arg]
    namer = EventNamer(state, "node-0")
    out: list[DropEvent] = []
    deadline = time.monotonic() + 3.0
    while len({e.key for e in out}) < want and time.monotonic() < deadline:
        for p in reader.read(0.2):
            e = namer.event(prefix=p.prefix, family=p.family, payload=p.payload, time=p.time)
            if e is not None:
                out.append(e)
    return {e.key[1:] for e in out}


def test_every_drop_path_names_pod_peer_and_policy(node: tuple[KernelNode, ClusterState]) -> None:
    kn, state = node
    a, b, c = (kn.pod_sandboxes[k] for k in ("x/a", "x/b", "y/c"))
    with kn.agent(), NflogReader(GROUP) as reader:
        got = probe_many(
            [
                Probe(c.netns, a.ipv4, 80, "TCP"),
                Probe(c.netns, a.ipv6, 81, "UDP"),
                Probe(b.netns, c.ipv6, 80, "TCP"),
                Probe(b.netns, c.ipv4, 81, "UDP"),
                Probe(c.netns, b.ipv4, 80, "TCP"),  # allowed: x/b is only egress-isolated
            ],
            timeout=0.4,
        )
        assert got == [False, False, False, False, True]
        with inside(c.netns):
            assert not icmp.echo(a.ipv6)
        with inside(b.netns):
            assert not icmp.echo(c.ipv4)
        events = _events(kn, state, reader, 6)
        assert reader.lost == 0
    assert events == {
        ("drop", "ingress", "x/a", "y/c", "TCP", 80, ("x/deny-in",)),
        ("drop", "ingress", "x/a", "y/c", "UDP", 81, ("x/deny-in",)),
        ("drop", "ingress", "x/a", "y/c", "ICMPv6", None, ("x/deny-in",)),
        ("drop", "egress", "x/b", "y/c", "TCP", 80, ("x/deny-out",)),
        ("drop", "egress", "x/b", "y/c", "UDP", 81, ("x/deny-out",)),
        ("drop", "egress", "x/b", "y/c", "ICMP", None, ("x/deny-out",)),
    }


def test_flood_is_bounded_and_allowed_traffic_flows(node: tuple[KernelNode, ClusterState]) -> None:
    kn, _ = node
    a, b, c = (kn.pod_sandboxes[k] for k in ("x/a", "x/b", "y/c"))
    sent = 20_000
    with kn.agent(), NflogReader(GROUP) as reader:
        conn = open_tcp(c.netns, b.ipv4, 80)  # allowed, and kept busy during the flood

        def flood() -> None:
            with inside(c.netns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(sent):
                    s.sendto(b"x" * 32, (a.ipv4, 81))

        started = time.monotonic()
        flooder = threading.Thread(target=flood)
        flooder.start()
        round_trips = 0
        while flooder.is_alive():
            assert echo_ok(conn, timeout=2.0), "allowed traffic lost during the flood"
            round_trips += 1
        flooder.join()
        elapsed = time.monotonic() - started
        conn.close()
        logged = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            logged += reader.read(0.2)
        assert reader.lost == 0
    assert round_trips > 0
    # burst 10, then 50 a second for this one pair, however many packets were dropped
    assert 10 <= len(logged) <= 10 + 50 * (elapsed + 1.5), (len(logged), elapsed)
    assert len(logged) < sent / 10


def test_restarted_reader_binds_again(node: tuple[KernelNode, ClusterState]) -> None:
    kn, state = node
    a, c = kn.pod_sandboxes["x/a"], kn.pod_sandboxes["y/c"]
    with kn.agent():
        first = NflogReader(GROUP).open()
        first.close()  # the agent exits; the rules stay
        with NflogReader(GROUP) as second:
            assert probe_many([Probe(c.netns, a.ipv4, 80, "TCP")], timeout=0.3) == [False]
            assert ("drop", "ingress", "x/a", "y/c", "TCP", 80, ("x/deny-in",)) in _events(
                kn, state, second, 1
            )

"""Audited policies in the kernel: what they would drop flows, and is logged as `audit`.

node-0 with x/a (ingress audited by x/trial-in: only y/c may come in, on 80),
x/b (egress audited by x/trial-out) and y/c; one enforced policy (x/deny-b-in)
isolates x/b's ingress, so an audited ingress policy on x/b changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from agent.core.auditlogging import AuditLogging
from agent.core.compile import CompileOptions
from agent.core.dropevents import EventNamer
from agent.core.droplogging import DropLogging
from agent.core.model import ClusterState, NetworkPolicy
from agent.dataplane.nflog import NflogReader
from agent.sandbox.sockets import Probe, probe_many
from tests.builders import make_policy, sel
from tests.kernel.harness import KernelNode, kernel_node

pytestmark = pytest.mark.kernel
GROUP = 78


def audited(key: str, spec: dict[str, Any]) -> NetworkPolicy:
    return replace(make_policy(key, spec), audit=True)


POLICIES = [
    audited(
        "x/trial-in",
        {
            "podSelector": sel("pod=a"),
            "ingress": [{"from": [{"namespaceSelector": sel("ns=y")}], "ports": [{"port": 80}]}],
        },
    ),
    audited("x/trial-out", {"podSelector": sel("pod=b"), "policyTypes": ["Egress"]}),
    audited("x/trial-b-in", {"podSelector": sel("pod=b"), "policyTypes": ["Ingress"]}),
    make_policy(
        "x/deny-b-in",
        {"podSelector": sel("pod=b"), "ingress": [{"from": [{"podSelector": sel("pod=a")}]}]},
    ),
]


@pytest.fixture(params=["nft", "legacy"])
def node(request: pytest.FixtureRequest) -> Iterator[tuple[KernelNode, ClusterState]]:
    with kernel_node(request.param, "x", "y") as kn:
        kn.options = CompileOptions(extensions=(DropLogging(GROUP), AuditLogging(GROUP)))
        kn.add_pod("x/a", "pod=a")
        kn.add_pod("x/b", "pod=b")
        kn.add_pod("y/c", "pod=c")
        state = kn.state(POLICIES)
        kn.apply(state)
        yield kn, state


def test_audited_traffic_flows_and_is_logged_as_audit(
    node: tuple[KernelNode, ClusterState],
) -> None:
    kn, state = node
    a, b, c = (kn.pod_sandboxes[k] for k in ("x/a", "x/b", "y/c"))
    probes = [
        Probe(c.netns, a.ipv4, 81, "TCP"),  # trial-in would drop (port 81): flows, audit
        Probe(b.netns, a.ipv6, 80, "UDP"),  # trial-in (x/b not in ns y) and trial-out: audit x2
        Probe(c.netns, a.ipv4, 80, "TCP"),  # trial-in allows: no event
        Probe(c.netns, b.ipv4, 80, "TCP"),  # enforced deny-b-in drops: a drop event
        Probe(a.netns, b.ipv6, 81, "UDP"),  # deny-b-in allows x/a; trial-b-in changes nothing
    ]
    kn.verify(state)  # the kernel matches the reference, which ignores audited policies
    with kn.agent(), NflogReader(GROUP) as reader:
        assert probe_many(probes, timeout=0.5) == [True, True, True, False, True]
        namer = EventNamer(state, "node-0")
        seen: set[tuple[Any, ...]] = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(seen) < 4:
            for p in reader.read(0.2):
                e = namer.event(prefix=p.prefix, family=p.family, payload=p.payload, time=p.time)
                if e is not None and e.port in (80, 81):
                    seen.add(e.key[1:])
    assert seen == {
        ("audit", "ingress", "x/a", "y/c", "TCP", 81, ("x/trial-in",)),
        ("audit", "ingress", "x/a", "x/b", "UDP", 80, ("x/trial-in",)),
        ("audit", "egress", "x/b", "x/a", "UDP", 80, ("x/trial-out",)),
        ("drop", "ingress", "x/b", "y/c", "TCP", 80, ("x/deny-b-in",)),
    }

"""Revocation's pure half: whose views a change touches, and which flows a ruleset forbids.

Cluster and addresses of tests/dataplane/cluster.py: x/a 10.244.0.10, x/b .11,
y/a .12, y/b .13, z/a .14, z/b .15 on node-0; the c pods on node-1.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from agent.core.flowviews import View, changed_addresses, pod_views
from agent.core.model import ClusterState, Family, NetworkPolicy, Protocol
from agent.core.revoke import (
    Flow,
    forbidden,
    local_addresses,
    opening_packet,
    own_addresses,
)
from agent.core.ruleset import Ruleset
from agent.core.trace import trace
from tests.builders import labels, sel
from tests.dataplane.cluster import PODS, compiled, policy, state

XA, XB, YA, YB, ZA = "10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.0.13", "10.244.0.14"
XC, YC = "10.244.1.10", "10.244.1.11"
NODE0 = "172.18.0.2"
BOTH = (Family.V4, Family.V6)
TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP

DENY_X = policy("x/deny", {"podSelector": {}})
A_FROM_B = policy(
    "x/a-from-b",
    {
        "podSelector": sel("pod=a"),
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": sel("pod=b")}]}],
    },
)
Y_EGRESS_80 = policy(
    "y/egress-80",
    {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 80}]}]},
)


def flow(src: str, dst: str, dport: int = 80, proto: Protocol = TCP, sport: int = 40000) -> Flow:
    return Flow(proto, src, sport, dst, dport, dst, dport)


def views(st: ClusterState) -> tuple[Ruleset, dict[str, View]]:
    ruleset = compiled(st, families=BOTH)
    return ruleset, dict(pod_views(ruleset, local_addresses(st, "node-0")))


def test_local_and_own_addresses() -> None:
    st = state()
    local = local_addresses(st, "node-0")
    assert {XA, YB, "fd00:10:244::a"} <= local and XC not in local
    assert own_addresses(st, "node-0") == {NODE0, "fd00:172:18::2", "10.244.0.1", "fd00:10:244::1"}


Z_OPEN = policy("z/open", {"podSelector": {}, "ingress": [{}]})


def test_a_policy_changes_the_views_of_the_pods_it_selects_only() -> None:
    _, before = views(state(Z_OPEN))
    _, after = views(state(Z_OPEN, DENY_X))
    assert changed_addresses(before, after) == {XA, XB, "fd00:10:244::a", "fd00:10:244::b"}
    assert changed_addresses(None, after) == frozenset(after)
    assert changed_addresses(after, after) == frozenset()


def test_the_first_policy_of_a_node_changes_only_the_views_of_its_pods() -> None:
    """The layout's rules do not depend on policies: only the gate sets change."""
    _, before = views(state())
    _, after = views(state(DENY_X))
    assert changed_addresses(before, after) == {XA, XB, "fd00:10:244::a", "fd00:10:244::b"}


def test_a_peer_joining_a_set_changes_the_view_of_the_pods_that_consult_it() -> None:
    _, before = views(state(A_FROM_B))
    relabelled = dict(PODS)
    relabelled["y/a"] = replace(PODS["y/a"], labels=labels("pod=b"))
    _, after = views(state(A_FROM_B, pod_list=relabelled))
    changed = changed_addresses(before, after)
    assert XA in changed  # its ingress peers grew
    assert {XB, YB, ZA} & changed == set()  # nothing they consult changed


def test_flows_the_new_ruleset_forbids_and_only_those() -> None:
    ruleset = compiled(state(DENY_X, Y_EGRESS_80), families=BOTH)
    own = own_addresses(state(), "node-0")
    flows = [
        flow(YA, XA),  # into isolated x: cut
        flow(XC, XB, 81, UDP),  # from node-1 into x: cut
        flow(XA, YA),  # x egress is free, y ingress is free: kept
        flow(YA, XC, 80),  # y egress to port 80: kept
        flow(YA, XC, 81, SCTP),  # y egress to 81: cut
        flow(NODE0, XA),  # the node may always reach its pods: kept
        flow("fd00:10:244::c", "fd00:10:244::a", 80, UDP),  # IPv6 into x: cut
        flow("fd00:10:244::a", "fd00:10:244::c", 80, UDP),  # IPv6 out of x: kept
        # a Service: the client dialled a ClusterIP, the filter table saw x/a
        Flow(TCP, ZA, 40001, "10.96.0.10", 53, XA, 8053),
        Flow(TCP, ZA, 40002, "10.96.0.11", 53, YA, 8053),
    ]
    assert forbidden(flows, ruleset, own) == [flows[0], flows[1], flows[4], flows[6], flows[8]]


def test_the_opening_packet_uses_the_hook_the_kernel_used() -> None:
    own = own_addresses(state(), "node-0")
    assert opening_packet(flow(NODE0, XA), own).hook == "OUTPUT"
    assert opening_packet(flow(XA, NODE0), own).hook == "INPUT"
    assert opening_packet(flow(XA, XC), own).hook == "FORWARD"
    dnat = Flow(UDP, XA, 5000, "10.96.0.10", 53, XC, 5353)
    p = opening_packet(dnat, own)
    assert (p.dst, p.dport, p.protocol) == (XC, 5353, UDP)


POLICIES: tuple[tuple[NetworkPolicy, ...], ...] = (
    (),
    (DENY_X,),
    (A_FROM_B,),
    (DENY_X, A_FROM_B),
    (Y_EGRESS_80,),
    (A_FROM_B, Y_EGRESS_80),
)


@pytest.mark.parametrize(
    ("before", "after"),
    [(b, a) for b, a in itertools.permutations(POLICIES, 2)],
    ids=lambda ps: "+".join(p.name for p in ps) or "none",
)
def test_every_flow_whose_verdict_changed_touches_a_changed_address(
    before: tuple[NetworkPolicy, ...], after: tuple[NetworkPolicy, ...]
) -> None:
    """Soundness of the filter: trace every pod pair and port on both rulesets."""
    old_rules, old_views = views(state(*before))
    new_rules, new_views = views(state(*after))
    changed = changed_addresses(old_views, new_views)
    local = local_addresses(state(), "node-0")
    own = own_addresses(state(), "node-0")
    addrs = sorted({ip for p in PODS.values() for ip in p.ips})
    for src, dst in itertools.permutations(addrs, 2):
        if (":" in src) != (":" in dst) or not ({src, dst} & local):
            continue
        for port, proto in ((80, TCP), (81, UDP), (80, SCTP)):
            packet = opening_packet(flow(src, dst, port, proto), own)
            was = trace(old_rules, packet).allowed
            now = trace(new_rules, packet).allowed
            if was != now:
                assert {src, dst} & changed, f"{packet} changed verdict, but neither end did"

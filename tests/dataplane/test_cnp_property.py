"""Differential property test for ClusterNetworkPolicy: the compiled tiers (ADMIN and
BASELINE stages) traced packet by packet must agree with the reference evaluator on
generated clusters mixing ClusterNetworkPolicies and NetworkPolicies.

Clusters come from tests/dataplane/strategies.py (two nodes, dual/single stack, named
ports, hostNetwork pod, NetworkPolicies valid and invalid) plus up to three
ClusterNetworkPolicies of either tier: subjects by namespace or by pods, ordered rules
with every action, every peer kind (networks with /0 and IPv6, nodes by label, the
fail-closed "everything"), ports, ranges, named ports, and equal priorities.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.model import ClusterState, Family, Labels, LabelSelector, Protocol
from agent.core.policyapi.cnpmodel import (
    ALL_PEERS,
    Action,
    ClusterNetworkPolicy,
    ClusterPeer,
    ClusterPort,
    ClusterRule,
    PeerKind,
    Subject,
    Tier,
)
from tests.dataplane.strategies import NODES, PORTS, cluster_st, selector_st
from tests.dataplane.test_property import assert_engines_agree

NODE_LABELS = {"node-0": Labels({"role": "infra"}), "node-1": Labels({"role": "worker"})}
NETWORKS = (
    ("10.244.1.0/24",),
    ("0.0.0.0/0",),
    ("0.0.0.0/0", "::/0"),
    ("fd00:10:244::/64",),
    ("192.0.2.0/24", "10.244.0.10/32"),
    ("172.18.0.0/16",),
)
# Selectors that often match (the shared selector_st rarely selects a whole namespace).
ns_selector_st = st.one_of(
    st.sampled_from(
        [
            LabelSelector(),
            LabelSelector((("ns", "x"),)),
            LabelSelector((("ns", "y"),)),
            LabelSelector((("tier", "web"),)),
        ]
    ),
    selector_st,
)
pod_selector_st = st.one_of(
    st.sampled_from(
        [
            LabelSelector(),
            LabelSelector((("pod", "a"),)),
            LabelSelector((("pod", "b"),)),
            LabelSelector((("tier", "web"),)),
        ]
    ),
    selector_st,
)
node_selector_st = st.sampled_from(
    [LabelSelector(), LabelSelector((("role", "infra"),)), LabelSelector((("role", "worker"),))]
)


ingress_peer_st = st.one_of(
    st.builds(ClusterPeer, kind=st.just(PeerKind.NAMESPACES), namespace_selector=ns_selector_st),
    st.builds(
        ClusterPeer,
        kind=st.just(PeerKind.PODS),
        namespace_selector=ns_selector_st,
        pod_selector=pod_selector_st,
    ),
)
egress_peer_st = st.one_of(
    ingress_peer_st,
    st.sampled_from(NETWORKS).map(lambda n: ClusterPeer(PeerKind.NETWORKS, networks=n)),
    node_selector_st.map(lambda s: ClusterPeer(PeerKind.NODES, node_selector=s)),
)
port_st = st.one_of(
    st.builds(ClusterPort, protocol=st.sampled_from(list(Protocol)), port=st.sampled_from(PORTS)),
    st.builds(
        ClusterPort,
        protocol=st.sampled_from(list(Protocol)),
        port=st.just(80),
        end_port=st.just(81),
    ),
    st.builds(ClusterPort, protocol=st.sampled_from(list(Protocol))),
    st.builds(ClusterPort, name=st.sampled_from(("http", "dns"))),
)


def rule_st(peers: st.SearchStrategy[ClusterPeer]) -> st.SearchStrategy[ClusterRule]:
    normal = st.builds(
        ClusterRule,
        name=st.sampled_from(("", "r")),
        action=st.sampled_from([Action.ACCEPT, Action.DENY, Action.PASS, Action.PASS]),
        peers=st.lists(peers, min_size=1, max_size=2).map(tuple),
        ports=st.lists(port_st, max_size=2).map(tuple),
    )
    failed = st.sampled_from(
        [
            ClusterRule("bad", Action.DENY, (ALL_PEERS,), failed=True),
            ClusterRule("bad", Action.ACCEPT, (), failed=True),
        ]
    )
    return st.one_of(normal, normal, normal, normal, normal, failed)


@st.composite
def cnp_st(draw: st.DrawFn, index: int) -> ClusterNetworkPolicy:
    by_pods = draw(st.booleans())
    subject = Subject(
        namespace_selector=draw(ns_selector_st),
        pod_selector=draw(pod_selector_st) if by_pods else Subject().pod_selector,
        by_pods=by_pods,
    )
    return ClusterNetworkPolicy(
        name=f"c{index}",
        tier=draw(st.sampled_from(list(Tier))),
        priority=draw(st.sampled_from((-1, 0, 10, 10, 500))),
        subject=subject,
        ingress=tuple(draw(st.lists(rule_st(ingress_peer_st), max_size=3))),
        egress=tuple(draw(st.lists(rule_st(egress_peer_st), max_size=3))),
    )


@st.composite
def mixed_cluster_st(draw: st.DrawFn) -> ClusterState:
    base = draw(cluster_st())
    cnps = [draw(cnp_st(i)) for i in range(draw(st.integers(1, 3)))]
    nodes = {name: replace(node, labels=NODE_LABELS[name]) for name, node in NODES.items()}
    # NetworkPolicies isolate pods from the Baseline tier: keep at most one, half the time.
    policies = dict(list(base.policies.items())[: draw(st.sampled_from((0, 1, 4)))])
    return replace(base, policies=policies, nodes=nodes, cluster_policies={c.name: c for c in cnps})


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mixed_cluster_st(), st.sampled_from([None, Family.V4, Family.V6]))
def test_tiers_in_the_ruleset_agree_with_reference(
    state: ClusterState, family: Family | None
) -> None:
    assert_engines_agree(state, family)

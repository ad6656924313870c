"""Hypothesis strategies for small clusters, shared by the dataplane property tests.

Two nodes, dual-stack or single-stack pods (some finished, some without an IP,
optionally a hostNetwork pod), named container ports, and policies with
selectors and expressions, namespace selectors, ipBlocks with excepts
(including /0), port ranges, named ports, SCTP, and invalid policies.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from agent.core.errors import FieldError
from agent.core.model import (
    ClusterState,
    ContainerPort,
    Direction,
    IPBlock,
    Labels,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Operator,
    Peer,
    Pod,
    PodPhase,
    PolicyPort,
    Protocol,
    Requirement,
    Rule,
)

NODES = {
    "node-0": Node(
        "node-0", ("172.18.0.2", "fd00:172:18::2"), ("10.244.0.0/24", "fd00:10:244::/64")
    ),
    "node-1": Node("node-1", ("172.18.0.3",), ("10.244.1.0/24", "fd00:10:244:1::/64")),
}
PORTS = (53, 80, 81, 8080)
LABEL_VALUES = {"pod": ("a", "b", "c"), "tier": ("web", "db")}
CIDRS = (
    ("10.244.0.0/16", ("10.244.1.0/24",)),
    ("10.244.0.0/24", ()),
    ("0.0.0.0/0", ("10.244.0.0/24", "192.0.2.0/25")),
    ("0.0.0.0/0", ("0.0.0.0/1",)),
    ("192.0.2.0/24", ()),
    ("fd00:10:244::/48", ("fd00:10:244:1::/64",)),
    ("::/0", ()),
    ("10.244.0.10/32", ()),
)
EXTRA_SOURCES = (
    "172.18.0.2",
    "10.244.0.1",
    "172.18.0.3",
    "10.244.1.1",
    "192.0.2.9",
    "fd00:172:18::2",
    "2001:db8::1",
)

labels_st = st.fixed_dictionaries(
    {}, optional={k: st.sampled_from(v) for k, v in LABEL_VALUES.items()}
).map(Labels)

requirement_st = st.builds(
    Requirement,
    key=st.sampled_from(("pod", "tier", "ns")),
    operator=st.sampled_from(list(Operator)),
    values=st.frozensets(st.sampled_from(("a", "b", "web", "x", "y")), min_size=1, max_size=2),
).map(
    lambda r: (
        replace(r, values=frozenset())
        if r.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST)
        else r
    )
)
selector_st = st.builds(
    LabelSelector,
    match_labels=st.lists(
        st.sampled_from([("pod", "a"), ("pod", "b"), ("tier", "web"), ("ns", "x"), ("ns", "y")]),
        max_size=2,
        unique_by=lambda kv: kv[0],
    ).map(tuple),
    match_expressions=st.lists(requirement_st, max_size=1).map(tuple),
)
peer_st = st.one_of(
    st.builds(Peer, pod_selector=selector_st),
    st.builds(Peer, namespace_selector=selector_st),
    st.builds(Peer, pod_selector=selector_st, namespace_selector=selector_st),
    st.sampled_from(CIDRS).map(lambda c: Peer(ip_block=IPBlock(c[0], c[1]))),
)
port_st = st.one_of(
    st.builds(PolicyPort, protocol=st.sampled_from(list(Protocol))),
    st.builds(PolicyPort, protocol=st.sampled_from(list(Protocol)), port=st.sampled_from(PORTS)),
    st.builds(
        PolicyPort, protocol=st.sampled_from(list(Protocol)), port=st.just(80), end_port=st.just(81)
    ),
    st.builds(
        PolicyPort,
        protocol=st.sampled_from(list(Protocol)),
        port=st.sampled_from(("http", "dns", "metrics")),
    ),
)
rule_st = st.builds(
    Rule,
    peers=st.lists(peer_st, max_size=2).map(tuple),
    ports=st.lists(port_st, max_size=2).map(tuple),
)


@st.composite
def policy_st(draw: st.DrawFn, index: int) -> NetworkPolicy:
    types = draw(
        st.sampled_from(
            [{Direction.INGRESS}, {Direction.EGRESS}, {Direction.INGRESS, Direction.EGRESS}]
        )
    )
    errors: tuple[FieldError, ...] = ()
    if draw(st.integers(0, 9)) == 0:
        errors = (FieldError("ns/p", "spec.ingress[0]", "generated invalid"),)
    return NetworkPolicy(
        namespace=draw(st.sampled_from(("x", "y"))),
        name=f"p{index}",
        pod_selector=draw(selector_st),
        policy_types=frozenset(types),
        ingress=tuple(draw(st.lists(rule_st, max_size=2))),
        egress=tuple(draw(st.lists(rule_st, max_size=2))),
        errors=errors,
    )


@st.composite
def pod_st(draw: st.DrawFn, index: int) -> Pod:
    node = draw(st.integers(0, 1))
    stack = draw(st.sampled_from(("dual", "dual", "v4", "v6", "none")))
    ips: tuple[str, ...] = ()
    if stack in ("dual", "v4"):
        ips += (f"10.244.{node}.{10 + index}",)
    if stack in ("dual", "v6"):
        ips += (f"fd00:10:244:{node}::{10 + index:x}".replace(":0::", "::"),)
    ports = draw(
        st.lists(
            st.builds(
                ContainerPort,
                port=st.sampled_from(PORTS),
                protocol=st.sampled_from(list(Protocol)),
                name=st.sampled_from((None, "http", "dns")),
            ),
            max_size=2,
        )
    )
    return Pod(
        namespace=draw(st.sampled_from(("x", "y", "z"))),
        name=f"p{index}",
        uid=f"uid-{index}",
        labels=draw(labels_st),
        ips=ips,
        node=f"node-{node}",
        phase=draw(
            st.sampled_from([PodPhase.RUNNING] * 8 + [PodPhase.SUCCEEDED, PodPhase.PENDING])
        ),
        ports=tuple(ports),
    )


@st.composite
def cluster_st(draw: st.DrawFn) -> ClusterState:
    n_pods = draw(st.integers(1, 6))
    pods = [draw(pod_st(i)) for i in range(n_pods)]
    if draw(st.booleans()):  # a hostNetwork pod: its node's address
        pods.append(
            Pod("x", "host", "uid-host", Labels({"pod": "a"}), ("172.18.0.2",), "node-0", True)
        )
    n_pol = draw(st.integers(0, 4))
    policies = [draw(policy_st(i)) for i in range(n_pol)]
    namespaces = {
        ns: Namespace(
            ns,
            Labels(
                {"kubernetes.io/metadata.name": ns, "ns": ns}
                | ({"tier": "web"} if draw(st.booleans()) else {})
            ),
        )
        for ns in ("x", "y", "z")
    }
    return ClusterState(
        namespaces=namespaces,
        pods={p.uid: p for p in pods},
        policies={p.key: p for p in policies},
        nodes=NODES,
    )


def anchored(
    base: ClusterState, *, ingress: tuple[Rule, ...], egress: tuple[Rule, ...]
) -> ClusterState:
    """`base` plus a local pod (node-0) in x and in y, each isolated both ways by a
    wide policy with the given rules, so pod chains and peer sets always exist."""
    anchors = {
        f"uid-anchor-{ns}": Pod(
            ns,
            "anchor",
            f"uid-anchor-{ns}",
            Labels({"pod": "a"}),
            (f"10.244.0.{200 + i}", f"fd00:10:244::{200 + i:x}"),
            "node-0",
        )
        for i, ns in enumerate(("x", "y"))
    }
    wide = {
        f"{ns}/wide": NetworkPolicy(
            ns, "wide", policy_types=frozenset(Direction), ingress=ingress, egress=egress
        )
        for ns in ("x", "y")
    }
    return replace(base, pods={**base.pods, **anchors}, policies={**base.policies, **wide})

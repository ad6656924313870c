"""The reference evaluator, one named scenario per semantic rule of NetworkPolicy v1.

Cluster (address plan of tests/conftest.py):

    node-0  172.18.0.2, fd00:172:18::2; podCIDR 10.244.0.0/24 (gateway 10.244.0.1)
    node-1  172.18.0.3;                 podCIDR 10.244.1.0/24 (gateway 10.244.1.1)
    x/a     pod=a        10.244.0.10 fd00:10:244::a   node-0  http=80/TCP dns=53/UDP
    x/b     pod=b        10.244.0.11 fd00:10:244::b   node-0  http=81/TCP
    y/a     pod=a,tier=db 10.244.1.10 fd00:10:244:1::a node-1 http=80/TCP
    y/c     pod=c        10.244.1.11                  node-1
    x/host  pod=host     hostNetwork 172.18.0.2       node-0
    x/noip  pod=noip     (no IP)
    x/done  pod=done     10.244.0.12, Succeeded
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agent.core.explain import render_explanation
from agent.core.model import Direction, Family, Namespace, Node, Pod, PodPhase, Protocol
from agent.core.semantics import ReferenceEvaluator
from tests.builders import make_ns, make_pod, make_policy, make_state, sel

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP

PODS = {
    p.key: p
    for p in (
        make_pod(
            "x/a",
            "pod=a",
            ip=("10.244.0.10", "fd00:10:244::a"),
            ports=((80, "TCP", "http"), (53, "UDP", "dns")),
        ),
        make_pod(
            "x/b", "pod=b", ip=("10.244.0.11", "fd00:10:244::b"), ports=((81, "TCP", "http"),)
        ),
        make_pod(
            "y/a",
            "pod=a",
            "tier=db",
            ip=("10.244.1.10", "fd00:10:244:1::a"),
            node="node-1",
            ports=((80, "TCP", "http"),),
        ),
        make_pod("y/c", "pod=c", ip="10.244.1.11", node="node-1"),
        replace(make_pod("x/host", "pod=host", ip="172.18.0.2"), host_network=True),
        make_pod("x/noip", "pod=noip"),
        replace(make_pod("x/done", "pod=done", ip="10.244.0.12"), phase=PodPhase.SUCCEEDED),
    )
}
BASE: tuple[Namespace | Pod | Node, ...] = (
    make_ns("x", "ns=x"),
    make_ns("y", "ns=y", "env=prod"),
    Node("node-0", ("172.18.0.2", "fd00:172:18::2"), ("10.244.0.0/24", "fd00:10:244::/64")),
    Node("node-1", ("172.18.0.3",), ("10.244.1.0/24",)),
    *PODS.values(),
)

DENY_X: tuple[str, dict[str, Any]] = ("x/deny", {"podSelector": {}})
DENY_X_EGRESS: tuple[str, dict[str, Any]] = (
    "x/deny-egress",
    {"podSelector": {}, "policyTypes": ["Egress"]},
)
DENY_Y_EGRESS: tuple[str, dict[str, Any]] = (
    "y/deny-egress",
    {"podSelector": {}, "policyTypes": ["Egress"]},
)
TO_XA: dict[str, Any] = {"podSelector": sel("pod=a")}


def ingress_xa(*peers: Any, ports: Any = None) -> tuple[str, dict[str, Any]]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return ("x/allow", {**TO_XA, "ingress": [rule]})


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return {"matchExpressions": [e]}


Case = tuple[str, list[tuple[str, dict[str, Any]]], str, str, int, Protocol, bool]

CASES: list[Case] = [
    ("no policy: all allowed", [], "y/a", "x/a", 80, TCP, True),
    ("deny-all isolates ingress", [DENY_X], "y/a", "x/a", 80, TCP, False),
    ("deny-all in x does not touch y", [DENY_X], "x/a", "y/a", 80, TCP, True),
    ("a pod to itself is always allowed", [DENY_X, DENY_X_EGRESS], "x/a", "x/a", 80, TCP, True),
    # nil vs empty
    (
        "empty podSelector peer: own namespace",
        [ingress_xa({"podSelector": {}})],
        "x/b",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "empty podSelector peer: not other namespaces",
        [ingress_xa({"podSelector": {}})],
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "empty namespaceSelector: every namespace",
        [ingress_xa({"namespaceSelector": {}})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "empty namespaceSelector: not external",
        [ingress_xa({"namespaceSelector": {}})],
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "no from: everything, external too",
        [("x/allow", {**TO_XA, "ingress": [{}]})],
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        True,
    ),
    ("ingress: [] denies", [("x/allow", {**TO_XA, "ingress": []})], "x/b", "x/a", 80, TCP, False),
    (
        "from: [] is like no from",
        [("x/allow", {**TO_XA, "ingress": [{"from": []}]})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    # AND / OR
    (
        "AND: both match",
        [ingress_xa({"namespaceSelector": sel("ns=y"), "podSelector": sel("pod=a")})],
        "y/a",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "AND: pod misses",
        [ingress_xa({"namespaceSelector": sel("ns=y"), "podSelector": sel("pod=a")})],
        "y/c",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "AND: namespace misses",
        [ingress_xa({"namespaceSelector": sel("ns=y"), "podSelector": sel("pod=b")})],
        "x/b",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "OR: second peer",
        [ingress_xa({"namespaceSelector": sel("ns=y")}, {"podSelector": sel("pod=b")})],
        "x/b",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "OR: first peer",
        [ingress_xa({"namespaceSelector": sel("ns=y")}, {"podSelector": sel("pod=b")})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "podSelector alone: own namespace only",
        [ingress_xa({"podSelector": sel("pod=a")})],
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    # expressions
    (
        "NotIn matches a pod without the key",
        [ingress_xa({"namespaceSelector": {}, "podSelector": expr("tier", "NotIn", "db")})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "NotIn excludes the value",
        [ingress_xa({"namespaceSelector": {}, "podSelector": expr("tier", "NotIn", "db")})],
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "In",
        [ingress_xa({"namespaceSelector": {}, "podSelector": expr("tier", "In", "db", "web")})],
        "y/a",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "Exists",
        [ingress_xa({"namespaceSelector": {}, "podSelector": expr("tier", "Exists")})],
        "y/c",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "DoesNotExist",
        [ingress_xa({"namespaceSelector": {}, "podSelector": expr("tier", "DoesNotExist")})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "namespace expression",
        [ingress_xa({"namespaceSelector": expr("env", "In", "prod")})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "kubernetes.io/metadata.name label",
        [ingress_xa({"namespaceSelector": sel("kubernetes.io/metadata.name=y")})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    # ipBlock
    (
        "ipBlock matches pod IPs",
        [ingress_xa({"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.10/32"]}})],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "ipBlock except",
        [ingress_xa({"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.10/32"]}})],
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock external",
        [ingress_xa({"ipBlock": {"cidr": "192.0.2.0/24"}})],
        "192.0.2.77",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "ipBlock external miss",
        [ingress_xa({"ipBlock": {"cidr": "192.0.2.0/24"}})],
        "198.51.100.1",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock v6",
        [ingress_xa({"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:bad::/48"]}})],
        "2001:db8:1::1",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "ipBlock v6 except",
        [ingress_xa({"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:bad::/48"]}})],
        "2001:db8:bad::1",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock v4 never matches v6",
        [ingress_xa({"ipBlock": {"cidr": "0.0.0.0/0"}})],
        "2001:db8::1",
        "x/a",
        80,
        TCP,
        False,
    ),
    # ports
    ("numeric port", [ingress_xa(ports=[{"port": 80}])], "x/b", "x/a", 80, TCP, True),
    ("numeric port miss", [ingress_xa(ports=[{"port": 80}])], "x/b", "x/a", 81, TCP, False),
    ("default protocol is TCP", [ingress_xa(ports=[{"port": 80}])], "x/b", "x/a", 80, UDP, False),
    (
        "protocol without port: all its ports",
        [ingress_xa(ports=[{"protocol": "SCTP"}])],
        "x/b",
        "x/a",
        9999,
        SCTP,
        True,
    ),
    (
        "protocol without port: not TCP",
        [ingress_xa(ports=[{"protocol": "SCTP"}])],
        "x/b",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "endPort range inside",
        [ingress_xa(ports=[{"port": 80, "endPort": 81}])],
        "x/b",
        "x/a",
        81,
        TCP,
        True,
    ),
    (
        "endPort range outside",
        [ingress_xa(ports=[{"port": 80, "endPort": 81}])],
        "x/b",
        "x/a",
        82,
        TCP,
        False,
    ),
    (
        "named port on the target (ingress)",
        [("x/allow", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})],
        "x/a",
        "x/b",
        81,
        TCP,
        True,
    ),
    (
        "named port: number is the target's",
        [("x/allow", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})],
        "x/a",
        "x/b",
        80,
        TCP,
        False,
    ),
    (
        "named port: protocol must match",
        [
            (
                "x/allow",
                {"podSelector": {}, "ingress": [{"ports": [{"port": "dns", "protocol": "TCP"}]}]},
            )
        ],
        "x/b",
        "x/a",
        53,
        TCP,
        False,
    ),
    (
        "named port: name and protocol",
        [
            (
                "x/allow",
                {"podSelector": {}, "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]},
            )
        ],
        "x/b",
        "x/a",
        53,
        UDP,
        True,
    ),
    (
        "named port on the peer (egress)",
        [("x/out", {"podSelector": sel("pod=a"), "egress": [{"ports": [{"port": "http"}]}]})],
        "x/a",
        "x/b",
        81,
        TCP,
        True,
    ),
    (
        "named port on the peer (egress) miss",
        [("x/out", {"podSelector": sel("pod=a"), "egress": [{"ports": [{"port": "http"}]}]})],
        "x/a",
        "x/b",
        80,
        TCP,
        False,
    ),
    (
        "named port on the peer (egress) other ns",
        [("x/out", {"podSelector": sel("pod=a"), "egress": [{"ports": [{"port": "http"}]}]})],
        "x/a",
        "y/a",
        80,
        TCP,
        True,
    ),
    (
        "named port never matches an IP",
        [("x/out", {"podSelector": sel("pod=a"), "egress": [{"ports": [{"port": "http"}]}]})],
        "x/a",
        "192.0.2.1",
        80,
        TCP,
        False,
    ),
    # policies add up; both ends must agree
    (
        "policies add up",
        [
            ingress_xa({"podSelector": sel("pod=b")}),
            ("x/allow2", {**TO_XA, "ingress": [{"from": [{"namespaceSelector": sel("ns=y")}]}]}),
        ],
        "y/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    ("egress isolated, ingress open", [DENY_X_EGRESS], "x/a", "y/a", 80, TCP, False),
    (
        "egress open, ingress isolated",
        [("y/deny", {"podSelector": {}})],
        "x/a",
        "y/a",
        80,
        TCP,
        False,
    ),
    (
        "both allow",
        [
            (
                "x/out",
                {"podSelector": {}, "egress": [{"to": [{"namespaceSelector": sel("ns=y")}]}]},
            ),
            (
                "y/in",
                {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": sel("ns=x")}]}]},
            ),
        ],
        "x/a",
        "y/a",
        80,
        TCP,
        True,
    ),
    (
        "egress allows, ingress denies",
        [("x/out", {"podSelector": {}, "egress": [{}]}), ("y/deny", {"podSelector": {}})],
        "x/a",
        "y/a",
        80,
        TCP,
        False,
    ),
    (
        "policyTypes Egress: ingress rules ignored",
        [("x/p", {"podSelector": {}, "policyTypes": ["Egress"], "ingress": [], "egress": [{}]})],
        "y/a",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "egress: [] without policyTypes: egress open",
        [("x/p", {"podSelector": {}, "ingress": [{}], "egress": []})],
        "x/a",
        "y/a",
        80,
        TCP,
        True,
    ),
    (
        "egress to an external IP",
        [
            (
                "x/out",
                {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]},
            )
        ],
        "x/a",
        "192.0.2.10",
        443,
        TCP,
        True,
    ),
    (
        "egress to an external IP miss",
        [
            (
                "x/out",
                {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]},
            )
        ],
        "x/a",
        "198.51.100.10",
        443,
        TCP,
        False,
    ),
    # pods outside NetworkPolicy; node addresses
    ("hostNetwork destination: not a target", [DENY_X], "y/a", "x/host", 80, TCP, True),
    # "traffic to and from the node where a Pod is running is always allowed": the "to" half
    (
        "hostNetwork destination on the pod's own node: always allowed",
        [DENY_X_EGRESS],
        "x/a",
        "x/host",
        80,
        TCP,
        True,
    ),
    (
        "hostNetwork destination on another node: the source's egress applies",
        [DENY_Y_EGRESS],
        "y/a",
        "x/host",
        80,
        TCP,
        False,
    ),
    (
        "hostNetwork destination on another node: egress ipBlock admits it",
        [
            (
                "y/out",
                {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "172.18.0.0/24"}}]}]},
            )
        ],
        "y/c",
        "x/host",
        80,
        TCP,
        True,
    ),
    (
        "egress-isolated pod reaches its own node",
        [DENY_X_EGRESS],
        "x/a",
        "172.18.0.2",
        80,
        TCP,
        True,
    ),
    (
        "egress-isolated pod reaches its own node over IPv6",
        [DENY_X_EGRESS],
        "x/a",
        "fd00:172:18::2",
        80,
        UDP,
        True,
    ),
    (
        "egress-isolated pod reaches its own gateway",
        [DENY_X_EGRESS],
        "x/b",
        "10.244.0.1",
        53,
        UDP,
        True,
    ),
    ("egress to node-1 from node-1", [DENY_Y_EGRESS], "y/c", "172.18.0.3", 80, SCTP, True),
    ("egress to another node: no pass", [DENY_X_EGRESS], "x/a", "172.18.0.3", 80, TCP, False),
    (
        "egress to another node's gateway: no pass",
        [DENY_X_EGRESS],
        "x/a",
        "10.244.1.1",
        80,
        TCP,
        False,
    ),
    ("egress to node-0 from node-1: no pass", [DENY_Y_EGRESS], "y/a", "172.18.0.2", 80, TCP, False),
    (
        "egress to another node: an ipBlock admits it",
        [
            (
                "x/out",
                {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "172.18.0.3/32"}}]}]},
            )
        ],
        "x/a",
        "172.18.0.3",
        80,
        TCP,
        True,
    ),
    ("egress to an external address: no pass", [DENY_X_EGRESS], "x/a", "192.0.2.1", 80, TCP, False),
    ("no-IP destination: unreachable", [], "y/a", "x/noip", 80, TCP, False),
    ("finished destination: unreachable", [], "y/a", "x/done", 80, TCP, False),
    (
        "hostNetwork pod is not a peer",
        [
            (
                "y/allow",
                {
                    "podSelector": {},
                    "ingress": [
                        {"from": [{"namespaceSelector": {}, "podSelector": sel("pod=host")}]}
                    ],
                },
            )
        ],
        "x/host",
        "y/a",
        80,
        TCP,
        False,
    ),
    (
        "hostNetwork source on another node: blocked",
        [("y/deny", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
        "x/host",
        "y/a",
        80,
        TCP,
        False,
    ),
    ("own node address always allowed", [DENY_X], "172.18.0.2", "x/a", 80, TCP, True),
    ("own node IPv6 address always allowed", [DENY_X], "fd00:172:18::2", "x/a", 80, TCP, True),
    ("own bridge gateway always allowed", [DENY_X], "10.244.0.1", "x/a", 80, TCP, True),
    ("hostNetwork pod on the same node (node IP)", [DENY_X], "x/host", "x/a", 80, TCP, True),
    ("another node gets no pass", [DENY_X], "172.18.0.3", "x/a", 80, TCP, False),
    ("another node's gateway gets no pass", [DENY_X], "10.244.1.1", "x/a", 80, TCP, False),
    # invalid policies fail closed
    (
        "invalid policy isolates",
        [("x/bad", {**TO_XA, "ingress": [{"ports": [{"port": 0}]}]})],
        "x/b",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "invalid policy: others still apply",
        [
            ("x/bad", {**TO_XA, "ingress": [{"ports": [{"port": 0}]}]}),
            ingress_xa({"podSelector": sel("pod=b")}),
        ],
        "x/b",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "invalid policy: others still apply (miss)",
        [
            ("x/bad", {**TO_XA, "ingress": [{"ports": [{"port": 0}]}]}),
            ingress_xa({"podSelector": sel("pod=b")}),
        ],
        "y/c",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "invalid podSelector isolates the namespace",
        [("x/bad", {"podSelector": expr("pod", "Is", "a"), "ingress": [{}]})],
        "y/c",
        "x/b",
        80,
        TCP,
        False,
    ),
    (
        "invalid egress policy isolates egress",
        [("x/bad", {"podSelector": {}, "egress": [{"to": [{}]}]})],
        "x/a",
        "y/a",
        80,
        TCP,
        False,
    ),
]


def evaluator(policies: list[tuple[str, dict[str, Any]]]) -> ReferenceEvaluator:
    return ReferenceEvaluator(make_state(*BASE, *(make_policy(k, s) for k, s in policies)))


@pytest.mark.parametrize(
    ("name", "policies", "src", "dst", "port", "proto", "expected"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_semantics(
    name: str,
    policies: list[tuple[str, dict[str, Any]]],
    src: str,
    dst: str,
    port: int,
    proto: Protocol,
    expected: bool,
) -> None:
    ev = evaluator(policies)
    s = PODS.get(src, src)
    d = PODS.get(dst, dst)
    got = ev.allowed(s, d, port, proto)
    assert got is expected, render_explanation(ev.explain(s, d, port, proto))
    assert ev.explain(s, d, port, proto).allowed is expected


def test_family_choice() -> None:
    v6_only = (
        "x/allow",
        {**TO_XA, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00:10:244::/48"}}]}]},
    )
    ev = evaluator([v6_only])
    # Primary family is the destination's first: IPv4 here, and the block is IPv6.
    assert not ev.allowed(PODS["x/b"], PODS["x/a"], 80, TCP)
    assert ev.allowed(PODS["x/b"], PODS["x/a"], 80, TCP, family=Family.V6)
    assert ev.allowed(PODS["y/a"], PODS["x/a"], 80, TCP, family=Family.V6)
    # y/c has no IPv6 address: no common family.
    assert not ev.allowed(PODS["y/c"], PODS["x/a"], 80, TCP, family=Family.V6)


def test_non_networked_pods_are_neither_targets_nor_peers() -> None:
    ev = evaluator([DENY_X])
    assert ev.isolating(PODS["x/a"], Direction.INGRESS)
    for key in ("x/host", "x/noip", "x/done"):
        assert ev.isolating(PODS[key], Direction.INGRESS) == ()
    assert not ev.allowed(PODS["x/noip"], PODS["y/a"], 80, TCP)
    assert not ev.allowed(PODS["x/done"], PODS["y/a"], 80, TCP)


def test_label_change_is_a_new_state() -> None:
    pol = ingress_xa({"namespaceSelector": {}, "podSelector": sel("role=client")})
    ev = evaluator([pol])
    assert not ev.allowed(PODS["y/c"], PODS["x/a"], 80, TCP)
    relabelled = replace(PODS["y/c"], labels=PODS["y/c"].labels.with_label("role", "client"))
    ev2 = ReferenceEvaluator(make_state(*BASE, relabelled, make_policy(*pol)))
    assert ev2.allowed(relabelled, PODS["x/a"], 80, TCP)


# --- explanations ----------------------------------------------------------------------


def test_explain_names_policy_rule_peer_and_port() -> None:
    pols = [
        DENY_X,
        (
            "x/allow",
            {
                **TO_XA,
                "ingress": [
                    {"from": [{"podSelector": sel("pod=b")}]},
                    {
                        "from": [{"podSelector": sel("pod=z")}, {"namespaceSelector": sel("ns=y")}],
                        "ports": [{"port": "http"}],
                    },
                ],
            },
        ),
    ]
    e = evaluator(pols).explain(PODS["y/c"], PODS["x/a"], 80, TCP)
    assert e.allowed
    assert e.egress is not None and e.egress.allowed and e.egress.isolated_by == ()
    assert e.ingress is not None and e.ingress.isolated_by == ("x/allow", "x/deny")
    (match,) = e.ingress.allowed_by
    assert (match.policy, match.direction, match.rule_index) == ("x/allow", Direction.INGRESS, 1)
    assert match.peer == "peer 1: namespaceSelector ns=y"
    assert match.port == "named port http/TCP (= 80 on x/a)"
    text = render_explanation(e)
    assert "y/c -> x/a 80/TCP: ALLOWED" in text
    assert "isolated by: x/allow, x/deny" in text
    assert (
        "allowed by x/allow ingress rule 1: peer 1: namespaceSelector ns=y; named port http/TCP"
        in text
    )


def test_explain_blocked_and_invalid() -> None:
    pols = [("x/bad", {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}), DENY_X_EGRESS]
    e = evaluator(pols).explain(PODS["x/a"], PODS["x/b"], 80, TCP)
    assert not e.allowed
    assert (
        e.egress is not None and not e.egress.allowed and e.egress.isolated_by == ("x/deny-egress",)
    )
    assert e.ingress is not None and e.ingress.invalid == ("x/bad",)
    text = render_explanation(e)
    assert "x/a -> x/b 80/TCP: BLOCKED" in text
    assert "x/bad (INVALID: isolates, allows nothing)" in text
    assert "no rule of these policies allows it" in text


def test_explain_node_address() -> None:
    e = evaluator([DENY_X]).explain("10.244.0.1", PODS["x/a"], 80, TCP)
    assert e.allowed
    assert (
        "10.244.0.1 is an address of node-0, the destination's own node: always allowed (kubelet probes)"
        in e.summary
    )


def test_explain_pod_to_its_own_node() -> None:
    e = evaluator([DENY_X_EGRESS]).explain(PODS["x/a"], "10.244.0.1", 80, TCP)
    assert e.allowed and e.egress is None
    assert (
        "10.244.0.1 is an address of node-0, the source's own node: always allowed"
        " (traffic to the pod's node)" in render_explanation(e)
    )
    e = evaluator([DENY_X_EGRESS]).explain(PODS["x/a"], PODS["x/host"], 80, TCP)
    assert e.allowed
    assert "x/host uses the host network of node-0, the source's own node" in e.summary
    e = evaluator([DENY_X_EGRESS]).explain(PODS["x/a"], "172.18.0.3", 80, TCP)
    assert not e.allowed
    assert e.egress is not None and e.egress.isolated_by == ("x/deny-egress",)


def test_explain_not_isolated_and_self() -> None:
    e = evaluator([]).explain(PODS["x/a"], PODS["y/a"], 80, TCP)
    assert e.ingress is not None and "not isolated" in e.ingress.note
    assert "same pod" in evaluator([DENY_X]).explain(PODS["x/a"], PODS["x/a"], 80, TCP).summary


def test_bad_ip_string_is_an_input_error() -> None:
    from agent.core.errors import InputError

    with pytest.raises(InputError, match="neither a pod nor an IP"):
        evaluator([]).allowed("nope", PODS["x/a"], 80, TCP)

"""Spec audit: NetworkPolicy v1 edge cases, each checked on BOTH engines.

Every case holds ReferenceEvaluator and the compiled ruleset (RulesetEvaluator: compile
+ packet tracer) to the letter of the networking.k8s.io/v1 API reference. Cluster:
namespaces x (ns=x), y (ns=y, env=prod), z (ns=z); x/a, x/b, y/a, z/c dual-stack;
y/v4 IPv4 only; x/pend Pending with an IP; y/multi two containers naming "svc" with
different protocols.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.incremental import IncrementalCompiler
from agent.core.model import (
    ClusterState,
    ContainerPort,
    Family,
    Namespace,
    Node,
    Pod,
    PodPhase,
    Protocol,
)
from agent.core.semantics import ReferenceEvaluator
from agent.core.trace import RulesetEvaluator
from tests.builders import make_ns, make_pod, make_policy, make_state, sel

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP

PODS = {
    p.key: p
    for p in (
        make_pod(
            "x/a",
            "pod=a",
            ip=("10.244.0.10", "fd00:10:244::a"),
            ports=((80, "TCP", "http"), (132, "SCTP", "sc")),
        ),
        make_pod("x/b", "pod=b", ip=("10.244.0.11", "fd00:10:244::b")),
        make_pod(
            "y/a",
            "pod=a",
            ip=("10.244.1.10", "fd00:10:244:1::a"),
            node="node-1",
            ports=((8080, "TCP", "http"),),
        ),
        make_pod("z/c", "pod=c", ip=("10.244.1.11", "fd00:10:244:1::b"), node="node-1"),
        make_pod("y/v4", "pod=v4", ip="10.244.1.12", node="node-1"),
        replace(make_pod("x/pend", "pod=pend", ip="10.244.0.12"), phase=PodPhase.PENDING),
        make_pod(
            "y/multi",
            "pod=multi",
            ip="10.244.1.13",
            node="node-1",
            ports=((53, "UDP", "svc"), (54, "TCP", "svc")),
        ),
    )
}
BASE: tuple[Namespace | Pod | Node, ...] = (
    make_ns("x", "ns=x"),
    make_ns("y", "ns=y", "env=prod"),
    make_ns("z", "ns=z"),
    Node("node-0", ("172.18.0.2", "fd00:172:18::2"), ("10.244.0.0/24", "fd00:10:244::/64")),
    Node("node-1", ("172.18.0.3", "fd00:172:18::3"), ("10.244.1.0/24", "fd00:10:244:1::/64")),
    *PODS.values(),
)

XA = {"podSelector": sel("pod=a")}
ALL_NS: dict[str, Any] = {"namespaceSelector": {}}


def ing(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**XA, "ingress": list(rules), **extra}


def eg(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**XA, "egress": list(rules), "policyTypes": ["Egress"], **extra}


def notin(key: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "NotIn", "values": list(values)}]}


Case = tuple[str, dict[str, Any], str, str, int, Protocol, bool]
CASES: list[Case] = [
    # from/to: empty or missing = all; [{}] is an invalid peer (no field set) -> fail closed.
    ("from: [] allows all", ing({"from": []}), "z/c", "x/a", 80, TCP, True),
    ("from absent allows all", ing({}), "z/c", "x/a", 80, TCP, True),
    ("from: [{}] invalid, fail closed", ing({"from": [{}]}), "x/b", "x/a", 80, TCP, False),
    ("to: [] allows all", eg({"to": []}), "x/a", "z/c", 80, TCP, True),
    ("to absent allows all", eg({}), "x/a", "z/c", 80, TCP, True),
    ("ingress: [] denies all", {**XA, "ingress": []}, "x/b", "x/a", 80, TCP, False),
    # ports
    ("ports: [] matches all", ing({"ports": []}), "z/c", "x/a", 9, UDP, True),
    ("ports absent matches all", ing({}), "z/c", "x/a", 9, SCTP, True),
    (
        "protocol-only port: all UDP",
        ing({"ports": [{"protocol": "UDP"}]}),
        "z/c",
        "x/a",
        9,
        UDP,
        True,
    ),
    (
        "protocol-only port: not TCP",
        ing({"ports": [{"protocol": "UDP"}]}),
        "z/c",
        "x/a",
        9,
        TCP,
        False,
    ),
    ("port default TCP", ing({"ports": [{"port": 80}]}), "z/c", "x/a", 80, UDP, False),
    ("endPort covers", ing({"ports": [{"port": 70, "endPort": 90}]}), "z/c", "x/a", 90, TCP, True),
    (
        "endPort upper bound",
        ing({"ports": [{"port": 70, "endPort": 90}]}),
        "z/c",
        "x/a",
        91,
        TCP,
        False,
    ),
    (
        "endPort lower bound",
        ing({"ports": [{"port": 70, "endPort": 90}]}),
        "z/c",
        "x/a",
        69,
        TCP,
        False,
    ),
    ("endPort == port", ing({"ports": [{"port": 80, "endPort": 80}]}), "z/c", "x/a", 80, TCP, True),
    # named ports
    ("named port on target", ing({"ports": [{"port": "http"}]}), "z/c", "x/a", 80, TCP, True),
    ("named port other number", ing({"ports": [{"port": "http"}]}), "z/c", "x/a", 81, TCP, False),
    (
        "named SCTP port",
        ing({"ports": [{"port": "sc", "protocol": "SCTP"}]}),
        "z/c",
        "x/a",
        132,
        SCTP,
        True,
    ),
    ("named SCTP port needs SCTP", ing({"ports": [{"port": "sc"}]}), "z/c", "x/a", 132, TCP, False),
    (
        "named port two protocols: UDP",
        {
            "podSelector": sel("pod=multi"),
            "ingress": [{"ports": [{"port": "svc", "protocol": "UDP"}]}],
        },
        "x/a",
        "y/multi",
        53,
        UDP,
        True,
    ),
    (
        "named port two protocols: TCP 54",
        {"podSelector": sel("pod=multi"), "ingress": [{"ports": [{"port": "svc"}]}]},
        "x/a",
        "y/multi",
        54,
        TCP,
        True,
    ),
    (
        "named port two protocols: not TCP 53",
        {"podSelector": sel("pod=multi"), "ingress": [{"ports": [{"port": "svc"}]}]},
        "x/a",
        "y/multi",
        53,
        TCP,
        False,
    ),
    ("egress named port on peer", eg({"ports": [{"port": "http"}]}), "x/a", "y/a", 8080, TCP, True),
    (
        "egress named port not declared by peer",
        eg({"ports": [{"port": "http"}]}),
        "x/a",
        "z/c",
        80,
        TCP,
        False,
    ),
    (
        "egress named port to ipBlock",
        eg({"ports": [{"port": "http"}], "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}),
        "x/a",
        "192.0.2.1",
        80,
        TCP,
        False,
    ),
    # selectors
    (
        "pod+ns {} : all pods all ns",
        ing({"from": [{"podSelector": {}, **ALL_NS}]}),
        "z/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    ("ns {} alone: all ns", ing({"from": [ALL_NS]}), "y/a", "x/a", 80, TCP, True),
    ("ns {} alone: not external", ing({"from": [ALL_NS]}), "192.0.2.1", "x/a", 80, TCP, False),
    (
        "podSelector {} alone: own ns only",
        ing({"from": [{"podSelector": {}}]}),
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ns NotIn excludes",
        ing({"from": [{"namespaceSelector": notin("env", "prod")}]}),
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ns NotIn matches missing key",
        ing({"from": [{"namespaceSelector": notin("env", "prod")}]}),
        "z/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "ns+pod selector AND",
        ing({"from": [{"namespaceSelector": sel("ns=y"), "podSelector": sel("pod=v4")}]}),
        "y/a",
        "x/a",
        80,
        TCP,
        False,
    ),
    # policyTypes
    (
        "policyTypes Egress ignores ingress rules",
        {**XA, "policyTypes": ["Egress"], "ingress": [{"from": [{"podSelector": sel("pod=b")}]}]},
        "z/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "policyTypes Egress ignores ingress rules (egress side isolated)",
        {**XA, "policyTypes": ["Egress"], "ingress": [{}]},
        "x/a",
        "z/c",
        80,
        TCP,
        False,
    ),
    (
        "policyTypes omitted, egress: [] -> ingress only",
        {**XA, "egress": []},
        "x/a",
        "z/c",
        80,
        TCP,
        True,
    ),
    (
        "policyTypes omitted, egress: [] isolates ingress",
        {**XA, "egress": []},
        "z/c",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "policyTypes omitted, egress rule -> egress too",
        {**XA, "egress": [{"to": [ALL_NS]}]},
        "x/a",
        "192.0.2.1",
        80,
        TCP,
        False,
    ),
    # ipBlock
    (
        "ipBlock 0.0.0.0/0 includes pods",
        ing({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}),
        "z/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "ipBlock ::/0 v6 pod",
        ing({"from": [{"ipBlock": {"cidr": "::/0"}}]}),
        "fd00:10:244:1::b",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "ipBlock ::/0 not v4",
        ing({"from": [{"ipBlock": {"cidr": "::/0"}}]}),
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock except == cidr",
        ing({"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/24"]}}]}),
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock v4 vs v6-only source",
        ing({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}),
        "2001:db8::1",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock host bits set",
        ing({"from": [{"ipBlock": {"cidr": "192.0.2.7/24"}}]}),
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        True,
    ),
    # multiple IPs
    (
        "dual-stack peer via pod selector",
        ing({"from": [{"namespaceSelector": sel("ns=z")}]}),
        "z/c",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "dual-stack peer v6 ipBlock of its v6 IP",
        ing({"from": [{"ipBlock": {"cidr": "fd00:10:244:1::b/128"}}]}),
        "fd00:10:244:1::b",
        "x/a",
        80,
        TCP,
        True,
    ),
    # pending pod
    (
        "pending pod is a target",
        {"podSelector": sel("pod=pend"), "ingress": []},
        "x/b",
        "x/pend",
        80,
        TCP,
        False,
    ),
    (
        "pending pod is a peer",
        ing({"from": [{"podSelector": sel("pod=pend")}]}),
        "x/pend",
        "x/a",
        80,
        TCP,
        True,
    ),
    # more edges
    (
        "named port not declared by target",
        {"podSelector": sel("pod=b"), "ingress": [{"ports": [{"port": "http"}]}]},
        "z/c",
        "x/b",
        80,
        TCP,
        False,
    ),
    (
        "egress ipBlock covers a pod IP",
        eg({"to": [{"ipBlock": {"cidr": "10.244.1.0/24"}}]}),
        "x/a",
        "z/c",
        80,
        TCP,
        True,
    ),
    (
        "ipBlock /0 except pod CIDR",
        ing({"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.1.0/24"]}}]}),
        "z/c",
        "x/a",
        80,
        TCP,
        False,
    ),
    (
        "ipBlock /0 except: outside still in",
        ing({"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.1.0/24"]}}]}),
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        True,
    ),
    (
        "both policyTypes, no egress rules: egress denied",
        {**XA, "policyTypes": ["Ingress", "Egress"]},
        "x/a",
        "z/c",
        80,
        TCP,
        False,
    ),
    (
        "SCTP endPort covers",
        ing({"ports": [{"protocol": "SCTP", "port": 80, "endPort": 82}]}),
        "z/c",
        "x/a",
        82,
        SCTP,
        True,
    ),
    (
        "SCTP range is not TCP",
        ing({"ports": [{"protocol": "SCTP", "port": 80, "endPort": 82}]}),
        "z/c",
        "x/a",
        81,
        TCP,
        False,
    ),
    (
        "policy in x does not isolate same-label pod in y",
        {**XA, "ingress": []},
        "z/c",
        "y/a",
        8080,
        TCP,
        True,
    ),
    # namespace scope
    (
        "policy in y does not select x pods",
        {"podSelector": {}, "ingress": []},
        "z/c",
        "x/a",
        80,
        TCP,
        True,
    ),
]


def _policy_key(name: str) -> str:
    return "y/p" if name.startswith(("policy in y", "named port two")) else "x/p"


def _end(key: str) -> Pod | str:
    return PODS.get(key, key)


def _check(state: Any, src: str, dst: str, port: int, proto: Protocol, want: bool) -> None:
    ref = ReferenceEvaluator(state).allowed(_end(src), _end(dst), port, proto)
    ruleset = RulesetEvaluator(state).allowed(_end(src), _end(dst), port, proto)
    assert (ref, ruleset) == (want, want)


@pytest.mark.parametrize(
    ("name", "spec", "src", "dst", "port", "proto", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_spec_case(
    name: str, spec: dict[str, Any], src: str, dst: str, port: int, proto: Protocol, want: bool
) -> None:
    state = make_state(*BASE, make_policy(_policy_key(name), spec))
    _check(state, src, dst, port, proto, want)


def test_namespace_labels_changing() -> None:
    policy = make_policy("x/p", ing({"from": [{"namespaceSelector": sel("team=blue")}]}))
    before = make_state(*BASE, policy)
    _check(before, "z/c", "x/a", 80, TCP, False)
    after = make_state(
        *[o for o in BASE if not (isinstance(o, Namespace) and o.name == "z")],
        make_ns("z", "ns=z", "team=blue"),
        policy,
    )
    _check(after, "z/c", "x/a", 80, TCP, True)


FAMILY_CASES: list[tuple[str, dict[str, Any], str, str, str, bool]] = [
    (
        "v4 ipBlock of dual-stack peer, v4 packet",
        eg({"to": [{"ipBlock": {"cidr": "10.244.1.11/32"}}]}),
        "x/a",
        "z/c",
        "v4",
        True,
    ),
    (
        "v4 ipBlock of dual-stack peer, v6 packet",
        eg({"to": [{"ipBlock": {"cidr": "10.244.1.11/32"}}]}),
        "x/a",
        "z/c",
        "v6",
        False,
    ),
    (
        "::/0 vs IPv4-only peer",
        ing({"from": [{"ipBlock": {"cidr": "::/0"}}]}),
        "y/v4",
        "x/a",
        "v4",
        False,
    ),
    (
        "pod selector peer matches every family",
        ing({"from": [{"podSelector": sel("pod=b")}]}),
        "x/b",
        "x/a",
        "v6",
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "spec", "src", "dst", "family", "want"), FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES]
)
def test_family_case(
    name: str, spec: dict[str, Any], src: str, dst: str, family: str, want: bool
) -> None:
    state = make_state(*BASE, make_policy("x/p", spec))
    fam = Family.V4 if family == "v4" else Family.V6
    ref = ReferenceEvaluator(state).allowed(_end(src), _end(dst), 80, TCP, family=fam)
    ruleset = RulesetEvaluator(state).allowed(_end(src), _end(dst), 80, TCP, family=fam)
    assert (ref, ruleset) == (want, want)


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("port 0", {"ports": [{"port": 0}]}),
    ("endPort without port", {"ports": [{"endPort": 90}]}),
    ("endPort with named port", {"ports": [{"port": "http", "endPort": 90}]}),
    (
        "except outside cidr",
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]},
    ),
    (
        "except equal to cidr",
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]},
    ),
    ("empty peer", {"from": [{}]}),
]


@pytest.mark.parametrize(("name", "rule"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_rule_fails_closed(name: str, rule: dict[str, Any]) -> None:
    """Invalid per pkg/apis/networking/validation: rejected, and never allows traffic."""
    from agent.core.validate import validate_policy
    from tests.builders import policy_dict

    assert validate_policy(policy_dict("x/p", ing(rule)))
    policy = make_policy("x/p", ing(rule))
    assert policy.errors
    _check(make_state(*BASE, policy), "x/b", "x/a", 80, TCP, False)


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("cidr with host bits", {"from": [{"ipBlock": {"cidr": "192.0.2.7/24"}}]}),
    (
        "except with host bits",
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.2.3/16"]}}]},
    ),
    ("endPort equal to port", {"ports": [{"port": 80, "endPort": 80}]}),
    ("port entry {}", {"ports": [{}]}),
    ("SCTP range", {"ports": [{"protocol": "SCTP", "port": 80, "endPort": 81}]}),
]


@pytest.mark.parametrize(("name", "rule"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_api_server_accepts(name: str, rule: dict[str, Any]) -> None:
    from agent.core.validate import validate_policy
    from tests.builders import policy_dict

    assert validate_policy(policy_dict("x/p", ing(rule))) == ()
    assert make_policy("x/p", ing(rule)).errors == ()


def _swap(state: ClusterState, *items: Namespace | Pod) -> ClusterState:
    """The same state with some namespaces/pods replaced (pods by UID)."""
    namespaces = dict(state.namespaces)
    pods = dict(state.pods)
    for item in items:
        if isinstance(item, Namespace):
            namespaces[item.name] = item
        else:
            pods[item.uid] = item
    return replace(state, namespaces=namespaces, pods=pods)


def test_incremental_follows_edge_case_changes() -> None:
    """Namespace relabel, Pending -> Succeeded, a new second IP, a renamed port: the
    incremental compiler (between full syncs) must give compile_ruleset's answer."""
    policies = (
        make_policy("x/p", ing({"from": [{"namespaceSelector": notin("env", "prod")}]})),
        make_policy("x/e", eg({"ports": [{"port": "http"}]})),
        make_policy(
            "y/q", {"podSelector": sel("pod=v4"), "ingress": [{"from": [{"podSelector": {}}]}]}
        ),
    )
    state = make_state(*BASE, *policies)
    steps = [
        _swap(state, make_ns("z", "ns=z", "env=prod")),
        _swap(state, replace(PODS["x/pend"], phase=PodPhase.SUCCEEDED)),
        _swap(state, replace(PODS["y/v4"], ips=("10.244.1.12", "fd00:10:244:1::c"))),
        _swap(state, replace(PODS["y/a"], ports=(ContainerPort(8081, TCP, "http"),))),
        _swap(state, replace(PODS["x/b"], ports=(ContainerPort(80, TCP, "http"),))),
    ]
    for node in ("node-0", "node-1"):
        options = CompileOptions()
        inc = IncrementalCompiler(node=node, options=options)
        inc.compile(state, full=True)
        for after in steps:
            assert inc.compile(after) == compile_ruleset(after, node=node, options=options)
            inc.compile(state)
    after, moved = steps[3], steps[3].pods[PODS["y/a"].uid]
    for port, want in ((8080, False), (8081, True)):
        ref = ReferenceEvaluator(after).allowed(PODS["x/a"], moved, port, TCP)
        assert (ref, RulesetEvaluator(after).allowed(PODS["x/a"], moved, port, TCP)) == (want, want)


DONE = replace(
    make_pod("y/done", "pod=done", ip="10.244.1.20", node="node-1"), phase=PodPhase.SUCCEEDED
)
REUSED = make_pod("y/new", "pod=new", ip="10.244.1.20", node="node-1")
PEND1 = replace(
    make_pod("y/pend1", "pod=pend1", ip="10.244.1.21", node="node-1"), phase=PodPhase.PENDING
)
HOST1 = replace(make_pod("y/h", "pod=h", ip="172.18.0.3", node="node-1"), host_network=True)
ANY_NS_POD = {"namespaceSelector": {}, "podSelector": sel("pod=new")}
EXTRA: list[tuple[str, dict[str, Any], Pod | str, Pod | str, bool]] = [
    # IP reuse: a finished pod's IP now held by a running pod; only the running one counts.
    (
        "reused IP: the running pod is the peer",
        ing({"from": [ANY_NS_POD]}),
        REUSED,
        PODS["x/a"],
        True,
    ),
    (
        "reused IP: the finished pod is no peer",
        ing({"from": [{"namespaceSelector": {}, "podSelector": sel("pod=done")}]}),
        REUSED,
        PODS["x/a"],
        False,
    ),
    (
        "Pending pod on another node is a peer",
        ing({"from": [{"namespaceSelector": {}, "podSelector": sel("pod=pend1")}]}),
        PEND1,
        PODS["x/a"],
        True,
    ),
    # "exception: traffic to and from the node where a Pod is running is always allowed"
    (
        "egress to own node address always allowed",
        eg({"to": [ALL_NS]}),
        PODS["x/a"],
        "172.18.0.2",
        True,
    ),
    ("egress to another node is not", eg({"to": [ALL_NS]}), PODS["x/a"], "172.18.0.3", False),
    ("hostNetwork pod is no selector peer", ing({"from": [ALL_NS]}), HOST1, PODS["x/a"], False),
    (
        "hostNetwork pod matches ipBlock of its node IP",
        ing({"from": [{"ipBlock": {"cidr": "172.18.0.3/32"}}]}),
        HOST1,
        PODS["x/a"],
        True,
    ),
    (
        "IPv4-mapped IPv6 ipBlock does not match IPv4",
        ing({"from": [{"ipBlock": {"cidr": "::ffff:10.244.1.0/120"}}]}),
        REUSED,
        PODS["x/a"],
        False,
    ),
]


@pytest.mark.parametrize(("name", "spec", "src", "dst", "want"), EXTRA, ids=[c[0] for c in EXTRA])
def test_extra_case(
    name: str, spec: dict[str, Any], src: Pod | str, dst: Pod | str, want: bool
) -> None:
    for order in ((DONE, REUSED), (REUSED, DONE)):  # the pod order must not matter
        state = make_state(*BASE, *order, PEND1, HOST1, make_policy("x/p", spec))
        ref = ReferenceEvaluator(state).allowed(src, dst, 80, TCP)
        assert (ref, RulesetEvaluator(state).allowed(src, dst, 80, TCP)) == (want, want)

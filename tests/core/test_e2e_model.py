"""The upstream netpol e2e model, evaluated by the reference evaluator.

Namespaces x, y, z labelled ns=<name>; pods a, b, c labelled pod=<name> in each,
serving 80 and 81 on TCP, UDP and SCTP with containerPorts named
serve-<port>-<proto> (as in kubernetes/test/e2e/network/netpol). Scenarios
follow the upstream suite (network_policy.go) and the examples of the
Kubernetes NetworkPolicy documentation, including label changes and policy
updates: each builds the expected reachability like upstream's `Reachability`
(start from all-allowed or all-blocked, then expect peers) and compares whole
truth tables.

Pod i (x/a, x/b, x/c, y/a, ...) lives on node-<i%2> at 10.244.<i%2>.<10+i//2>.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from agent.core.model import ClusterState, Node, Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.core.table import (
    Block,
    Case,
    TruthTable,
    compute_table,
    diff_tables,
    format_diff,
    format_table,
)
from tests.builders import make_ns, make_pod, make_policy, make_state, sel

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP
NAMESPACES = ("x", "y", "z")
NAMES = ("a", "b", "c")
KEYS = tuple(f"{ns}/{n}" for ns in NAMESPACES for n in NAMES)
ALL_CASES: tuple[Case, ...] = tuple((p, proto) for p in (80, 81) for proto in Protocol)
Spec = Mapping[str, Any]


def model(
    policies: Iterable[tuple[str, Spec]] = (),
    *,
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
    pod_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> ClusterState:
    """The model cluster; label overrides add labels to namespaces or pods."""
    ports = tuple(
        (port, proto.value, f"serve-{port}-{proto.value.lower()}")
        for port in (80, 81)
        for proto in Protocol
    )
    items: list[Any] = [
        Node(f"node-{i}", (f"172.18.0.{i + 2}",), (f"10.244.{i}.0/24",)) for i in (0, 1)
    ]
    for ns in NAMESPACES:
        extra = [f"{k}={v}" for k, v in (ns_labels or {}).get(ns, {}).items()]
        items.append(make_ns(ns, f"ns={ns}", *extra))
    for i, key in enumerate(KEYS):
        extra = [f"{k}={v}" for k, v in (pod_labels or {}).get(key, {}).items()]
        name = key.split("/")[1]
        ip = f"10.244.{i % 2}.{10 + i // 2}"
        items.append(make_pod(key, f"pod={name}", *extra, ip=ip, node=f"node-{i % 2}", ports=ports))
    items.extend(make_policy(k, s) for k, s in policies)
    return make_state(*items)


def _match(pattern: str, key: str) -> bool:
    ns, _, name = key.partition("/")
    pns, _, pname = pattern.partition("/")
    return pattern == "*" or (pns in ("*", ns) and pname in ("*", name))


class Reach:
    """Expected reachability, built like upstream's `Reachability` (self always allowed)."""

    def __init__(self, default: bool) -> None:
        self.cells = {(s, d): default for s in KEYS for d in KEYS}

    def expect(self, src: str, dst: str, value: bool) -> Reach:
        for s, d in self.cells:
            if _match(src, s) and _match(dst, d):
                self.cells[(s, d)] = value
        return self

    def to(self, dst: str, value: bool) -> Reach:
        return self.expect("*", dst, value)

    def from_(self, src: str, value: bool) -> Reach:
        return self.expect(src, "*", value)

    def table(self, cases: Iterable[Case]) -> TruthTable:
        rows = {s: {d: s == d or self.cells[(s, d)] for d in KEYS} for s in KEYS}
        return TruthTable(KEYS, tuple(Block(p, proto, rows) for p, proto in cases))


def check(state: ClusterState, expected: Mapping[Case, Reach]) -> None:
    """Compare the evaluator's table with the expected one, per case; readable diff on failure."""
    ev = ReferenceEvaluator(state)
    pods = [p for p in state.pods.values()]
    for case, reach in expected.items():
        actual = compute_table(ev.allowed, pods, [case])
        want = reach.table([case])
        diff = diff_tables(want, actual)
        assert diff.empty, f"\n{format_diff(diff)}\nactual:\n{format_table(actual)}"


def every(reach: Reach, cases: Iterable[Case] = ALL_CASES) -> dict[Case, Reach]:
    return dict.fromkeys(cases, reach)


def on_xa(**spec: Any) -> Spec:
    return {"podSelector": sel("pod=a"), **spec}


def ingress_xa(*peers: Any, ports: Any = None) -> tuple[str, Spec]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return ("x/allow-client-a", on_xa(ingress=[rule], policyTypes=["Ingress"]))


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


DENY_INGRESS_X = ("x/deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
DENY_ALL_X = ("x/deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})

# name -> (policies, state overrides, {case: expected reachability})
SCENARIOS: dict[str, tuple[list[tuple[str, Spec]], dict[str, Any], dict[Case, Reach]]] = {
    "no policies": ([], {}, every(Reach(True))),
    "default-deny-ingress": ([DENY_INGRESS_X], {}, every(Reach(True).to("x/*", False))),
    "default-deny-all": (
        [DENY_ALL_X],
        {},
        every(Reach(True).to("x/*", False).from_("x/*", False)),
    ),
    "allow-all ingress (ingress: [{}])": (
        [DENY_INGRESS_X, ("x/allow-all", {"podSelector": {}, "ingress": [{}]})],
        {},
        every(Reach(True)),
    ),
    "podSelector in the server namespace": (
        [ingress_xa({"podSelector": sel("pod=b")})],
        {},
        every(Reach(True).to("x/a", False).expect("x/b", "x/a", True)),
    ),
    "namespaceSelector": (
        [ingress_xa({"namespaceSelector": sel("ns=y")})],
        {},
        every(Reach(True).to("x/a", False).expect("y/*", "x/a", True)),
    ),
    "podSelector with matchExpressions": (
        [ingress_xa({"podSelector": expr("pod", "In", "b")})],
        {},
        every(Reach(True).to("x/a", False).expect("x/b", "x/a", True)),
    ),
    "namespaceSelector with matchExpressions": (
        [ingress_xa({"namespaceSelector": expr("ns", "In", "y")})],
        {},
        every(Reach(True).to("x/a", False).expect("y/*", "x/a", True)),
    ),
    "only from a different namespace (NotIn)": (
        [ingress_xa({"namespaceSelector": expr("ns", "NotIn", "x")})],
        {},
        every(Reach(True).to("x/a", False).expect("y/*", "x/a", True).expect("z/*", "x/a", True)),
    ),
    "podSelector OR namespaceSelector": (
        [
            ingress_xa(
                {"namespaceSelector": expr("ns", "NotIn", "x")}, {"podSelector": sel("pod=b")}
            )
        ],
        {},
        every(Reach(True).expect("x/c", "x/a", False)),
    ),
    "podSelector AND namespaceSelector": (
        [ingress_xa({"namespaceSelector": expr("ns", "NotIn", "x"), "podSelector": sel("pod=b")})],
        {},
        every(Reach(True).to("x/a", False).expect("y/b", "x/a", True).expect("z/b", "x/a", True)),
    ),
    "multiple podSelectors and namespaceSelectors": (
        [
            ingress_xa(
                {
                    "namespaceSelector": expr("ns", "NotIn", "x"),
                    "podSelector": expr("pod", "In", "b", "c"),
                }
            )
        ],
        {},
        every(
            Reach(True)
            .to("x/a", False)
            .expect("*/b", "x/a", True)
            .expect("*/c", "x/a", True)
            .expect("x/b", "x/a", False)
            .expect("x/c", "x/a", False)
        ),
    ),
    "ingress on one port": (
        [ingress_xa({"namespaceSelector": sel("ns=y")}, ports=[{"port": 81}])],
        {},
        {
            (80, TCP): Reach(True).to("x/a", False),
            (81, TCP): Reach(True).to("x/a", False).expect("y/*", "x/a", True),
            (81, UDP): Reach(True).to("x/a", False),
        },
    ),
    "ingress on one named port": (
        [ingress_xa(ports=[{"port": "serve-81-tcp"}])],
        {},
        {
            (80, TCP): Reach(True).to("x/a", False),
            (81, TCP): Reach(True),
            (81, UDP): Reach(True).to("x/a", False),
        },
    ),
    "named port with the wrong protocol matches nothing": (
        [ingress_xa(ports=[{"port": "serve-81-tcp", "protocol": "UDP"}])],
        {},
        every(Reach(True).to("x/a", False)),
    ),
    "ingress from a namespace on one named port": (
        [ingress_xa({"namespaceSelector": sel("ns=y")}, ports=[{"port": "serve-80-tcp"}])],
        {},
        {
            (80, TCP): Reach(True).to("x/a", False).expect("y/*", "x/a", True),
            (81, TCP): Reach(True).to("x/a", False),
        },
    ),
    "egress on one named port (resolved on the peer)": (
        [
            (
                "x/allow-egress",
                on_xa(egress=[{"ports": [{"port": "serve-80-tcp"}]}], policyTypes=["Egress"]),
            )
        ],
        {},
        {
            (80, TCP): Reach(True),
            (81, TCP): Reach(True).from_("x/a", False),
            (80, UDP): Reach(True).from_("x/a", False),
        },
    ),
    "endPort range": (
        [
            ingress_xa(
                {"namespaceSelector": sel("ns=y")},
                ports=[{"port": 80, "endPort": 81, "protocol": "UDP"}],
            )
        ],
        {},
        {
            (80, UDP): Reach(True).to("x/a", False).expect("y/*", "x/a", True),
            (81, UDP): Reach(True).to("x/a", False).expect("y/*", "x/a", True),
            (80, TCP): Reach(True).to("x/a", False),
        },
    ),
    "policy allowing SCTP isolates TCP and UDP": (
        [ingress_xa(ports=[{"protocol": "SCTP", "port": 81}])],
        {},
        {
            (81, SCTP): Reach(True),
            (80, SCTP): Reach(True).to("x/a", False),
            (81, TCP): Reach(True).to("x/a", False),
            (81, UDP): Reach(True).to("x/a", False),
        },
    ),
    "any port on one protocol": (
        [ingress_xa(ports=[{"protocol": "UDP"}])],
        {},
        {(80, UDP): Reach(True), (81, UDP): Reach(True), (80, TCP): Reach(True).to("x/a", False)},
    ),
    "multiple ingress policies: allow-all takes precedence": (
        [ingress_xa(ports=[{"port": 80}]), ("x/allow-all-to-a", on_xa(ingress=[{}]))],
        {},
        every(Reach(True)),
    ),
    "multiple egress policies: allow-all takes precedence": (
        [
            ("x/egress-80", on_xa(egress=[{"ports": [{"port": 80}]}], policyTypes=["Egress"])),
            ("x/egress-all", on_xa(egress=[{}], policyTypes=["Egress"])),
        ],
        {},
        every(Reach(True)),
    ),
    "stacked policies with overlapping podSelectors add up": (
        [
            (
                "x/from-y-80",
                on_xa(
                    ingress=[
                        {"from": [{"namespaceSelector": sel("ns=y")}], "ports": [{"port": 80}]}
                    ]
                ),
            ),
            (
                "x/from-z-81",
                {
                    "podSelector": expr("pod", "In", "a", "b"),
                    "ingress": [
                        {"from": [{"namespaceSelector": sel("ns=z")}], "ports": [{"port": 81}]}
                    ],
                },
            ),
        ],
        {},
        {
            (80, TCP): Reach(True).to("x/a", False).to("x/b", False).expect("y/*", "x/a", True),
            (81, TCP): Reach(True)
            .to("x/a", False)
            .to("x/b", False)
            .expect("z/*", "x/a", True)
            .expect("z/*", "x/b", True),
        },
    ),
    "egress to a namespace": (
        [
            (
                "x/egress-to-y",
                on_xa(
                    egress=[{"to": [{"namespaceSelector": sel("ns=y")}]}], policyTypes=["Egress"]
                ),
            )
        ],
        {},
        every(Reach(True).from_("x/a", False).expect("x/a", "y/*", True)),
    ),
    "deny egress from all pods of a namespace": (
        [("x/deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})],
        {},
        every(Reach(True).from_("x/*", False)),
    ),
    "client-side egress deny wins over server-side allow": (
        [
            ("x/deny-egress-a", on_xa(policyTypes=["Egress"])),
            ("y/allow-all", {"podSelector": {}, "ingress": [{}]}),
        ],
        {},
        every(Reach(True).from_("x/a", False)),
    ),
    "ingress and egress together": (
        [
            (
                "x/both",
                on_xa(
                    ingress=[{"from": [{"podSelector": sel("pod=b")}]}],
                    egress=[{"to": [{"namespaceSelector": sel("ns=y")}]}],
                ),
            )
        ],
        {},
        every(
            Reach(True)
            .to("x/a", False)
            .from_("x/a", False)
            .expect("x/b", "x/a", True)
            .expect("x/a", "y/*", True)
        ),
    ),
    "ingress and egress controlled independently": (
        [
            ("x/ingress-a", on_xa(ingress=[{"from": [{"podSelector": sel("pod=b")}]}])),
            (
                "x/egress-b",
                {
                    "podSelector": sel("pod=b"),
                    "egress": [{"to": [{"podSelector": sel("pod=a")}]}],
                    "policyTypes": ["Egress"],
                },
            ),
        ],
        {},
        every(Reach(True).to("x/a", False).from_("x/b", False).expect("x/b", "x/a", True)),
    ),
    "egress rules without policyTypes isolate ingress too": (
        [
            (
                "x/egress-b",
                {"podSelector": sel("pod=b"), "egress": [{"to": [{"podSelector": sel("pod=a")}]}]},
            )
        ],
        {},
        every(Reach(True).to("x/b", False).from_("x/b", False).expect("x/b", "x/a", True)),
    ),
    "egress: [] without policyTypes isolates ingress only": (
        [("x/odd", {"podSelector": sel("pod=a"), "egress": []})],
        {},
        every(Reach(True).to("x/a", False)),
    ),
    "ipBlock egress to a node's pod range": (
        [
            (
                "x/egress-cidr",
                on_xa(
                    egress=[{"to": [{"ipBlock": {"cidr": "10.244.1.0/24"}}]}],
                    policyTypes=["Egress"],
                ),
            )
        ],
        {},
        # odd pods (x/b, y/a, y/c, z/b) live on node-1's range
        every(
            Reach(True)
            .from_("x/a", False)
            .expect("x/a", "x/b", True)
            .expect("x/a", "y/a", True)
            .expect("x/a", "y/c", True)
            .expect("x/a", "z/b", True)
        ),
    ),
    "ipBlock except": (
        [
            (
                "x/egress-cidr",
                on_xa(
                    egress=[
                        {
                            "to": [
                                {"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.10/32"]}}
                            ]
                        }
                    ],
                    policyTypes=["Egress"],
                ),
            )
        ],
        {},
        every(
            Reach(True)
            .from_("x/a", False)
            .expect("x/a", "y/a", True)
            .expect("x/a", "y/c", True)
            .expect("x/a", "z/b", True)
        ),
    ),
    "an address in an except is allowed by another policy's cidr": (
        [
            (
                "x/egress-except",
                on_xa(
                    egress=[
                        {
                            "to": [
                                {"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.10/32"]}}
                            ]
                        }
                    ],
                    policyTypes=["Egress"],
                ),
            ),
            (
                "x/egress-exact",
                on_xa(
                    egress=[{"to": [{"ipBlock": {"cidr": "10.244.1.10/32"}}]}],
                    policyTypes=["Egress"],
                ),
            ),
        ],
        {},
        every(
            Reach(True)
            .from_("x/a", False)
            .expect("x/a", "x/b", True)
            .expect("x/a", "y/a", True)
            .expect("x/a", "y/c", True)
            .expect("x/a", "z/b", True)
        ),
    ),
    # label changes: the same policies over a changed state
    "updated pod label makes a pod a target": (
        [("x/isolate-target", {"podSelector": sel("target=isolated"), "policyTypes": ["Ingress"]})],
        {"pod_labels": {"x/a": {"target": "isolated"}}},
        every(Reach(True).to("x/a", False)),
    ),
    "before the pod label update nothing is isolated": (
        [("x/isolate-target", {"podSelector": sel("target=isolated"), "policyTypes": ["Ingress"]})],
        {},
        every(Reach(True)),
    ),
    "updated namespace label admits its pods": (
        [ingress_xa({"namespaceSelector": sel("ns2=updated")})],
        {"ns_labels": {"y": {"ns2": "updated"}}},
        every(Reach(True).to("x/a", False).expect("y/*", "x/a", True)),
    ),
    "updated pod label admits the pod": (
        [ingress_xa({"podSelector": sel("pod2=updated")})],
        {"pod_labels": {"x/b": {"pod2": "updated"}}},
        every(Reach(True).to("x/a", False).expect("x/b", "x/a", True)),
    ),
    "relabelled pod leaves a NotIn peer": (
        [ingress_xa({"podSelector": expr("role", "NotIn", "blocked")})],
        {"pod_labels": {"x/c": {"role": "blocked"}}},
        every(
            Reach(True)
            .expect("x/c", "x/a", False)
            .expect("y/*", "x/a", False)
            .expect("z/*", "x/a", False)
        ),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    policies, overrides, expected = SCENARIOS[name]
    check(model(policies, **overrides), expected)


def test_policy_update_and_delete() -> None:
    """A policy is updated (ports change) then deleted: tables follow each state."""
    v1 = ingress_xa({"namespaceSelector": sel("ns=y")}, ports=[{"port": 80}])
    check(
        model([v1]),
        {
            (80, TCP): Reach(True).to("x/a", False).expect("y/*", "x/a", True),
            (81, TCP): Reach(True).to("x/a", False),
        },
    )
    v2 = ingress_xa({"namespaceSelector": sel("ns=y")}, ports=[{"port": 81}])
    check(
        model([v2]),
        {
            (80, TCP): Reach(True).to("x/a", False),
            (81, TCP): Reach(True).to("x/a", False).expect("y/*", "x/a", True),
        },
    )
    check(model([]), every(Reach(True)))


def test_namespace_label_removed() -> None:
    """Removing a namespace's label revokes what it granted."""
    pol = ingress_xa({"namespaceSelector": sel("team=blue")})
    check(
        model([pol], ns_labels={"z": {"team": "blue"}}),
        every(Reach(True).to("x/a", False).expect("z/*", "x/a", True)),
    )
    check(model([pol]), every(Reach(True).to("x/a", False)))


def test_every_pair_in_both_directions_is_consistent() -> None:
    """The table equals allowed() per pair (a pod to itself always allowed)."""
    state = model([DENY_ALL_X, ingress_xa({"podSelector": sel("pod=b")})])
    ev = ReferenceEvaluator(state)
    pods = {p.key: p for p in state.pods.values()}
    table = compute_table(ev.allowed, pods.values(), [(80, TCP)])
    for s, d in itertools.product(KEYS, KEYS):
        assert table.blocks[0].allowed[s][d] == (s == d or ev.allowed(pods[s], pods[d], 80, TCP))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_memoized_path_agrees_with_the_spelled_out_path(name: str) -> None:
    """allowed() answers pod pairs from memos; explain() walks every rule: they must agree."""
    policies, overrides, _ = SCENARIOS[name]
    state = model(policies, **overrides)
    ev = ReferenceEvaluator(state)
    pods = list(state.pods.values())
    for case in ((80, TCP), (81, UDP), (81, SCTP)):
        for src, dst in itertools.product(pods, pods):
            fast = ev.allowed(src, dst, *case)
            assert fast == ev.explain(src, dst, *case).allowed, (src.key, dst.key, case)

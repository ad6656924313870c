"""ClusterNetworkPolicy tiers in the reference evaluator: one named scenario per rule of
the v1alpha2 API (tiers, priorities, rule order, Pass, each peer kind, named ports,
ranges, both families, fail closed).

Cluster (address plan of tests/conftest.py):

    node-0  172.18.0.2, fd00:172:18::2  role=infra   podCIDR 10.244.0.0/24
    node-1  172.18.0.3                  role=worker  podCIDR 10.244.1.0/24
    x/a     pod=a   10.244.0.10 fd00:10:244::a    node-0  http=80/TCP dns=53/UDP
    x/b     pod=b   10.244.0.11 fd00:10:244::b    node-0  http=81/TCP
    y/a     pod=a   10.244.1.10 fd00:10:244:1::a  node-1  http=80/TCP
    y/c     pod=c   10.244.1.11                   node-1
    x/host  hostNetwork 172.18.0.2                node-0
    y/host  hostNetwork 172.18.0.3                node-1
    (the pods of tests/core/test_semantics.py, plus y/host)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agent.core.explain import render_explanation
from agent.core.model import Family, Labels, Namespace, NetworkPolicy, Node, Pod, Protocol
from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy
from agent.core.semantics import ReferenceEvaluator
from agent.core.trace import RulesetEvaluator
from tests.builders import cnp_rule, make_cnp, make_ns, make_pod, make_policy, make_state, sel
from tests.core.test_semantics import PODS as NP_PODS

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP
PODS = {
    **NP_PODS,
    "y/host": replace(
        make_pod("y/host", "pod=host", ip="172.18.0.3", node="node-1"), host_network=True
    ),
}
BASE: tuple[Namespace | Node | Pod, ...] = (
    make_ns("x", "ns=x"),
    make_ns("y", "ns=y"),
    Node(
        "node-0",
        ("172.18.0.2", "fd00:172:18::2"),
        ("10.244.0.0/24",),
        Labels({"role": "infra"}),
    ),
    Node("node-1", ("172.18.0.3",), ("10.244.1.0/24",), Labels({"role": "worker"})),
    *PODS.values(),
)

NS_X = {"namespaces": sel("ns=x")}
NS_Y = {"namespaces": sel("ns=y")}
ALL_NS: dict[str, Any] = {"namespaces": {}}
POD_XA = {"pods": {"namespaceSelector": sel("ns=x"), "podSelector": sel("pod=a")}}
PODS_A = {"pods": {"podSelector": sel("pod=a")}}  # namespaceSelector absent: every namespace
DENY_ALL_X = make_policy("x/deny", {"podSelector": {}})
ALLOW_ALL_X = make_policy("x/allow-all", {"podSelector": {}, "ingress": [{}]})
DENY_EGRESS_Y = make_policy("y/deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})


def tcp(number: int) -> dict[str, Any]:
    return {"tcp": {"destinationPort": {"number": number}}}


def tcp_range(start: int, end: int) -> dict[str, Any]:
    return {"tcp": {"destinationPort": {"range": {"start": start, "end": end}}}}


def admin(name: str, *rules: dict[str, Any], priority: int = 10, **kw: Any) -> ClusterNetworkPolicy:
    """An Admin policy on namespace x by default, its rules ingress unless `egress=`."""
    kw.setdefault("subject", NS_X)
    if "egress" not in kw:
        kw["ingress"] = list(rules)
    return make_cnp(name, tier="Admin", priority=priority, **kw)


def baseline(
    name: str, *rules: dict[str, Any], priority: int = 10, **kw: Any
) -> ClusterNetworkPolicy:
    kw.setdefault("subject", NS_X)
    if "egress" not in kw:
        kw["ingress"] = list(rules)
    return make_cnp(name, tier="Baseline", priority=priority, **kw)


Item = ClusterNetworkPolicy | NetworkPolicy
# (id, objects, src, dst, port, protocol, family, expected)
CASES: list[tuple[str, tuple[Item, ...], str, str, int, Protocol, Family | None, bool]] = [
    ("no policies: allowed", (), "y/a", "x/a", 80, TCP, None, True),
    (
        "Admin Deny from all namespaces",
        (admin("d", cnp_rule("Deny", ALL_NS)),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Admin Deny: a NetworkPolicy allowing everything cannot override it",
        (admin("d", cnp_rule("Deny", NS_Y)), ALLOW_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Admin Accept: a NetworkPolicy denying everything cannot override it",
        (admin("a", cnp_rule("Accept", NS_Y)), DENY_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Admin Accept egress: the destination's ingress still applies",
        (admin("a", egress=[cnp_rule("Accept", NS_X, to=True)], subject=NS_Y), DENY_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Admin Accept egress skips the source's egress NetworkPolicy",
        (admin("a", egress=[cnp_rule("Accept", NS_X, to=True)], subject=NS_Y), DENY_EGRESS_Y),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Admin Deny egress",
        (admin("d", egress=[cnp_rule("Deny", POD_XA, to=True)], subject=NS_Y),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Admin: only the subject's namespace is affected",
        (admin("d", cnp_rule("Deny", ALL_NS)),),
        "x/a",
        "y/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Admin subject pods: the pod selector narrows it (x/b is not a subject)",
        (admin("d", cnp_rule("Deny", ALL_NS), subject=POD_XA),),
        "y/a",
        "x/b",
        81,
        TCP,
        None,
        True,
    ),
    (
        "Admin subject pods: the selected pod",
        (admin("d", cnp_rule("Deny", ALL_NS), subject=POD_XA),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "priority: lower value first (Accept 5 before Deny 10)",
        (
            admin("z-accept", cnp_rule("Accept", NS_Y), priority=5),
            admin("a-deny", cnp_rule("Deny", NS_Y)),
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "priority: lower value first (Deny 5 before Accept 10)",
        (
            admin("z-deny", cnp_rule("Deny", NS_Y), priority=5),
            admin("a-accept", cnp_rule("Accept", NS_Y)),
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "equal priority: our tie-break is the policy name",
        (admin("b-deny", cnp_rule("Deny", NS_Y)), admin("a-accept", cnp_rule("Accept", NS_Y))),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "rule order: the first matching rule decides (Accept, then Deny)",
        (admin("r", cnp_rule("Accept", PODS_A), cnp_rule("Deny", ALL_NS)),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "rule order: a rule that does not match is skipped",
        (admin("r", cnp_rule("Accept", PODS_A), cnp_rule("Deny", ALL_NS)),),
        "y/c",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "rule order: the first matching rule decides (Deny, then Accept)",
        (admin("r", cnp_rule("Deny", ALL_NS), cnp_rule("Accept", PODS_A)),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Pass skips the rest of the Admin tier (a later Deny): not isolated, allowed",
        (admin("p", cnp_rule("Pass", NS_Y), priority=1), admin("d", cnp_rule("Deny", ALL_NS))),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Pass skips later rules of its own policy too",
        (admin("p", cnp_rule("Pass", NS_Y), cnp_rule("Deny", ALL_NS)),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Pass: the NetworkPolicy decides (it blocks)",
        (admin("p", cnp_rule("Pass", NS_Y)), DENY_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Pass: no NetworkPolicy isolates, the Baseline tier decides (Deny)",
        (admin("p", cnp_rule("Pass", NS_Y)), baseline("b", cnp_rule("Deny", ALL_NS))),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Baseline Deny applies when no NetworkPolicy isolates",
        (baseline("b", cnp_rule("Deny", ALL_NS)),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Baseline Deny is overridden by a NetworkPolicy that isolates and allows",
        (baseline("b", cnp_rule("Deny", ALL_NS)), ALLOW_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Baseline Accept does not open a pod a NetworkPolicy isolates",
        (baseline("b", cnp_rule("Accept", ALL_NS)), DENY_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Baseline: an egress-only NetworkPolicy does not isolate ingress",
        (
            baseline("b", cnp_rule("Deny", ALL_NS)),
            make_policy("x/egress", {"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Baseline: an audited NetworkPolicy isolates nothing, so Baseline still decides",
        (baseline("b", cnp_rule("Deny", ALL_NS)), replace(ALLOW_ALL_X, audit=True)),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "Baseline Pass skips the rest of the Baseline tier: allowed",
        (
            baseline("p", cnp_rule("Pass", NS_Y), priority=1),
            baseline("d", cnp_rule("Deny", ALL_NS)),
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Baseline priority: lower value first",
        (
            baseline("a", cnp_rule("Accept", NS_Y), priority=1),
            baseline("d", cnp_rule("Deny", ALL_NS)),
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "Admin Accept beats Baseline Deny",
        (admin("a", cnp_rule("Accept", NS_Y)), baseline("b", cnp_rule("Deny", ALL_NS))),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "peer pods: namespace AND pod selector (y/a is not in x)",
        (admin("d", cnp_rule("Deny", POD_XA), subject=NS_Y),),
        "x/a",
        "y/c",
        80,
        TCP,
        None,
        False,
    ),
    (
        "peer pods: a pod of another namespace does not match",
        (admin("d", cnp_rule("Deny", POD_XA), subject=NS_Y),),
        "x/b",
        "y/c",
        80,
        TCP,
        None,
        True,
    ),
    (
        "peer pods without namespaceSelector: every namespace",
        (admin("d", cnp_rule("Deny", PODS_A)),),
        "y/a",
        "x/b",
        81,
        TCP,
        None,
        False,
    ),
    (
        "peer namespaces: an external address is not a pod",
        (admin("d", cnp_rule("Deny", ALL_NS)),),
        "192.0.2.1",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "peer namespaces: a hostNetwork pod is not a peer",
        (admin("d", cnp_rule("Deny", ALL_NS)),),
        "y/host",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "hostNetwork pods are never subjects",
        (admin("d", cnp_rule("Deny", ALL_NS), subject=NS_Y),),
        "x/a",
        "y/host",
        80,
        TCP,
        None,
        True,
    ),
    (
        "networks: a pod address inside the CIDR",
        (admin("d", egress=[cnp_rule("Deny", {"networks": ["10.244.1.0/24"]}, to=True)]),),
        "x/a",
        "y/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "networks: outside the CIDR",
        (admin("d", egress=[cnp_rule("Deny", {"networks": ["10.244.1.0/24"]}, to=True)]),),
        "x/a",
        "x/b",
        81,
        TCP,
        None,
        True,
    ),
    (
        "networks: an external address",
        (admin("d", egress=[cnp_rule("Deny", {"networks": ["192.0.2.0/24"]}, to=True)]),),
        "x/a",
        "192.0.2.9",
        443,
        TCP,
        None,
        False,
    ),
    (
        "networks: IPv6 CIDR, IPv6 traffic",
        (admin("d", egress=[cnp_rule("Deny", {"networks": ["fd00:10:244::/64"]}, to=True)]),),
        "x/a",
        "x/b",
        81,
        TCP,
        Family.V6,
        False,
    ),
    (
        "networks: IPv6 CIDR does not match IPv4 traffic",
        (admin("d", egress=[cnp_rule("Deny", {"networks": ["fd00:10:244::/64"]}, to=True)]),),
        "x/a",
        "x/b",
        81,
        TCP,
        Family.V4,
        True,
    ),
    (
        "networks: 0.0.0.0/0 does not match IPv6 traffic",
        (admin("d", egress=[cnp_rule("Deny", {"networks": ["0.0.0.0/0"]}, to=True)]),),
        "x/a",
        "y/a",
        80,
        TCP,
        Family.V6,
        True,
    ),
    (
        "nodes: another node's address, selected by label",
        (admin("d", egress=[cnp_rule("Deny", {"nodes": sel("role=worker")}, to=True)]),),
        "x/a",
        "172.18.0.3",
        10250,
        TCP,
        None,
        False,
    ),
    (
        "nodes: a hostNetwork pod has its node's address",
        (admin("d", egress=[cnp_rule("Deny", {"nodes": {}}, to=True)]),),
        "x/a",
        "y/host",
        10250,
        TCP,
        None,
        False,
    ),
    (
        "nodes: a node the selector does not pick",
        (
            admin(
                "d", egress=[cnp_rule("Deny", {"nodes": sel("role=infra")}, to=True)], subject=NS_Y
            ),
        ),
        "y/a",
        "172.18.0.3",
        10250,
        TCP,
        None,
        True,
    ),
    (
        "nodes: pod addresses are not node addresses",
        (admin("d", egress=[cnp_rule("Deny", {"nodes": {}}, to=True)]),),
        "x/a",
        "y/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "nodes: the pod's own node is always reachable (our choice, see docs)",
        (admin("d", egress=[cnp_rule("Deny", {"nodes": {}}, to=True)]),),
        "x/a",
        "172.18.0.2",
        10250,
        TCP,
        None,
        True,
    ),
    (
        "protocols: port number",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[tcp(80)])),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "protocols: another port",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[tcp(80)])),),
        "y/a",
        "x/a",
        53,
        UDP,
        None,
        True,
    ),
    (
        "protocols: the protocol must match too",
        (
            admin(
                "d",
                cnp_rule("Deny", ALL_NS, protocols=[{"udp": {"destinationPort": {"number": 80}}}]),
            ),
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "protocols: SCTP",
        (
            admin(
                "d",
                cnp_rule("Deny", ALL_NS, protocols=[{"sctp": {"destinationPort": {"number": 80}}}]),
            ),
        ),
        "y/a",
        "x/a",
        80,
        SCTP,
        None,
        False,
    ),
    (
        "protocols: range start is inclusive",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[tcp_range(80, 90)])),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "protocols: range end is inclusive",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[tcp_range(70, 80)])),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "protocols: outside the range",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[tcp_range(81, 90)])),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "protocols: any entry may match",
        (
            admin(
                "d",
                cnp_rule(
                    "Deny", ALL_NS, protocols=[tcp(1), {"udp": {"destinationPort": {"number": 53}}}]
                ),
            ),
        ),
        "y/a",
        "x/a",
        53,
        UDP,
        None,
        False,
    ),
    (
        "named port, ingress: resolved on the destination (x/a http=80)",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[{"destinationNamedPort": "http"}])),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "named port, ingress: x/b's http is 81, not 80",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[{"destinationNamedPort": "http"}])),),
        "y/a",
        "x/b",
        80,
        TCP,
        None,
        True,
    ),
    (
        "named port, ingress: name AND protocol (dns is UDP)",
        (admin("d", cnp_rule("Deny", ALL_NS, protocols=[{"destinationNamedPort": "dns"}])),),
        "y/a",
        "x/a",
        53,
        TCP,
        None,
        True,
    ),
    (
        "named port, egress: resolved on each destination pod",
        (
            admin(
                "d",
                egress=[
                    cnp_rule("Deny", ALL_NS, to=True, protocols=[{"destinationNamedPort": "http"}])
                ],
            ),
        ),
        "x/a",
        "x/b",
        81,
        TCP,
        None,
        False,
    ),
    (
        "named port, egress: the destination has no such port",
        (
            admin(
                "d",
                egress=[
                    cnp_rule("Deny", ALL_NS, to=True, protocols=[{"destinationNamedPort": "http"}])
                ],
            ),
        ),
        "x/a",
        "y/c",
        80,
        TCP,
        None,
        True,
    ),
    (
        "IPv6 pod to pod: Admin Deny applies to both families",
        (admin("d", cnp_rule("Deny", NS_Y)),),
        "y/a",
        "x/a",
        80,
        TCP,
        Family.V6,
        False,
    ),
    (
        "fail closed: an invalid Deny rule denies everything",
        (admin("d", cnp_rule("Deny", {"namespaces": {}, "pods": {"podSelector": {}}})),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "fail closed: an invalid Pass rule denies everything",
        (admin("d", cnp_rule("Pass", {})),),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "fail closed: an invalid Accept rule matches nothing",
        (admin("a", cnp_rule("Accept", {"namespaces": {}, "bogus": 1})), DENY_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "fail closed: other rules of the policy still work",
        (admin("a", cnp_rule("Accept", {"bogus": 1}), cnp_rule("Accept", NS_Y)), DENY_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        True,
    ),
    (
        "fail closed: an unsupported domainNames peer in an Accept rule matches nothing",
        (
            admin(
                "a",
                egress=[cnp_rule("Accept", {"domainNames": ["example.com"]}, to=True)],
                subject=NS_Y,
            ),
            DENY_EGRESS_Y,
        ),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "fail closed: a policy-level error denies the subject's traffic, even in Baseline",
        (baseline("b", cnp_rule("Accept", NS_Y), priority=5000), ALLOW_ALL_X),
        "y/a",
        "x/a",
        80,
        TCP,
        None,
        False,
    ),
    (
        "fail closed: an unreadable subject makes every pod a subject",
        (
            admin(
                "d",
                cnp_rule("Accept", NS_Y),
                subject={"namespaces": {}, "pods": {"podSelector": {}}},
            ),
        ),
        "x/a",
        "y/a",
        80,
        TCP,
        None,
        False,
    ),
]


@pytest.mark.parametrize("engine", ["reference", "ruleset"])
@pytest.mark.parametrize(
    ("objects", "src", "dst", "port", "protocol", "family", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_tiers(
    engine: str,
    objects: tuple[Item, ...],
    src: str,
    dst: str,
    port: int,
    protocol: Protocol,
    family: Family | None,
    expected: bool,
) -> None:
    state = make_state(*BASE, *objects)
    s: Pod | str = PODS[src] if "/" in src else src
    d: Pod | str = PODS[dst] if "/" in dst else dst
    if engine == "ruleset":  # the compiled tiers, traced through every node's ruleset
        rules = RulesetEvaluator(state)
        got = rules.allowed(s, d, port, protocol, family=family)
        traces = rules.traces(s, d, port, protocol, family=family) or []
        assert got is expected, "\n".join(f"[{node}] {t}" for node, t in traces)
        return
    evaluator = ReferenceEvaluator(state)
    explanation = evaluator.explain(s, d, port, protocol, family=family)
    assert explanation.allowed is expected, render_explanation(explanation)
    # The memoized fast path (truth tables) answers the same.
    assert evaluator.allowed(s, d, port, protocol, family=family) is expected


def test_explain_names_tier_policy_rule_and_action() -> None:
    objects = (
        admin("delegate", cnp_rule("Pass", NS_Y, name="owners-decide"), priority=1),
        admin("guard", cnp_rule("Deny", ALL_NS, name="deny-rest")),
        baseline(
            "floor", cnp_rule("Deny", ALL_NS, name="default-deny", protocols=[tcp_range(1, 1024)])
        ),
    )
    evaluator = ReferenceEvaluator(make_state(*BASE, *objects))
    text = render_explanation(evaluator.explain(PODS["y/a"], PODS["x/a"], 80, TCP))
    assert (
        "Admin tier: passed on by ClusterNetworkPolicy delegate (priority 1) ingress rule 0" in text
    )
    assert '"owners-decide": Pass; peer 0: namespaces ns=y' in text
    assert (
        'Baseline tier: denied by ClusterNetworkPolicy floor (priority 10) ingress rule 0 "default-deny": '
        "Deny; peer 0: namespaces <all>; ports 1-1024/TCP" in text
    )
    text = render_explanation(evaluator.explain(PODS["x/b"], PODS["x/a"], 80, TCP))
    assert (
        'Admin tier: denied by ClusterNetworkPolicy guard (priority 10) ingress rule 0 "deny-rest"'
        in text
    )
    assert "NetworkPolicies and the Baseline tier are not consulted" in text
    assert text.startswith("x/b -> x/a 80/TCP: BLOCKED")


def test_explain_named_port_and_failed_rule() -> None:
    named = admin("n", cnp_rule("Accept", ALL_NS, protocols=[{"destinationNamedPort": "http"}]))
    broken = admin("broken", cnp_rule("Deny", {}), priority=20)
    evaluator = ReferenceEvaluator(make_state(*BASE, named, broken))
    text = render_explanation(evaluator.explain(PODS["y/a"], PODS["x/a"], 80, TCP))
    assert "named port http (= 80/TCP on x/a)" in text
    text = render_explanation(evaluator.explain(PODS["y/a"], PODS["x/a"], 53, UDP))
    assert "ClusterNetworkPolicy broken (INVALID: failed closed)" in text
    assert "everything (the rule failed closed)" in text


def test_truth_table_agrees_with_explain() -> None:
    """Every cell of the memoized path equals the plain walk, across a mixed state."""
    objects = (
        admin("p", cnp_rule("Pass", NS_Y), priority=1),
        admin("d", cnp_rule("Deny", PODS_A, protocols=[tcp(80)]), cnp_rule("Accept", ALL_NS)),
        admin(
            "e", egress=[cnp_rule("Deny", {"networks": ["10.244.0.0/24"]}, to=True)], subject=NS_Y
        ),
        baseline("b", cnp_rule("Deny", ALL_NS), subject={"namespaces": {}}),
        make_policy(
            "y/allow", {"podSelector": sel("pod=a"), "ingress": [{"from": [{"podSelector": {}}]}]}
        ),
    )
    evaluator = ReferenceEvaluator(make_state(*BASE, *objects))
    pods = [p for p in PODS.values() if p.is_networked]
    for port, proto in ((80, TCP), (81, TCP), (53, UDP)):
        for s in pods:
            for d in pods:
                if s is d:
                    continue
                fast = evaluator.allowed(s, d, port, proto)
                assert fast is evaluator.explain(s, d, port, proto).allowed, (s.key, d.key, port)

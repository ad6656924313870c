"""Golden payloads for small scenarios, plus the structural lint on each.

The golden files hold what `netpol-agent compile` prints: the sets, then the
filter table per family, chains sorted by name. A change in layout shows up as
a readable diff; regenerate deliberately with NPA_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.model import Family, NetworkPolicy
from agent.core.render import plan
from agent.core.rulelint import lint
from agent.core.ruleset import Ruleset
from tests.builders import sel
from tests.dataplane.cluster import compiled, policy, state
from tests.dataplane.symbols import assert_golden

V4, V6 = Family.V4, Family.V6


def _render(rs: Ruleset) -> str:
    parts = [rs.render_sets()]
    for family in sorted(rs.tables):
        parts.append(f"# IPv{int(family)}\n" + rs.tables[family].render())
    return "\n".join(parts)


SCENARIOS: dict[str, tuple[list[NetworkPolicy], dict[str, Any]]] = {
    "no-policies": ([], {}),
    "deny-ingress-x": ([policy("x/deny", {"podSelector": {}})], {}),
    "allow-b-to-a-80": (
        [
            policy(
                "x/allow",
                {
                    "podSelector": sel("pod=a"),
                    "ingress": [{"from": [{"podSelector": sel("pod=b")}], "ports": [{"port": 80}]}],
                },
            )
        ],
        {},
    ),
    "egress-named-port-and-ipblock": (
        [
            policy(
                "x/egress",
                {
                    "podSelector": sel("pod=a"),
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"namespaceSelector": sel("ns=y")}],
                            "ports": [{"port": "serve-80-tcp"}],
                        },
                        {
                            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                            "ports": [{"protocol": "UDP", "port": 53}],
                        },
                    ],
                },
            )
        ],
        {},
    ),
    "sctp-range-from-namespace": (
        [
            policy(
                "x/sctp",
                {
                    "podSelector": {},
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": sel("ns=y"), "podSelector": sel("pod=c")}
                            ],
                            "ports": [{"protocol": "SCTP", "port": 80, "endPort": 81}],
                        }
                    ],
                },
            )
        ],
        {},
    ),
    "dual-stack-reject": (
        [
            policy(
                "x/allow",
                {
                    "podSelector": sel("pod=a"),
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": sel("pod=b")}]}],
                    "egress": [{"to": [{"ipBlock": {"cidr": "fd00::/8"}}]}],
                },
            )
        ],
        {"families": (V4, V6), "drop_action": "reject", "allow_cidrs": ("192.0.2.0/24",)},
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name: str) -> None:
    policies, options = SCENARIOS[name]
    rs = compiled(state(*policies), **options)
    assert lint(rs) == []
    assert_golden(name, _render(rs))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_full_plan_writes_everything_and_a_second_plan_is_empty(name: str) -> None:
    policies, options = SCENARIOS[name]
    rs = compiled(state(*policies), **options)
    full = plan(None, rs)
    assert full.full
    assert full.counts.chains_written == sum(len(t.chains) for t in rs.tables.values())
    assert full.counts.sets_created == len(rs.sets)
    assert plan(rs, rs).empty


def test_nothing_isolated_means_conntrack_rules_only() -> None:
    rs = compiled(state())
    table = rs.table(V4)
    assert [c.name for c in table.chains] == ["NPA-FORWARD", "NPA-INPUT", "NPA-OUTPUT"]
    assert table.rule_count() == 4
    assert rs.sets == {}


def test_pod_chains_only_for_isolated_directions() -> None:
    rs = compiled(state(policy("x/deny", {"podSelector": sel("pod=a")})))
    names = [c.name for c in rs.table(V4).chains]
    assert sum(n.startswith("NPA-I-") for n in names) == 1  # x/a ingress only
    assert not any(n.startswith("NPA-E-") for n in names)
    assert "NPA-DROP-INGRESS" in names and "NPA-DROP-EGRESS" not in names


def test_one_policy_chain_shared_by_the_pods_it_selects() -> None:
    rs = compiled(
        state(
            policy(
                "x/web",
                {"podSelector": {}, "ingress": [{"from": [{"podSelector": sel("pod=c")}]}]},
            )
        )
    )
    table = rs.table(V4)
    policy_chains = [c for c in table.chains if c.name.startswith("NPA-PI-")]
    assert len(policy_chains) == 1
    jumps = [
        r
        for c in table.chains
        if c.name.startswith("NPA-I-")
        for r in c.rules
        if r.target.chain == policy_chains[0].name
    ]
    assert len(jumps) == 2  # x/a and x/b are local to node-0


def test_a_policy_that_allows_nothing_gets_no_chain() -> None:
    rs = compiled(
        state(
            policy(
                "x/v6only",
                {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}]},
            )
        )
    )
    assert not any(c.name.startswith("NPA-PI-") for c in rs.table(V4).chains)
    assert lint(rs) == []


def test_names_stay_within_kernel_limits() -> None:
    long_ns = "n" * 63
    rs = compiled(
        state(
            policy(f"{long_ns}/{'p' * 200}", {"podSelector": {}}),
            policy("x/deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        )
    )
    assert lint(rs) == []


def test_ipv6_neighbour_discovery_passes_before_the_conntrack_head() -> None:
    rs = compiled(state(policy("x/deny", {"podSelector": {}})), families=(V4, V6))
    for name, target in (
        ("NPA-FORWARD", "ACCEPT"),
        ("NPA-INPUT", "RETURN"),
        ("NPA-OUTPUT", "RETURN"),
    ):
        chain = rs.table(V6).chain(name)
        assert chain is not None
        head = [r.spec() for r in chain.rules[:4]]
        assert head == [
            f'-p ipv6-icmp -m comment --comment "IPv6 neighbour discovery" '
            f"-m icmp6 --icmpv6-type {t} -j {target}"
            for t in (133, 134, 135, 136)
        ]
    assert "icmp6" not in rs.table(V4).render()

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


def test_rules_never_follow_pods_or_policies() -> None:
    nothing = compiled(state())
    some = compiled(state(policy("x/deny", {"podSelector": sel("pod=a")})))
    assert nothing.table(V4) == some.table(V4)
    assert len(nothing.table(V4).chains) == 9 and nothing.table(V4).rule_count() == 28


def _members(rs: Ruleset, description: str) -> frozenset[str]:
    (found,) = [s for s in rs.sets.values() if s.description.startswith(description)]
    return found.members


def test_gate_sets_hold_the_pods_isolated_per_direction() -> None:
    rs = compiled(state(policy("x/deny", {"podSelector": sel("pod=a")})))
    assert _members(rs, "local pods a policy isolates for ingress (") == {"10.244.0.10"}
    assert _members(rs, "local pods a policy isolates for egress (") == frozenset()
    assert _members(rs, "local pods a policy isolates for ingress:") == {
        '10.244.0.10 comment "x/a"'
    }


def test_a_policy_gives_entries_to_each_local_pod_it_selects() -> None:
    rs = compiled(
        state(
            policy(
                "x/web",
                {"podSelector": {}, "ingress": [{"from": [{"podSelector": sel("pod=c")}]}]},
            )
        )
    )
    # x/a and x/b are local to node-0; x/c (10.244.1.10) is the peer: no ports, so a
    # pair rule matches the peer's set and the local pods allowed with it
    assert _members(rs, "local pods allowed ingress on every port") == {
        "10.244.0.10",
        "10.244.0.11",
    }
    assert _members(rs, "pods pod=c in namespace x") == {"10.244.1.10"}


def test_a_policy_that_allows_nothing_here_gives_no_entry() -> None:
    rs = compiled(
        state(
            policy(
                "x/v6only",
                {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}]},
            )
        )
    )
    assert not any(s.startswith("npa-l4") for s in rs.sets)  # no v4 block: no pair rule
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

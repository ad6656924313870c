"""The Applier against a real kernel: incremental == full, failures, tampering, adoption, counters.

Each test runs the Applier inside a fresh scratch namespace (standing in for a
node) and compares normalised `iptables-save` output, for every backend.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from typing import Any

import pytest

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.errors import ApplyError
from agent.core.model import ClusterState, Family, Node
from agent.core.ruleset import Rule, Ruleset, SetMatch, Table, TargetKind
from agent.core.ruleset import Target as RuleTarget
from agent.dataplane.applier import Applier, parse_counters
from agent.dataplane.backend import select_backend
from agent.sandbox import netns
from agent.sandbox.setns import inside
from tests.builders import make_ns, make_pod, make_policy, make_state, sel
from tests.kernel.harness import kernel_node
from tests.kernel.kit import (
    BACKEND_NAMES,
    FAMILIES,
    assert_not_host,
    foreign_rules,
    ipset_names,
    saved,
)

pytestmark = pytest.mark.kernel

NODE = Node("node-0", ("172.18.0.2", "fd00:172:18::2"), ("10.244.0.0/24", "fd00:10:244::/64"))
POLICIES: dict[str, dict[str, Any]] = {
    "x/deny": {"podSelector": {}, "policyTypes": ["Ingress"]},
    "x/b-from-a": {
        "podSelector": sel("pod=b"),
        "ingress": [{"from": [{"podSelector": sel("pod=a")}], "ports": [{"port": 80}]}],
    },
    "y/egress": {
        "podSelector": sel("pod=a"),
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"namespaceSelector": sel("ns=x")}]},
            {"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]},
        ],
    },
    "y/named": {"podSelector": sel("pod=b"), "ingress": [{"ports": [{"port": "http"}]}]},
}


def state(*policy_keys: str, relabel: bool = False, extra_pod: bool = False) -> ClusterState:
    pods = [
        make_pod("x/a", "pod=a" if not relabel else "pod=z", ip=("10.244.0.10", "fd00:10:244::a")),
        make_pod(
            "x/b", "pod=b", ip=("10.244.0.11", "fd00:10:244::b"), ports=((80, "TCP", "http"),)
        ),
        make_pod("y/a", "pod=a", ip=("10.244.0.12", "fd00:10:244::c")),
        make_pod(
            "y/b", "pod=b", ip=("10.244.0.13", "fd00:10:244::d"), ports=((81, "TCP", "http"),)
        ),
        make_pod("x/c", "pod=a", ip=("10.244.1.10", "fd00:10:244:1::a"), node="node-1"),
    ]
    if extra_pod:
        pods.append(make_pod("x/d", "pod=a", ip=("10.244.1.11", "fd00:10:244:1::b"), node="node-1"))
    return make_state(
        make_ns("x", "ns=x"),
        make_ns("y", "ns=y"),
        NODE,
        *pods,
        *(make_policy(k, POLICIES[k]) for k in policy_keys),
    )


def compiled(st: ClusterState) -> Ruleset:
    return compile_ruleset(st, node="node-0", options=CompileOptions())


_SET_NOISE = re.compile(r" (initval 0x[0-9a-f]+|hashsize \d+|bucketsize \d+)")


def snapshot(mode: str) -> dict[str, Any]:
    """Our part of the kernel: normalised filter tables of both families and our sets."""
    assert_not_host()
    sets = subprocess.run(["ipset", "save"], capture_output=True, text=True, check=True).stdout
    return {
        "v4": canonical(saved(mode, Family.V4, "filter")),
        "v6": canonical(saved(mode, Family.V6, "filter")),
        "sets": sorted(_SET_NOISE.sub("", line) for line in sets.splitlines() if " npa-" in line),
    }


def canonical(save: str) -> list[str]:
    """Chains sorted by name, each chain's rules in order (chain order differs by backend)."""
    chains: dict[str, list[str]] = {}
    for line in save.splitlines():
        if line.startswith(":"):
            chains.setdefault(line.split()[0][1:], [])
        elif line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    return [f"{name}: {rule}" for name in sorted(chains) for rule in [""] + chains[name]]


SEQUENCE = [
    state("x/deny"),
    state("x/deny", "x/b-from-a"),
    state("x/deny", "x/b-from-a", relabel=True),  # a pod relabelled: set members only
    state("x/deny", "x/b-from-a", "y/egress", "y/named", extra_pod=True),
    state("y/egress"),  # policies deleted: stale chains and sets collected
    state(),
]


def fresh_full_snapshot(backend: str, ns: str, ruleset: Ruleset) -> dict[str, Any]:
    """The kernel state of `ruleset` applied in full by a new Applier in a clean `ns`."""
    with inside(ns):
        fresh = Applier(select_backend(backend))
        fresh.cleanup()
        fresh.apply(ruleset)
        return snapshot(fresh.backend.mode)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_incremental_applies_equal_a_fresh_full_apply(backend: str) -> None:
    with netns.netns("agent") as inc_ns, netns.netns("agent") as full_ns:
        with inside(inc_ns):
            incremental = Applier(select_backend(backend))
        for step, st in enumerate(SEQUENCE):
            ruleset = compiled(st)
            with inside(inc_ns):
                result = incremental.apply(ruleset)
                assert result.full == (step == 0)
                got = snapshot(incremental.backend.mode)
            want = fresh_full_snapshot(backend, full_ns, ruleset)
            assert got == want, f"step {step}"
        with inside(inc_ns):
            assert incremental.apply(compiled(SEQUENCE[-1])).changed is False


def test_pod_churn_touches_sets_not_rules(agent_ns: str) -> None:
    with inside(agent_ns):
        applier = Applier(select_backend("nft"))
        applier.apply(compiled(state("x/deny", "x/b-from-a")))
        result = applier.apply(compiled(state("x/deny", "x/b-from-a", relabel=True)))
        # x/a left the set of pod=a in x (both families); no chain was rewritten
        assert result.counts.chains_written == 0 and result.counts.set_entries_removed == 2


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_failed_apply_keeps_previous_rules_and_forces_full(agent_ns: str, backend: str) -> None:
    good = compiled(state("x/deny", "x/b-from-a"))
    v4 = good.table(Family.V4)
    broken_rule = Rule(
        RuleTarget(TargetKind.ACCEPT), comment="bad", sets=(SetMatch("npa-missing-set", "src"),)
    )
    chains = tuple(
        dataclasses.replace(c, rules=(*c.rules, broken_rule)) if c.name == "NPA-FORWARD" else c
        for c in v4.chains
    )
    bad = dataclasses.replace(
        good, tables={**good.tables, Family.V4: Table(Family.V4, chains, v4.hooks)}
    )
    with inside(agent_ns):
        applier = Applier(select_backend(backend))
        applier.apply(good)
        before = snapshot(applier.backend.mode)
        with pytest.raises(ApplyError) as info:
            applier.apply(bad)
        message = str(info.value)
        assert ">> " in message and "--match-set npa-missing-set src" in message
        assert snapshot(applier.backend.mode) == before
        assert applier.needs_full and applier.applied is good
        result = applier.apply(good)
        assert result.full
        assert snapshot(applier.backend.mode) == before


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_tampering_is_detected_and_repaired(agent_ns: str, backend: str) -> None:
    with inside(agent_ns):
        applier = Applier(select_backend(backend))
        applier.apply(compiled(state("x/deny", "x/b-from-a")))
        want = snapshot(applier.backend.mode)
        assert not applier.tampered()
        iptables = applier.backend.iptables
        tamperings = [
            [iptables(Family.V4), "-I", "FORWARD", "1", "-j", "ACCEPT"],  # hook not first
            [
                iptables(Family.V6),
                "-D",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "netpol-agent",
                "-j",
                "NPA-INPUT",
            ],
            [iptables(Family.V4), "-F", "NPA-FORWARD"],
            [iptables(Family.V6), "-A", "NPA-OUTPUT", "-j", "ACCEPT"],
        ]
        for argv in tamperings:
            subprocess.run(argv, check=True)
            assert applier.tampered(), argv
            if argv[2] == "FORWARD":
                subprocess.run([iptables(Family.V4), "-D", "FORWARD", "-j", "ACCEPT"], check=True)
            applier.force_full()
            assert applier.apply(applier.applied or Ruleset()).full
            assert not applier.tampered()
            assert snapshot(applier.backend.mode) == want


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_adopting_at_start_collects_leftovers_without_flushing(agent_ns: str, backend: str) -> None:
    old = compiled(state("x/deny", "x/b-from-a", "y/egress", "y/named"))
    new = compiled(state("x/deny"))
    with netns.netns("agent") as fresh_ns, inside(fresh_ns):
        Applier(select_backend(backend)).apply(new)
        want = snapshot(select_backend(backend).mode)
    with inside(agent_ns):
        Applier(select_backend(backend)).apply(old)
        restarted = Applier(select_backend(backend))  # a new agent process
        assert restarted.apply(new).full
        assert snapshot(restarted.backend.mode) == want


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_dropping_a_family_removes_its_chains_and_sets(agent_ns: str, backend: str) -> None:
    st = state("x/deny", "x/b-from-a", "y/egress")
    v4_only = compile_ruleset(st, node="node-0", options=CompileOptions(families=(Family.V4,)))
    with inside(agent_ns):
        mode = select_backend(backend).mode
        foreign_rules(mode)
        v6_before = saved(mode, Family.V6)
        applier = Applier(select_backend(backend))
        applier.apply(compiled(st))
        applier.apply(v4_only)  # incrementally
        assert saved(mode, Family.V6) == v6_before
        applier.apply(compiled(st))
        restarted = Applier(select_backend(backend))  # and at start (adopting)
        restarted.apply(v4_only)
        assert saved(mode, Family.V6) == v6_before
        assert not [n for n in ipset_names() if n.startswith("npa-") and "6-" in n[4:7]]
        assert "NPA-FORWARD" in saved(mode, Family.V4)


@pytest.mark.parametrize("family", FAMILIES, ids=["v4", "v6"])
def test_python_iptables_writes_what_iptables_restore_writes(family: Family) -> None:
    rulesets = [compiled(st) for st in SEQUENCE[:4]]
    outputs = []
    for backend in ("legacy", "python-iptables"):
        with netns.netns("agent") as ns, inside(ns):
            applier = Applier(select_backend(backend))
            for ruleset in rulesets:
                applier.apply(ruleset)
            outputs.append(saved("legacy", family, "filter"))
    assert outputs[0] == outputs[1]
    assert "-A NPA-FORWARD" in outputs[0]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_cleanup_after_a_real_apply_restores_the_ruleset(agent_ns: str, backend: str) -> None:
    with inside(agent_ns):
        applier = Applier(select_backend(backend))
        mode = applier.backend.mode
        foreign_rules(mode)
        before = {f: saved(mode, f) for f in FAMILIES}
        sets_before = ipset_names()
        for st in SEQUENCE[:4]:
            applier.apply(compiled(st))
        assert ipset_names() != sets_before
        report = applier.cleanup()
        assert report.chains > 0 and report.rules == 6 and not report.kept_sets
        assert {f: saved(mode, f) for f in FAMILIES} == before
        assert ipset_names() == sets_before


def test_parse_counters_reads_the_counter_set_members() -> None:
    listing = """Name: npa-c4-pgqszyilqohq5gxi
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 262144 counters comment bucketsize 12 initval 0x1
Size in memory: 312
References: 1
Number of entries: 2
Members:
10.244.0.11 packets 3 bytes 180 comment "x/b"
10.244.0.10 packets 0 bytes 0 comment "x/a"
"""
    assert [(k, c.packets, c.bytes) for k, c in parse_counters(listing)] == [
        ("x/b", 3, 180),
        ("x/a", 0, 0),
    ]


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_drop_counters_count_blocked_packets_per_pod(backend: str) -> None:
    from agent.sandbox.sockets import Probe, probe_many

    with kernel_node(backend, "x") as node:
        node.add_pod("x/a", "pod=a")
        node.add_pod("x/b", "pod=b")
        node.apply(node.state([make_policy("x/deny", POLICIES["x/deny"])]))
        b = node.pod_sandboxes["x/b"]
        a_ns = node.pod_sandboxes["x/a"].netns
        assert probe_many([Probe(a_ns, b.ipv4, 80, "UDP")], timeout=0.3) == [False]
        with node.agent() as applier:
            counters = applier.drop_counters()
        assert counters[("x/b", "ingress")].packets >= 1
        assert ("x/a", "ingress") in counters

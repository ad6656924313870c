"""Audit mode never changes a verdict, and its chains survive incremental compilation.

Generated clusters (tests/dataplane/strategies.py, and with ClusterNetworkPolicies
from test_cnp_property) with a random subset of policies audited: the compiled ruleset with the drop-logging and audit
extensions, run through the packet tracer, must agree with the reference
evaluator (which ignores audited policies) on every case; and any sequence of
changes, audit flags flipping included, compiled incrementally, must equal the
full compile.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.auditlogging import AuditLogging
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.droplogging import DropLogging
from agent.core.incremental import IncrementalCompiler
from agent.core.model import ClusterState, Pod, Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.core.trace import RulesetEvaluator
from tests.core.test_incremental import change_st
from tests.dataplane.strategies import EXTRA_SOURCES, PORTS, cluster_st
from tests.dataplane.test_cnp_property import mixed_cluster_st

OPTIONS = CompileOptions(extensions=(DropLogging(100), AuditLogging(100)))
NODE = "node-0"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@st.composite
def audited_st(draw: st.DrawFn, state: ClusterState) -> ClusterState:
    keys = sorted(state.policies)
    chosen = draw(st.sets(st.sampled_from(keys))) if keys else set()
    policies = {k: replace(p, audit=k in chosen) for k, p in state.policies.items()}
    return replace(state, policies=policies)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster_st().flatmap(audited_st))
def test_audit_chains_never_change_a_verdict(state: ClusterState) -> None:
    ref = ReferenceEvaluator(state)
    rules = RulesetEvaluator(state, OPTIONS)
    ends: list[Pod | str] = [*sorted(state.pods.values(), key=lambda p: p.key), *EXTRA_SOURCES]
    for dst in ends:
        for src in ends:
            for port in PORTS:
                for protocol in Protocol:
                    expected = ref.allowed(src, dst, port, protocol)
                    assert rules.allowed(src, dst, port, protocol) == expected, (src, dst, port)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_cluster_st().flatmap(audited_st))
def test_audit_chains_with_cluster_policies_never_change_a_verdict(state: ClusterState) -> None:
    test_audit_chains_never_change_a_verdict.hypothesis.inner_test(state)  # type: ignore[attr-defined]


@st.composite
def history_st(draw: st.DrawFn) -> list[ClusterState]:
    states = [draw(cluster_st().flatmap(audited_st))]
    for n in range(draw(st.integers(1, 5))):
        changed = draw(change_st(states[-1], n))
        states.append(draw(audited_st(changed)) if draw(st.booleans()) else changed)
    return states


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history_st())
def test_incremental_equals_full_with_audited_policies(states: list[ClusterState]) -> None:
    compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
    compiler.compile(states[0], full=True)
    for state in states[1:]:
        assert compiler.compile(state) == compile_ruleset(state, node=NODE, options=OPTIONS)
    assert compiler.divergences == 0 and not compiler.disabled


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("cnp-*")))
def test_audited_policies_leave_cluster_policy_examples_unchanged(example: str) -> None:
    """An audited policy over every pod changes no verdict, Baseline tier included."""
    from agent.core.convert import policy_from_dict
    from agent.manifests.loader import build_state, load

    state = build_state(load([str(EXAMPLES / example)]))
    extra = {
        f"{ns}/trial": replace(
            policy_from_dict(
                {
                    "metadata": {"namespace": ns, "name": "trial"},
                    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
                }
            ),
            audit=True,
        )
        for ns in state.namespaces
    }
    audited = replace(state, policies={**state.policies, **extra})
    ref, rules = ReferenceEvaluator(state), RulesetEvaluator(audited, OPTIONS)
    pods = sorted(state.pods.values(), key=lambda p: p.key)
    for src in pods:
        for dst in pods:
            for port in (80, 443, 5432):
                expected = ref.allowed(src, dst, port, Protocol.TCP)
                assert ReferenceEvaluator(audited).allowed(src, dst, port, Protocol.TCP) == expected
                assert rules.allowed(src, dst, port, Protocol.TCP) == expected, (src.key, dst.key)

"""Audit mode never changes a verdict, and its chains survive incremental compilation.

Generated clusters (tests/dataplane/strategies.py) with a random subset of
policies audited: the compiled ruleset with the drop-logging and audit
extensions, run through the packet tracer, must agree with the reference
evaluator (which ignores audited policies) on every case; and any sequence of
changes, audit flags flipping included, compiled incrementally, must equal the
full compile.
"""

from __future__ import annotations

from dataclasses import replace

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

OPTIONS = CompileOptions(extensions=(DropLogging(100), AuditLogging(100)))
NODE = "node-0"


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

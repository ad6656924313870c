"""Differential property test: compile + packet tracer must agree with the reference evaluator.

Hypothesis generates small clusters (tests/dataplane/strategies.py) and asks
both evaluators about every (source, destination, port, protocol). Sources and
destinations include bare addresses: a node's own, the cni0 gateway, another
node's and external ones.

A hostNetwork pod takes part as its node's address: the source's egress
policy applies to it, no ingress policy does (docs/limitations.md).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.model import ClusterState, Family, Pod, Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.core.trace import RulesetEvaluator
from tests.dataplane.strategies import EXTRA_SOURCES, PORTS, cluster_st


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cluster_st(), st.sampled_from([None, Family.V4, Family.V6]))
def test_ruleset_agrees_with_reference(state: ClusterState, family: Family | None) -> None:
    assert_engines_agree(state, family)


def assert_engines_agree(state: ClusterState, family: Family | None) -> None:
    """Every (source, destination, port, protocol): the tracer's verdict is the reference's."""
    ref = ReferenceEvaluator(state)
    rules = RulesetEvaluator(state)
    pods = sorted(state.pods.values(), key=lambda p: p.key)
    sources: list[Pod | str] = [*pods, *EXTRA_SOURCES]
    cases = [(port, protocol) for port in PORTS for protocol in Protocol]
    destinations: list[Pod | str] = [*pods, *EXTRA_SOURCES]
    for dst in destinations:
        for src, (port, protocol) in ((s, c) for s in sources for c in cases):
            expected = ref.allowed(src, dst, port, protocol, family=family)
            got = rules.allowed(src, dst, port, protocol, family=family)
            if expected != got:
                traces = rules.traces(src, dst, port, protocol, family=family) or []
                name = src if isinstance(src, str) else src.key
                dst_name = dst if isinstance(dst, str) else dst.key
                raise AssertionError(
                    f"{name} -> {dst_name} {port}/{protocol.value} (family {family}): "
                    f"reference says {expected}, "
                    f"ruleset says {got}\n"
                    + "\n".join(f"[{node}] {t}" for node, t in traces)
                    + "\nreference: "
                    + str(ref.explain(src, dst, port, protocol, family=family))
                )

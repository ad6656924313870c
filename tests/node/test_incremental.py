"""The agent's syncs with the real compiler and planner: pod churn touches set members
only, a policy change rewrites only that policy's chains (no kernel; plans are inspected)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from agent.core.convert import namespace_from_dict, node_from_dict, pod_from_dict, policy_from_dict
from agent.core.render import Counts, plan
from agent.core.ruleset import Ruleset
from agent.kube.api import Kind
from agent.node.engine import compiler_for
from agent.node.metrics import Metrics
from agent.node.pacing import Backoff, Pacer
from agent.node.reconcile import Reconciler
from agent.node.settings import Settings
from agent.node.state import Store
from tests.node.fakes import FakeClock, node_dict, ns_dict, pod_dict, policy_dict


class PlanningDataplane:
    """Plans like the Applier (previous vs desired) and records the counts."""

    def __init__(self) -> None:
        self.previous: Ruleset | None = None
        self.counts: list[Counts] = []

    def apply(self, desired: Any, *, full: bool) -> None:
        self.counts.append(plan(None if full else self.previous, desired).counts)
        self.previous = desired

    def tampered(self) -> bool:
        return False


def rig() -> tuple[Reconciler, Store, PlanningDataplane, FakeClock]:
    clock = FakeClock()
    store = Store(clock=clock.monotonic)
    dp = PlanningDataplane()
    pacer = Pacer(
        now=clock.now,
        min_interval=0.0,
        resync_interval=3600,
        tamper_interval=3600,
        backoff=Backoff(1, 2),
    )
    rec = Reconciler(
        node_name="node-0",
        store=store,
        compiler=compiler_for(Settings(node_name="node-0")),
        dataplane=dp,
        pacer=pacer,
        clock=clock,
        metrics=Metrics(CollectorRegistry()),
    )
    store.set_on_change(rec.notify)
    pods = [
        pod_from_dict(pod_dict("x", "a", labels={"app": "a"}, ip="10.244.0.10")),
        pod_from_dict(pod_dict("x", "b", labels={"app": "b"}, ip="10.244.0.11")),
        pod_from_dict(pod_dict("x", "c", labels={"app": "c"}, ip="10.244.1.10", node="node-1")),
    ]
    web = policy_dict(
        "x",
        "web",
        selector={"app": "b"},
        ingress=[
            {
                "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                "ports": [{"port": 80}],
            }
        ],
    )
    store.replace(Kind.NAMESPACES, {"x": namespace_from_dict(ns_dict("x"))}, "1")
    store.replace(Kind.NODES, {"node-0": node_from_dict(node_dict("node-0"))}, "1")
    store.replace(Kind.PODS, {p.uid: p for p in pods}, "1")
    pol = policy_from_dict(web)
    store.replace(Kind.NETWORK_POLICIES, {pol.key: pol}, "1")
    store.replace(Kind.CLUSTER_NETWORK_POLICIES, {}, "1")
    rec.step()
    assert dp.counts and dp.counts[0].chains_written > 0
    return rec, store, dp, clock


def test_remote_pod_relabel_changes_set_members_only() -> None:
    rec, store, dp, clock = rig()
    c = pod_from_dict(
        pod_dict("x", "c", labels={"app": "c", "tier": "frontend"}, ip="10.244.1.10", node="node-1")
    )
    store.upsert(Kind.PODS, c.uid, c, "2")
    clock.advance(1)
    rec.step()
    counts = dp.counts[-1]
    assert counts.chains_written == 0 and counts.rules_written == 0
    assert counts.set_entries_added >= 1


def test_policy_port_change_rewrites_no_rule() -> None:
    rec, store, dp, clock = rig()
    changed = policy_dict(
        "x",
        "web",
        selector={"app": "b"},
        ingress=[
            {
                "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                "ports": [{"port": 81}],
            }
        ],
    )
    pol = policy_from_dict(changed)
    store.upsert(Kind.NETWORK_POLICIES, pol.key, pol, "2")
    clock.advance(1)
    rec.step()
    counts = dp.counts[-1]
    # rules never name policies: the port set's entries would change (no frontend
    # pod exists, so none do)
    assert counts.chains_written == 0 and counts.rules_written == 0
    assert counts.set_entries_added == counts.set_entries_removed == 0

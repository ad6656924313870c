"""Pod churn touches sets, not rules: a property over generated clusters, and at scale.

For node-0, any change to any pod (on another node or local, isolated or not,
gaining or losing isolation) and any namespace relabelling must leave every
chain as it was: the plan's iptables payloads are empty and only `ipset`
lines change (rules never name pods: gate, counter and flattened sets do).
"""

from __future__ import annotations

import time
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import ClusterState, Labels, Namespace, Pod
from agent.core.render import plan
from agent.core.rulelint import lint
from agent.core.selectors import selector_matches
from tests.dataplane.scale import scale_cluster
from tests.dataplane.strategies import anchored, cluster_st, labels_st, pod_st, rule_st

NODE = "node-0"
OPTIONS = CompileOptions()


def _enforced_here(state: ClusterState, pod: Pod | None) -> bool:
    if pod is None or pod.node != NODE or not pod.is_networked:
        return False
    return any(
        p.namespace == pod.namespace and selector_matches(p.pod_selector, pod.labels)
        for p in state.policies.values()
    )


@st.composite
def churn_st(draw: st.DrawFn) -> tuple[ClusterState, ClusterState]:
    base = draw(cluster_st())
    # anchors: a local pod in x and y, each isolated both ways by a wide policy with peers
    ingress = tuple(draw(st.lists(rule_st, min_size=1, max_size=3)))
    egress = tuple(draw(st.lists(rule_st, min_size=1, max_size=3)))
    before = anchored(base, ingress=ingress, egress=egress)
    pods = dict(before.pods)
    kind = draw(st.sampled_from(("relabel", "readdress", "delete", "add", "namespace")))
    if kind == "namespace":
        ns = draw(st.sampled_from(sorted(before.namespaces)))
        extra = draw(labels_st)
        old = before.namespaces[ns]
        namespaces = {**before.namespaces, ns: Namespace(ns, Labels({**old.labels, **extra}))}
        return before, replace(before, namespaces=namespaces)
    if kind == "add" or not pods:
        new = draw(pod_st(90))
        pods[new.uid] = new
    else:
        uid = draw(st.sampled_from(sorted(base.pods)))
        if kind == "delete":
            del pods[uid]
        elif kind == "relabel":
            pods[uid] = replace(pods[uid], labels=draw(labels_st))
        else:
            pods[uid] = replace(pods[uid], ips=("10.244.1.200", "fd00:10:244:1::c8"))
    return before, replace(before, pods=pods)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(churn_st())
def test_churn_of_any_pod_changes_only_set_members(
    case: tuple[ClusterState, ClusterState],
) -> None:
    before, after = case
    changed = {
        uid
        for uid in set(before.pods) | set(after.pods)
        if before.pods.get(uid) != after.pods.get(uid)
    }
    local = any(_enforced_here(s, s.pods.get(uid)) for uid in changed for s in (before, after))
    old = compile_ruleset(before, node=NODE, options=OPTIONS)
    new = compile_ruleset(after, node=NODE, options=OPTIONS)
    assert lint(new) == []
    p = plan(old, new)
    assert not any(p.iptables.values()), "\n".join(p.iptables.values())
    assert set(old.sets) == set(new.sets)  # names come from selectors, not members
    if local:
        assert old.tables == new.tables  # an isolated local pod changed: still no rule


def test_scale_compile_and_churn() -> None:
    """10,000 pods, 1,000 policies, 100 local pods: compile well under a second or two."""
    state = scale_cluster(pods=10_000, policies=1_000, nodes=100)
    start = time.perf_counter()
    rs = compile_ruleset(state, node="node-0", options=OPTIONS)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"compile took {elapsed:.2f}s"
    assert lint(rs) == []
    # a remote pod relabelled, another deleted, and a local isolated pod deleted: sets only
    pods = dict(state.pods)
    pods["uid-1"] = replace(pods["uid-1"], labels=Labels({"app": "app9"}))
    del pods["uid-2"]
    local = next(u for u, p in pods.items() if p.node == "node-0" and _enforced_here(state, p))
    del pods[local]
    new = compile_ruleset(replace(state, pods=pods), node="node-0", options=OPTIONS)
    p = plan(rs, new)
    assert not any(p.iptables.values())
    assert p.counts.set_entries_added + p.counts.set_entries_removed > 0

"""IncrementalCompiler: after any sequence of changes, exactly compile_ruleset of the final state.

A property over generated clusters (hypothesis) drives random changes to pods
(relabel, readdress, move between nodes, finish, add, delete), namespaces
(relabel, add, delete), policies (add, change, delete) and the node's
addresses, compares every step with the full compiler, and checks that the
steps really were incremental. Named scenarios pin what is reused: pod churn
on another node rebuilds no chain and hands back the very same chain and set
objects; a policy change replaces only that policy's chains.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.incremental import IncrementalCompiler
from agent.core.model import (
    ClusterState,
    Family,
    Labels,
    LabelSelector,
    Namespace,
    Node,
    Peer,
    Pod,
    PodPhase,
    Rule,
)
from agent.core.render import plan
from agent.core.ruleset import Ruleset
from tests.dataplane.strategies import (
    NODES,
    anchored,
    cluster_st,
    labels_st,
    pod_st,
    policy_st,
    rule_st,
)

NODE = "node-0"
OPTIONS = CompileOptions()


def _reference(state: ClusterState, options: CompileOptions = OPTIONS) -> Ruleset:
    return compile_ruleset(state, node=NODE, options=options)


def _anchored(base: ClusterState, rules: list[Rule]) -> ClusterState:
    """Two local pods isolated both ways by a wide policy, so chains and sets exist."""
    return anchored(base, ingress=tuple(rules), egress=tuple(reversed(rules)))


@st.composite
def change_st(draw: st.DrawFn, state: ClusterState, n: int) -> ClusterState:
    """One random change to `state` (the n-th of a sequence: new objects get fresh names)."""
    kind = draw(
        st.sampled_from(
            (
                "relabel",
                "readdress",
                "move",
                "finish",
                "add",
                "delete",
                "ns-relabel",
                "ns-add-delete",
                "policy-add",
                "policy-change",
                "policy-delete",
                "node",
                "same-value",
            )
        )
    )
    pods, pols, nss = dict(state.pods), dict(state.policies), dict(state.namespaces)
    uid = draw(st.sampled_from(sorted(pods))) if pods else None
    if kind == "add" or (uid is None and kind in ("relabel", "readdress", "move", "finish")):
        pod = draw(pod_st(100 + n))
        pods[pod.uid] = pod
    elif uid is None:
        pass
    elif kind == "relabel":
        pods[uid] = replace(pods[uid], labels=draw(labels_st))
    elif kind == "readdress":
        other = draw(pod_st(int(draw(st.integers(0, 9)))))
        pods[uid] = replace(pods[uid], ips=other.ips, ports=other.ports)
    elif kind == "move":
        pods[uid] = replace(pods[uid], node="node-1" if pods[uid].node == NODE else NODE)
    elif kind == "finish":
        pods[uid] = replace(pods[uid], phase=PodPhase.SUCCEEDED)
    elif kind == "delete":
        del pods[uid]
    if kind == "ns-relabel":
        ns = draw(st.sampled_from(sorted(nss)))
        nss[ns] = Namespace(ns, Labels({**nss[ns].labels, **draw(labels_st)}))
    elif kind == "ns-add-delete":
        ns = draw(st.sampled_from(("x", "y", "z")))
        if ns in nss:
            del nss[ns]
        else:
            nss[ns] = Namespace(ns, Labels({"kubernetes.io/metadata.name": ns, "ns": "x"}))
    elif kind == "policy-add":
        pol = draw(policy_st(100 + n))
        pols[pol.key] = pol
    elif kind == "policy-change" and pols:
        key = draw(st.sampled_from(sorted(pols)))
        pols[key] = replace(pols[key], ingress=tuple(draw(st.lists(rule_st, max_size=2))))
    elif kind == "policy-delete" and pols:
        del pols[draw(st.sampled_from(sorted(pols)))]
    elif kind == "node":
        nodes = dict(state.nodes)
        node = nodes[NODE]
        addresses = draw(st.sampled_from(((), ("172.18.0.9",), node.addresses)))
        nodes[NODE] = Node(NODE, addresses, node.pod_cidrs)
        return replace(state, pods=pods, policies=pols, namespaces=nss, nodes=nodes)
    elif kind == "same-value" and uid is not None:
        old = pods[uid]  # an equal but new object, as a status-only update gives
        pods[uid] = Pod(**{f: getattr(old, f) for f in old.__dataclass_fields__})
    return replace(state, pods=pods, policies=pols, namespaces=nss)


@st.composite
def history_st(draw: st.DrawFn) -> list[ClusterState]:
    base = _anchored(draw(cluster_st()), draw(st.lists(rule_st, min_size=1, max_size=3)))
    states = [base]
    for n in range(draw(st.integers(1, 6))):
        states.append(draw(change_st(states[-1], n)))
    return states


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history_st(), st.sampled_from(("drop", "reject")))
def test_incremental_equals_full_compile_after_any_changes(
    states: list[ClusterState], drop: str
) -> None:
    options = CompileOptions(drop_action=drop)
    compiler = IncrementalCompiler(node=NODE, options=options)
    assert compiler.compile(states[0], full=True) == _reference(states[0], options)
    for state in states[1:]:
        assert compiler.compile(state) == _reference(state, options)
        assert compiler.last_incremental
    # the next full sync agrees with the incremental baseline: no divergence recorded
    assert compiler.compile(states[-1], full=True) == _reference(states[-1], options)
    assert compiler.divergences == 0 and not compiler.disabled


def _state() -> ClusterState:
    pods = {
        f"uid-{i}": Pod(
            "x" if i % 2 else "y",
            f"p{i}",
            f"uid-{i}",
            Labels({"pod": "a" if i % 3 else "b"}),
            (f"10.244.{i % 2}.{10 + i}",),
            f"node-{i % 2}",
        )
        for i in range(12)
    }
    namespaces = {
        ns: Namespace(ns, Labels({"kubernetes.io/metadata.name": ns, "ns": ns}))
        for ns in ("x", "y")
    }
    base = ClusterState(namespaces=namespaces, pods=pods, nodes=NODES)
    return _anchored(base, [Rule(peers=(Peer(pod_selector=LabelSelector((("pod", "a"),))),))])


def test_remote_pod_change_reuses_every_chain_and_untouched_set() -> None:
    state = _state()
    compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
    before = compiler.compile(state, full=True)
    before = compiler.compile(state)  # the compiler's own objects from now on
    pods = dict(state.pods)
    pods["uid-1"] = replace(pods["uid-1"], labels=Labels({"pod": "b"}))  # x, node-1
    after_state = replace(state, pods=pods)
    after = compiler.compile(after_state)
    assert after == _reference(after_state)
    assert after.tables is before.tables
    changed = [n for n in after.sets if after.sets[n] is not before.sets.get(n)]
    assert changed and all(after.sets[n] != before.sets[n] for n in changed)
    p = plan(before, after)
    assert not any(p.iptables.values()) and p.counts.rules_written == 0
    assert p.ipset_before.startswith("del ")


def test_policy_change_rewrites_at_most_the_verdict_chains() -> None:
    state = _state()
    compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
    compiler.compile(state, full=True)
    before = compiler.compile(state)
    pols = dict(state.policies)
    pols["x/wide"] = replace(pols["x/wide"], egress=())
    after_state = replace(state, policies=pols)
    after = compiler.compile(after_state)
    assert after == _reference(after_state)
    # only the verdict chains' pair rules (portless peers, wide ranges) follow policies
    old = before.table(Family.V4).by_name()
    new = after.table(Family.V4).by_name()
    rewritten = {n for n, c in new.items() if old.get(n) != c}
    assert rewritten <= {"NPA-INGRESS", "NPA-EGRESS"}


def test_full_compile_is_the_reference_and_failures_reset() -> None:
    state = _state()
    compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
    first = compiler.compile(state)  # no baseline yet: a full compile
    assert not compiler.last_incremental and first == _reference(state)
    compiler.reset()
    assert compiler.compile(state) == _reference(state)
    assert not compiler.last_incremental
    assert compiler.compile(state) == _reference(state)
    assert compiler.last_incremental


def test_two_pods_sharing_an_address_keep_it_in_the_set_until_both_leave() -> None:
    state = _state()
    pods = dict(state.pods)
    twin = replace(pods["uid-1"], uid="uid-twin", name="twin")  # same IP, as during IP reuse
    pods["uid-twin"] = twin
    state = replace(state, pods=pods)
    compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
    compiler.compile(state, full=True)
    for gone in ("uid-1", "uid-twin"):
        pods = dict(state.pods)
        del pods[gone]
        state = replace(state, pods=pods)
        assert compiler.compile(state) == _reference(state)
        assert compiler.last_incremental

"""ClusterNetworkPolicy tiers in the incremental compiler: after pod, namespace, node,
NetworkPolicy and ClusterNetworkPolicy changes it gives exactly compile_ruleset's result,
and pod churn on another node changes set members only (no chain, no rule rewritten)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.convert import state_from_dicts
from agent.core.incremental import IncrementalCompiler
from agent.core.model import ClusterState, Labels, Namespace, Pod
from agent.core.render import plan
from agent.core.ruleset import Ruleset
from tests.builders import cnp_rule, make_cnp

NODE = "node-0"
OPTIONS = CompileOptions()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def reference(state: ClusterState) -> Ruleset:
    return compile_ruleset(state, node=NODE, options=OPTIONS)


def example(name: str) -> ClusterState:
    objects = [
        doc
        for file in sorted((EXAMPLES / name).glob("*.yaml"))
        for doc in yaml.safe_load_all(file.read_text())
        if doc
    ]
    nodes = [
        {
            "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {"role": "worker" if i else "infra"}},
            "spec": {"podCIDR": f"10.244.{i}.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"172.18.0.{i + 2}"}]},
        }
        for i in range(2)
    ]
    return state_from_dicts([*objects, *nodes])


def with_pod(state: ClusterState, pod: Pod) -> ClusterState:
    return replace(state, pods={**state.pods, pod.uid: pod})


def test_remote_pod_joining_a_peer_changes_set_members_only() -> None:
    state = example("cnp-admin-deny")
    compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
    compiler.compile(state, full=True)
    before = compiler.compile(state)
    # a second backend on node-1: a member of the Admin Accept rule's peer set
    pod = Pod("app", "backend-2", "uid-b2", Labels({"app": "backend"}), ("10.244.1.20",), "node-1")
    after_state = with_pod(state, pod)
    after = compiler.compile(after_state)
    assert compiler.last_incremental
    assert after == reference(after_state)
    p = plan(before, after)
    assert p.counts.rules_written == 0 and p.counts.chains_written == 0
    assert p.counts.set_entries_added == 2  # allow-backend's peer and deny-the-rest's (all pods)


def test_every_kind_of_change_matches_the_full_compiler() -> None:
    states = [example(n) for n in ("cnp-baseline-default-deny", "cnp-egress-cidr-nodes")]
    for state in states:
        compiler = IncrementalCompiler(node=NODE, options=OPTIONS)
        assert compiler.compile(state, full=True) == reference(state)
        steps: list[ClusterState] = []
        local = Pod("shop", "late", "uid-late", Labels({"app": "cart"}), ("10.244.0.30",), NODE)
        steps.append(with_pod(state, local))  # a local subject pod
        relabelled = {
            **steps[-1].namespaces,
            "guest": Namespace("guest", Labels({"kubernetes.io/metadata.name": "shop"})),
        }
        steps.append(replace(steps[-1], namespaces=relabelled))  # namespace labels
        node1 = replace(steps[-1].nodes["node-1"], labels=Labels({"role": "infra"}))
        steps.append(replace(steps[-1], nodes={**steps[-1].nodes, "node-1": node1}))
        extra = make_cnp(
            "late-guard",
            tier="Admin",
            priority=1,
            ingress=[cnp_rule("Pass", {"namespaces": {}}, name="pass")],
            egress=[cnp_rule("Deny", {"networks": ["10.244.0.0/16"]}, to=True)],
        )
        steps.append(
            replace(steps[-1], cluster_policies={**steps[-1].cluster_policies, extra.name: extra})
        )
        steps.append(replace(steps[-1], policies={}))  # NetworkPolicies gone: Baseline grows
        steps.append(replace(steps[-1], cluster_policies={}))  # every tier gone
        for step in steps:
            assert compiler.compile(step) == reference(step)
            assert compiler.last_incremental
        assert compiler.divergences == 0 and not compiler.disabled

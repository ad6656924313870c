"""Incremental vs full compile (and plan) per kind of change, in process (not a test).

    .venv/bin/python -m tests.perf.incremental_bench --pods 10000 --policies 1000

The synthetic cluster of tests/dataplane/scale.py, node-0 (100 local pods),
both families. Each change is applied to the state the previous one left;
every incremental result is checked against compile_ruleset of the same state.
Medians over `--rounds` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.incremental import IncrementalCompiler
from agent.core.model import ClusterState, Labels, Namespace
from agent.core.render import plan
from tests.dataplane.scale import scale_cluster

NODE = "node-0"
Change = Callable[[ClusterState, int], ClusterState]


def _pod(state: ClusterState, uid: str, **labels: str) -> ClusterState:
    pods = dict(state.pods)
    pods[uid] = replace(pods[uid], labels=Labels({**pods[uid].labels, **labels}))
    return replace(state, pods=pods)


def remote_relabel(state: ClusterState, n: int) -> ClusterState:
    return _pod(state, f"uid-{1 + 100 * n + n % 99}", tier=f"t{n % 3 + 1}")


def local_relabel(state: ClusterState, n: int) -> ClusterState:
    return _pod(state, f"uid-{100 * (n % 100)}", app=f"app{n % 10}")


def pod_delete(state: ClusterState, n: int) -> ClusterState:
    pods = dict(state.pods)
    pods.pop(f"uid-{5 + 100 * n}", None)
    return replace(state, pods=pods)


def namespace_relabel(state: ClusterState, n: int) -> ClusterState:
    name = f"ns{n % 100}"
    old = state.namespaces[name]
    labels = Labels({**old.labels, "team": f"t{(n + 3) % 10}"})
    return replace(state, namespaces={**state.namespaces, name: Namespace(name, labels)})


def policy_change(state: ClusterState, n: int) -> ClusterState:
    key = f"ns{n % 100}/pol{n % 100}"
    pol = state.policies[key]
    rule = pol.ingress[0]
    policies = {
        **state.policies,
        key: replace(pol, ingress=(replace(rule, ports=rule.ports[::-1]),)),
    }
    return replace(state, policies=policies)


CHANGES: dict[str, Change] = {
    "pod label, remote pod": remote_relabel,
    "pod label, local pod": local_relabel,
    "pod delete": pod_delete,
    "namespace label": namespace_relabel,
    "policy change": policy_change,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    options = CompileOptions()
    state = scale_cluster(pods=args.pods, policies=args.policies)
    compiler = IncrementalCompiler(node=NODE, options=options)
    t = time.perf_counter()
    applied = compiler.compile(state, full=True)
    print(
        f"full sync (reference compile + incremental baseline): {1e3 * (time.perf_counter() - t):.0f} ms"
    )
    full_ms: list[float] = []
    for name, change in CHANGES.items():
        inc_ms, plan_ms = [], []
        for n in range(args.rounds):
            state = change(state, n)
            t = time.perf_counter()
            ruleset = compiler.compile(state)
            inc_ms.append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            plan(applied, ruleset, patch_chains=True)
            plan_ms.append(1e3 * (time.perf_counter() - t))
            applied = ruleset
            t = time.perf_counter()
            reference = compile_ruleset(state, node=NODE, options=options)
            full_ms.append(1e3 * (time.perf_counter() - t))
            assert ruleset == reference, f"{name}, round {n}: incremental != full"
        print(
            f"{name:<24} incremental {statistics.median(inc_ms):6.2f} ms (max {max(inc_ms):6.2f})"
            f"   plan {statistics.median(plan_ms):5.2f} ms"
        )
    print(
        f"{'full compile_ruleset':<24} {statistics.median(full_ms):6.1f} ms (median of all rounds)"
    )


if __name__ == "__main__":
    main()

"""Cost of revocation's views at scale (not a test).

    .venv/bin/python -m tests.core.bench_revoke_views

The bench cluster of agent.bench.cluster (10,000 pods, 1,000 policies, 100 on
this node): the first ViewTracker.update (every local pod walked), then pod
churn elsewhere (a remote pod relabelled, incremental compile) where only the
pods that consulted a changed set are walked again.
"""

from __future__ import annotations

import dataclasses
import time

from agent.bench.cluster import ClusterSpec, generate
from agent.core.compile import CompileOptions
from agent.core.flowviews import ViewTracker
from agent.core.incremental import IncrementalCompiler
from agent.core.model import Labels
from agent.core.revoke import local_addresses


def main() -> None:
    state = generate(ClusterSpec(pods=10_000, policies=1_000, local_pods=100)).state()
    compiler = IncrementalCompiler(node="node-0", options=CompileOptions())
    local = local_addresses(state, "node-0")
    tracker = ViewTracker()
    ruleset = compiler.compile(state, full=True)
    start = time.monotonic()
    tracker.update(ruleset, local)
    print(f"first update, {len(local)} local addresses: {1000 * (time.monotonic() - start):.0f} ms")
    remote = [p for p in state.pods.values() if p.node != "node-0" and p.ips][:6]
    for pod in remote:
        tier = "backend" if pod.labels.get("tier") == "frontend" else "frontend"
        moved = dataclasses.replace(pod, labels=Labels({**dict(pod.labels), "tier": tier}))
        state = dataclasses.replace(state, pods={**state.pods, pod.uid: moved})
        ruleset = compiler.compile(state)
        start = time.monotonic()
        changed = tracker.update(ruleset, local)
        print(
            f"remote pod relabelled: update {1000 * (time.monotonic() - start):.1f} ms, "
            f"{len(changed)} changed (incremental compile: {compiler.last_incremental})"
        )


if __name__ == "__main__":
    main()

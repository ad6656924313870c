"""What ClusterNetworkPolicies cost, on the bench's 10k-pod / 1k-policy cluster.

    python -m tests.perf.cnp_bench [--cnps 20]

Adds N ClusterNetworkPolicies (half Admin: own team Pass, monitoring Accept on a
named port, everyone else Deny, egress Deny to the metadata address and Accept to
10.0.0.0/8 on a port range; half Baseline: own team Accept, others Deny) to
agent.bench.cluster's cluster and prints: the full compile with and without them
(median of 3, rules and sets), one incremental compile after a new remote pod (what
the kernel is told: rules and chains written, set entries), and a 300x300-pod truth
table from the reference evaluator with and without them.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from agent.bench.cluster import TEAMS, ClusterSpec, generate
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.incremental import IncrementalCompiler
from agent.core.model import ClusterState, Protocol
from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy
from agent.core.render import plan
from agent.core.ruleset import Ruleset
from agent.core.semantics import ReferenceEvaluator
from agent.core.table import compute_table
from agent.core.trace import Packet, trace
from tests.builders import cnp_rule, make_cnp, sel

T = TypeVar("T")


def cluster_policies(count: int) -> list[ClusterNetworkPolicy]:
    out = []
    monitoring = {
        "pods": {
            "namespaceSelector": sel("kubernetes.io/metadata.name=monitoring"),
            "podSelector": {},
        }
    }
    for i in range(count):
        team = {"namespaces": {"matchLabels": {"team": TEAMS[i % len(TEAMS)]}}}
        if i % 2 == 0:
            out.append(
                make_cnp(
                    f"admin-{i}",
                    tier="Admin",
                    priority=i,
                    subject=team,
                    ingress=[
                        cnp_rule("Pass", team, name="own-team"),
                        cnp_rule(
                            "Accept",
                            monitoring,
                            name="monitoring",
                            protocols=[{"destinationNamedPort": "metrics"}],
                        ),
                        cnp_rule("Deny", {"namespaces": {}}, name="others"),
                    ],
                    egress=[
                        cnp_rule("Deny", {"networks": ["169.254.169.254/32"]}, to=True),
                        cnp_rule(
                            "Accept",
                            {"networks": ["10.0.0.0/8"]},
                            to=True,
                            protocols=[
                                {"tcp": {"destinationPort": {"range": {"start": 1, "end": 32767}}}}
                            ],
                        ),
                    ],
                )
            )
        else:
            out.append(
                make_cnp(
                    f"baseline-{i}",
                    tier="Baseline",
                    priority=i,
                    subject=team,
                    ingress=[cnp_rule("Accept", team), cnp_rule("Deny", {"namespaces": {}})],
                )
            )
    return out


def compile_full(state: ClusterState, options: CompileOptions) -> Ruleset:
    return compile_ruleset(state, node="node-0", options=options)


def median_time(fn: Callable[[], T], n: int = 3) -> tuple[float, T]:
    times, result = [], None
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), result


def rules_per_packet(base: ClusterState, with_cnp: ClusterState, options: CompileOptions) -> None:
    """Rules a NEW connection walks on node-0 (the tracer counts them as iptables would),
    from every local pod to one remote pod and back, mean and max."""
    local = [p for p in base.pods.values() if p.node == "node-0" and p.is_networked]
    remote = next(p for p in base.pods.values() if p.node != "node-0" and p.is_networked)
    for label, state in (("no CNP", base), ("with CNPs", with_cnp)):
        ruleset = compile_full(state, options)
        counts = []
        for pod in local:
            for src, dst in ((pod, remote), (remote, pod)):
                packet = Packet(src.ips[0], dst.ips[0], Protocol.TCP, 8080)
                counts.append(trace(ruleset, packet).evaluated)
        print(
            f"rules a new connection walks on node-0, {label}: mean "
            f"{statistics.mean(counts):.1f}, max {max(counts)} ({len(counts)} connections)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnps", type=int, default=20)
    args = parser.parse_args()
    base = generate(ClusterSpec(pods=10_000, policies=1_000, local_pods=100)).state()
    cnps = cluster_policies(args.cnps)
    with_cnp = replace(base, cluster_policies={c.name: c for c in cnps})
    options = CompileOptions()
    states: list[tuple[str, ClusterState]] = [("no CNP", base), (f"{args.cnps} CNPs", with_cnp)]
    for label, state in states:
        seconds, rs = median_time(functools.partial(compile_full, state, options))
        chains = [c for table in rs.tables.values() for c in table.chains]
        tier = sum(len(c.rules) for c in chains if "ADMIN-" in c.name or "BASELINE-" in c.name)
        print(
            f"full compile, {label}: {seconds * 1000:.0f} ms (median of 3); "
            f"{sum(len(c.rules) for c in chains)} rules ({tier} in tier chains), {len(rs.sets)} sets"
        )
    compiler = IncrementalCompiler(node="node-0", options=options)
    compiler.compile(with_cnp, full=True)
    before = compiler.compile(with_cnp)
    model = next(p for p in with_cnp.pods.values() if p.node != "node-0")
    new = replace(model, uid="uid-bench-new", name="bench-new", ips=("10.64.200.1",))
    after_state = replace(with_cnp, pods={**with_cnp.pods, new.uid: new})
    start = time.perf_counter()
    after = compiler.compile(after_state)
    seconds = time.perf_counter() - start
    counts = plan(before, after).counts
    print(
        f"incremental compile, one new remote pod, {args.cnps} CNPs: {seconds * 1000:.1f} ms "
        f"(incremental: {compiler.last_incremental}); rules written {counts.rules_written}, "
        f"chains written {counts.chains_written}, set entries +{counts.set_entries_added}"
    )
    rules_per_packet(base, with_cnp, options)
    pods = sorted((p for p in base.pods.values() if p.is_networked), key=lambda p: p.key)[:300]
    for label, state in states:
        evaluator = ReferenceEvaluator(state)
        start = time.perf_counter()
        compute_table(evaluator.allowed, pods, [(8080, Protocol.TCP)])
        print(f"reference evaluator, 300x300 table, {label}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()

"""Dataplane benchmark: apply times and sizes at 10k pods / 1k policies / 100 local pods.

    .venv/bin/python -m tests.kernel.bench_dataplane [--backend nft legacy python-iptables]
        [--pods 10000] [--policies 1000] [--nodes 100] [--namespaces 99] [--repeat 5]
        [--dual-stack]

For each backend, in a fresh scratch namespace: one full apply (the adopt-at-start
path: owned chains and sets are listed first), a no-op apply, a one-policy change
(one port of a policy selecting local pods), a one-pod relabel (set members
only), `tampered()` and `cleanup()`. Prints one markdown table row per backend.
The cluster is `tests/dataplane/scale.py`'s synthetic one (IPv4 pods).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import statistics
import time
from collections.abc import Callable

from agent.core import naming
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import ClusterState, Labels, PolicyPort, Protocol
from agent.core.ruleset import Ruleset
from agent.dataplane.applier import Applier
from agent.dataplane.backend import select_backend
from agent.sandbox import netns
from agent.sandbox.setns import inside
from tests.dataplane.scale import scale_cluster

NODE = "node-0"


def compile_for(state: ClusterState) -> Ruleset:
    return compile_ruleset(state, node=NODE, options=CompileOptions())


def changed_policy(state: ClusterState, ruleset: Ruleset) -> ClusterState:
    """The state with one port of one policy that has a chain on this node changed."""
    chains = {c.name for t in ruleset.tables.values() for c in t.chains}
    for key, policy in sorted(state.policies.items()):
        if naming.policy_chain("ingress", key) in chains:
            rule = policy.ingress[0]
            ports = (PolicyPort(Protocol.TCP, 81), *rule.ports[1:])
            new_rule = dataclasses.replace(rule, ports=ports)
            new = dataclasses.replace(policy, ingress=(new_rule, *policy.ingress[1:]))
            return dataclasses.replace(state, policies={**state.policies, key: new})
    raise SystemExit("no policy selects a local pod")


def relabelled_pod(state: ClusterState) -> ClusterState:
    """The state with one remote pod's app label changed (moves it between sets)."""
    uid, pod = next((u, p) for u, p in sorted(state.pods.items()) if p.node != NODE)
    labels = Labels({**pod.labels, "app": "app-moved"})
    return dataclasses.replace(
        state, pods={**state.pods, uid: dataclasses.replace(pod, labels=labels)}
    )


def _six(v4: str) -> str:
    """An IPv4 address or CIDR embedded in fd00:10::/96 (same structure, prefix + 96)."""
    net = ipaddress.ip_network(v4, strict=False)
    addr = ipaddress.IPv6Address(int(ipaddress.IPv6Address("fd00:10::")) + int(net.network_address))
    return str(addr) if "/" not in v4 else f"{addr}/{net.prefixlen + 96}"


def dual_stack(state: ClusterState) -> ClusterState:
    """Give every pod an IPv6 address and every node an IPv6 pod CIDR next to the IPv4 ones."""
    pods = {
        uid: dataclasses.replace(pod, ips=(*pod.ips, _six(pod.ips[0])))
        for uid, pod in state.pods.items()
    }
    nodes = {
        name: dataclasses.replace(node, pod_cidrs=(*node.pod_cidrs, _six(node.pod_cidrs[0])))
        for name, node in state.nodes.items()
    }
    return dataclasses.replace(state, pods=pods, nodes=nodes)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(backend: str, state: ClusterState, repeat: int) -> dict[str, str]:
    base = compile_for(state)
    policy_change = compile_for(changed_policy(state, base))
    pod_change = compile_for(relabelled_pod(state))
    with netns.netns("bench") as ns, inside(ns):
        applier = Applier(select_backend(backend))
        full = applier.apply(base)
        noop = [timed(lambda: applier.apply(base)) for _ in range(repeat)]
        pol: list[float] = []
        pod: list[float] = []
        for _ in range(repeat):
            pol.append(applier.apply(policy_change).seconds)
            applier.apply(base)
            pod.append(applier.apply(pod_change).seconds)
            applier.apply(base)
        tamper = [timed(applier.tampered) for _ in range(repeat)]
        assert not applier.tampered()
        cleanup = timed(applier.cleanup)
    med = statistics.median
    return {
        "backend": backend,
        "full": f"{full.seconds:.2f} s",
        "noop": f"{med(noop) * 1000:.0f} ms",
        "policy": f"{med(pol) * 1000:.0f} ms",
        "pod": f"{med(pod) * 1000:.0f} ms",
        "tampered": f"{med(tamper) * 1000:.0f} ms",
        "cleanup": f"{cleanup:.2f} s",
    }


def sizes(ruleset: Ruleset) -> str:
    parts = []
    for family, table in sorted(ruleset.tables.items()):
        parts.append(f"IPv{int(family)}: {len(table.chains)} chains, {table.rule_count()} rules")
    entries = sum(len(s.members) + len(s.nomatch) for s in ruleset.sets.values())
    parts.append(f"{len(ruleset.sets)} ipsets, {entries} set entries")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", nargs="+", default=["nft", "legacy", "python-iptables"])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--namespaces", type=int, default=99)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dual-stack", action="store_true", help="give pods IPv6 too")
    args = parser.parse_args()
    # 99 namespaces (not 100): with 100 nodes and 100 namespaces the generator puts
    # all of node-0's pods into one namespace; 99 spreads them over all namespaces.
    state = scale_cluster(
        pods=args.pods, policies=args.policies, nodes=args.nodes, namespaces=args.namespaces
    )
    if args.dual_stack:
        state = dual_stack(state)
    start = time.perf_counter()
    ruleset = compile_for(state)
    local = sum(1 for p in state.pods.values() if p.node == NODE)
    print(f"{args.pods} pods, {args.policies} policies, {local} local pods on {NODE}")
    print(f"compile: {time.perf_counter() - start:.2f} s; {sizes(ruleset)}")
    print(
        "| backend | full apply | no-op apply | one-policy change | one-pod relabel "
        "| tampered() | cleanup |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for backend in args.backend:
        r = bench(backend, state, args.repeat)
        print(
            f"| {r['backend']} | {r['full']} | {r['noop']} | {r['policy']} | {r['pod']} "
            f"| {r['tampered']} | {r['cleanup']} |"
        )


if __name__ == "__main__":
    main()

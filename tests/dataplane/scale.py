"""A synthetic cluster for compile-speed tests: N pods over M namespaces and K nodes, P policies."""

from __future__ import annotations

import argparse
import ipaddress
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from agent.core.model import (
    ClusterState,
    ContainerPort,
    Direction,
    IPBlock,
    Labels,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Peer,
    Pod,
    PolicyPort,
    Protocol,
    Rule,
)


def _node_net(node: int) -> ipaddress.IPv4Network:
    """Node n's podCIDR: a /20 (4,094 pods) carved from 10.64.0.0/10."""
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.64.0.0")) + node * 4096, 20))


def scale_cluster(
    *,
    pods: int = 10_000,
    policies: int = 1_000,
    nodes: int = 100,
    namespaces: int = 100,
    seed: int = 1,
) -> ClusterState:
    """Pods spread evenly over nodes (pods/nodes local to each), 10 apps per namespace."""
    rng = random.Random(seed)
    ns_objs = {
        f"ns{i}": Namespace(
            f"ns{i}", Labels({"kubernetes.io/metadata.name": f"ns{i}", "team": f"t{i % 10}"})
        )
        for i in range(namespaces)
    }
    pod_objs: dict[str, Pod] = {}
    for i in range(pods):
        ns = f"ns{i % namespaces}"
        node = i % nodes
        pod_objs[f"uid-{i}"] = Pod(
            namespace=ns,
            name=f"p{i}",
            uid=f"uid-{i}",
            labels=Labels({"app": f"app{(i // namespaces) % 10}", "tier": f"t{i % 3}"}),
            ips=(str(_node_net(node).network_address + 10 + i // nodes),),
            node=f"node-{node}",
            ports=(ContainerPort(8080, Protocol.TCP, "http"),),
        )
    pol_objs: dict[str, NetworkPolicy] = {}
    for i in range(policies):
        ns = f"ns{i % namespaces}"
        peers = (
            Peer(pod_selector=LabelSelector((("app", f"app{rng.randrange(10)}"),))),
            Peer(
                pod_selector=LabelSelector((("tier", f"t{rng.randrange(3)}"),)),
                namespace_selector=LabelSelector((("team", f"t{rng.randrange(10)}"),)),
            ),
            Peer(ip_block=IPBlock(f"192.168.{i % 256}.0/24", (f"192.168.{i % 256}.128/25",))),
        )
        ports = (PolicyPort(Protocol.TCP, 80), PolicyPort(Protocol.TCP, "http"))
        pol = NetworkPolicy(
            namespace=ns,
            name=f"pol{i}",
            pod_selector=LabelSelector((("app", f"app{rng.randrange(10)}"),)),
            policy_types=frozenset({Direction.INGRESS, Direction.EGRESS}),
            ingress=(Rule(peers=peers, ports=ports),),
            egress=(Rule(peers=peers[:1], ports=ports[:1]),),
        )
        pol_objs[pol.key] = pol
    node_objs = {
        f"node-{n}": Node(f"node-{n}", (f"172.18.{n // 256}.{n % 256}",), (str(_node_net(n)),))
        for n in range(nodes)
    }
    return ClusterState(namespaces=ns_objs, pods=pod_objs, policies=pol_objs, nodes=node_objs)


T = TypeVar("T")


def _best(fn: Callable[[], T]) -> tuple[float, T]:
    """Best wall time of 5 runs, and the result."""
    times: list[float] = []
    for _ in range(5):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    """Print compile and plan times for the synthetic cluster (best of 5, one family)."""
    from agent.core.compile import CompileOptions, compile_ruleset
    from agent.core.model import Family
    from agent.core.render import plan

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args()
    state = scale_cluster(pods=args.pods, policies=args.policies, nodes=args.nodes)
    options = CompileOptions(families=(Family.V4,))
    t, rs = _best(lambda: compile_ruleset(state, node="node-0", options=options))
    table = rs.table(Family.V4)
    entries = sum(len(s.members) + len(s.nomatch) for s in rs.sets.values())
    print(
        f"compile node-0: {t * 1000:.0f} ms: {len(table.chains)} chains, "
        f"{table.rule_count()} rules, {len(rs.sets)} sets, {entries} set entries"
    )
    t, _ = _best(lambda: plan(None, rs))
    print(f"full plan: {t * 1000:.0f} ms")
    pods = dict(state.pods)
    del pods["uid-2"]
    after = compile_ruleset(replace(state, pods=pods), node="node-0", options=options)
    t, p = _best(lambda: plan(rs, after))
    print(f"plan after a pod delete: {t * 1000:.1f} ms: {p.counts}")


if __name__ == "__main__":
    main()

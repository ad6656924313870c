"""A synthetic cluster for compile-speed tests: N pods over M namespaces and K nodes, P policies."""

from __future__ import annotations

import random

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


def scale_cluster(
    *,
    pods: int = 10_000,
    policies: int = 1_000,
    nodes: int = 100,
    namespaces: int = 100,
    seed: int = 1,
) -> ClusterState:
    """Pods spread evenly over nodes (so pods/nodes are local to each), apps of 10 pods."""
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
            ips=(f"10.{64 + node // 256}.{node % 256}.{10 + i // nodes}",),
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
        f"node-{n}": Node(
            f"node-{n}", (f"172.18.{n // 256}.{n % 256}",), (f"10.{64 + n // 256}.{n % 256}.0/24",)
        )
        for n in range(nodes)
    }
    return ClusterState(namespaces=ns_objs, pods=pod_objs, policies=pol_objs, nodes=node_objs)

"""The official client's V1* objects convert exactly like the equivalent dicts."""

from __future__ import annotations

from kubernetes import client as k

from agent.core.model import ContainerPort, Direction, IPBlock, LabelSelector, PolicyPort, Protocol
from agent.kube.convert import (
    namespace_from_client,
    node_from_client,
    pod_from_client,
    policy_from_client,
    to_dict,
)


def test_pod() -> None:
    pod = k.V1Pod(
        metadata=k.V1ObjectMeta(namespace="x", name="a", uid="u1", labels={"pod": "a"}),
        spec=k.V1PodSpec(
            node_name="node-0",
            init_containers=[
                k.V1Container(name="i", ports=[k.V1ContainerPort(container_port=9000)])
            ],
            containers=[
                k.V1Container(
                    name="c",
                    ports=[k.V1ContainerPort(container_port=80, name="http", protocol="TCP")],
                )
            ],
        ),
        status=k.V1PodStatus(
            phase="Running", pod_ip="10.244.0.10", pod_ips=[k.V1PodIP(ip="10.244.0.10")]
        ),
    )
    p = pod_from_client(pod)
    assert (p.key, p.uid, p.node, p.ips) == ("x/a", "u1", "node-0", ("10.244.0.10",))
    assert p.ports == (
        ContainerPort(9000, Protocol.TCP, None),
        ContainerPort(80, Protocol.TCP, "http"),
    )


def test_policy_with_intstr_ports() -> None:
    pol = k.V1NetworkPolicy(
        metadata=k.V1ObjectMeta(namespace="x", name="p"),
        spec=k.V1NetworkPolicySpec(
            pod_selector=k.V1LabelSelector(match_labels={"pod": "a"}),
            ingress=[
                k.V1NetworkPolicyIngressRule(
                    _from=[
                        k.V1NetworkPolicyPeer(
                            ip_block=k.V1IPBlock(cidr="10.0.0.0/8", _except=["10.1.0.0/16"])
                        )
                    ],
                    ports=[
                        k.V1NetworkPolicyPort(port="http"),
                        k.V1NetworkPolicyPort(port=8000, end_port=8080, protocol="UDP"),
                    ],
                )
            ],
            egress=[k.V1NetworkPolicyEgressRule()],
        ),
    )
    d = to_dict(pol)
    assert d["spec"]["ingress"][0]["from"][0]["ipBlock"]["except"] == ["10.1.0.0/16"]
    p = policy_from_client(pol)
    assert p.valid, p.errors
    assert p.pod_selector == LabelSelector((("pod", "a"),))
    assert p.policy_types == frozenset(Direction)
    (rule,) = p.ingress
    assert rule.peers[0].ip_block == IPBlock("10.0.0.0/8", ("10.1.0.0/16",))
    assert rule.ports == (PolicyPort(Protocol.TCP, "http"), PolicyPort(Protocol.UDP, 8000, 8080))


def test_invalid_policy_from_client_fails_closed() -> None:
    pol = k.V1NetworkPolicy(
        metadata=k.V1ObjectMeta(namespace="x", name="p"),
        spec=k.V1NetworkPolicySpec(
            pod_selector=k.V1LabelSelector(),
            ingress=[k.V1NetworkPolicyIngressRule(ports=[k.V1NetworkPolicyPort(port=0)])],
        ),
    )
    p = policy_from_client(pol)
    assert [e.path for e in p.errors] == ["spec.ingress[0].ports[0].port"]
    assert p.ingress == ()


def test_namespace_and_node() -> None:
    ns = namespace_from_client(
        k.V1Namespace(metadata=k.V1ObjectMeta(name="y", labels={"team": "b"}))
    )
    assert dict(ns.labels) == {"team": "b", "kubernetes.io/metadata.name": "y"}
    node = node_from_client(
        k.V1Node(
            metadata=k.V1ObjectMeta(name="node-1"),
            spec=k.V1NodeSpec(pod_cidr="10.244.1.0/24", pod_cidrs=["10.244.1.0/24"]),
            status=k.V1NodeStatus(
                addresses=[k.V1NodeAddress(type="InternalIP", address="172.18.0.3")]
            ),
        )
    )
    assert (node.addresses, node.pod_cidrs) == (("172.18.0.3",), ("10.244.1.0/24",))

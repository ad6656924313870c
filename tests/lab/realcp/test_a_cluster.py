"""The real control plane comes up: kubectl works, Flannel assigns pod addresses, VXLAN carries
pod traffic between nodes, and the agents run as the netpol-agent ServiceAccount."""

from __future__ import annotations

import ipaddress
import json

from agent.core.model import Protocol
from agent.lab.netsock import Attempt, probe
from agent.lab.realcp import flannel
from agent.lab.realcp.bootstrap import agent_objects
from tests.lab.realcp.conftest import RealCluster, wait_running

PODS = [
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"hello-{i}", "namespace": "default", "labels": {"app": "hello"}},
        "spec": {
            "nodeName": f"node-{i}",
            "containers": [
                {"name": "c", "image": "lab", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
            ],
        },
    }
    for i in (0, 1)
]


def test_kubectl_sees_the_real_cluster(real_lab: RealCluster) -> None:
    version = json.loads(real_lab.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert "lab" not in version["serverVersion"]["gitVersion"]
    nodes = json.loads(real_lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes} == {
        "node-0": "10.244.0.0/24",
        "node-1": "10.244.1.0/24",
    }
    for node in nodes:  # flanneld annotated its node with its VTEP
        annotations = node["metadata"].get("annotations") or {}
        assert annotations.get("flannel.alpha.coreos.com/backend-type") == "vxlan"
    assert "netpol-agent" in real_lab.kubectl("get", "sa", "-n", "netpol-agent").stdout


def test_the_agent_role_is_deploy_base(real_lab: RealCluster) -> None:
    role = real_lab.client.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/netpol-agent")
    wanted = next(o for o in agent_objects() if o["kind"] == "ClusterRole")
    assert role["rules"] == wanted["rules"]
    kubeconfig = json.loads(real_lab.paths.node_kubeconfig.read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    assert token.count(".") == 2  # a JWT from the TokenRequest API, no certificate
    who = real_lab.kubectl(
        "auth", "can-i", "--list", "--as=system:serviceaccount:netpol-agent:netpol-agent"
    ).stdout
    assert "networkpolicies.networking.k8s.io" in who
    denied = real_lab.kubectl(
        "auth", "can-i", "create", "pods",
        "--as=system:serviceaccount:netpol-agent:netpol-agent", check=False,
    )  # fmt: skip
    assert denied.stdout.strip() == "no"


def test_pods_get_flannel_addresses_and_cross_nodes_over_vxlan(real_lab: RealCluster) -> None:
    real_lab.apply(PODS)
    try:
        pods = wait_running(real_lab.client, "default", ["hello-0", "hello-1"])
        for i, node in enumerate(real_lab.topo.nodes):
            env = flannel.read_subnet_file(
                flannel.NodeFiles.of(real_lab.paths.root, node).subnet_file
            )
            assert env["FLANNEL_SUBNET"] == f"10.244.{i}.1/24"
            ip = pods[f"hello-{i}"]["status"]["podIP"]
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(node.pod_cidr)
            links = real_lab.netns_exec(node.netns, "ip", "-d", "-o", "link", "show", "flannel.1")
            assert "vxlan id 1" in links
            routes = real_lab.netns_exec(node.netns, "ip", "-4", "route")
            other = real_lab.topo.nodes[1 - i]
            assert f"{other.pod_cidr} via 10.244.{other.index}.0 dev flannel.1" in routes
        node0 = real_lab.topo.nodes[0]
        before = _tx_packets(real_lab, node0.netns)
        src = pods["hello-0"]
        results = probe(
            [
                Attempt(
                    _pod_netns(real_lab, src),
                    pods["hello-1"]["status"]["podIP"],
                    80,
                    Protocol.TCP,
                )
            ],
            timeout=3.0,
        )
        assert all(results.values()), "hello-0 (node-0) could not reach hello-1 (node-1)"
        assert _tx_packets(real_lab, node0.netns) > before, "no packet left through flannel.1"
    finally:
        real_lab.remove(PODS)


def _pod_netns(lab: RealCluster, pod: dict[str, object]) -> str:
    from agent.lab.kubelet import pod_netns

    meta = pod["metadata"]
    assert isinstance(meta, dict)
    return pod_netns(lab.topo, str(meta["uid"]))


def _tx_packets(lab: RealCluster, netns: str) -> int:
    out = lab.netns_exec(netns, "ip", "-s", "-j", "link", "show", "flannel.1")
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])

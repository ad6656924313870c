"""The lab's address plan and setup commands, without a kernel (tests/conftest.py's plan)."""

from __future__ import annotations

import pytest

from agent.core.errors import InputError
from agent.core.model import Protocol
from agent.lab import topology
from agent.lab.kubelet import declared_ports, pod_mac
from agent.lab.netsock import Port
from tests.lab.podspecs import pod_dict


def test_nodes_follow_the_address_plan() -> None:
    topo = topology.plan("demo", nodes=3, ipv6=True)
    n2 = topo.node("node-2")
    assert n2.netns == "npa-lab-demo-n2"
    assert (n2.ip, n2.ip6) == ("172.18.0.4", "fd00:172:18::4")
    assert (n2.pod_cidr, n2.gateway) == ("10.244.2.0/24", "10.244.2.1")
    assert (n2.pod_cidr6, n2.gateway6) == ("fd00:10:244:2::/64", "fd00:10:244:2::1")
    assert (n2.pod_ip(0), n2.pod_ip(1), n2.pod_ip6(0)) == (
        "10.244.2.10",
        "10.244.2.11",
        "fd00:10:244:2::a",
    )
    assert topo.net_netns == "npa-lab-demo-net"
    assert all(n.netns.startswith(topo.prefix) for n in topo.nodes)


def test_vxlan_routes_every_other_node_through_flannel() -> None:
    topo = topology.plan("demo", nodes=3)
    lines = topology.node_commands(topo, topo.node("node-0"))
    assert "route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in lines
    assert "route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in lines
    assert not any("10.244.0.0/24" in line for line in lines if line.startswith("route"))
    fdb = topology.fdb_commands(topo, topo.node("node-0"))
    assert fdb == [
        "fdb append 0e:6c:61:62:00:01 dev flannel.1 dst 172.18.0.3",
        "fdb append 0e:6c:61:62:00:02 dev flannel.1 dst 172.18.0.4",
    ]


def test_host_gw_routes_via_the_other_nodes() -> None:
    topo = topology.plan("demo", nodes=2, overlay="host-gw")
    assert "route add 10.244.1.0/24 via 172.18.0.3" in topology.node_commands(topo, topo.nodes[0])
    assert topology.fdb_commands(topo, topo.nodes[0]) == []


def test_underlay_links_only_lab_namespaces() -> None:
    topo = topology.plan("demo", nodes=2)
    lines = topology.underlay_commands(topo)
    assert "link add veth-n1 type veth peer name eth0 netns npa-lab-demo-n1" in lines
    assert "addr add 172.18.0.1/24 dev br0" in lines


@pytest.mark.parametrize(
    ("name", "nodes", "overlay"),
    [("Bad", 2, "vxlan"), ("x" * 13, 2, "vxlan"), ("ok", 0, "vxlan"), ("ok", 2, "gre")],
)
def test_bad_input_is_named(name: str, nodes: int, overlay: str) -> None:
    with pytest.raises(InputError):
        topology.plan(name, nodes=nodes, overlay=overlay)


def test_declared_ports_and_mac() -> None:
    pod = pod_dict("x/a", ports=((80, "TCP"), (80, "UDP"), (80, "TCP")))
    assert declared_ports(pod) == [Port(80, Protocol.TCP), Port(80, Protocol.UDP)]
    assert pod_mac("10.244.1.10") == "0a:58:0a:f4:01:0a"

"""Lab networking without API server or agent: topology, kubelets, listeners and probes.

With no policy anywhere every pair must connect, across nodes and within one,
over TCP and UDP, IPv4 and IPv6; pods get the address plan of tests/conftest.py.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from agent.core.convert import pod_from_dict
from agent.core.model import Family, Protocol
from agent.lab import topology
from agent.lab.kubelet import Kubelet, pod_netns
from agent.lab.netsock import (
    PROBE_SOURCE_PORTS,
    Attempt,
    ListenerServer,
    SourcePorts,
    open_socket,
    probe,
)
from agent.lab.probe import probe_table
from tests.lab.podspecs import pod_dict

pytestmark = pytest.mark.kernel


class Recorder:
    def __init__(self) -> None:
        self.patches: dict[str, Mapping[str, Any]] = {}
        self.lock = threading.Lock()

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.patches[path] = patch
        return {}


class Net:
    def __init__(self, topo: topology.Topology) -> None:
        self.topo = topo
        self.recorder = Recorder()
        self.listeners = ListenerServer()
        self.errors: list[str] = []
        self.kubelets = {
            n.name: Kubelet(
                topo=topo,
                node=n,
                client=self.recorder,
                listeners=self.listeners,
                on_error=self.errors.append,
            )
            for n in topo.nodes
        }
        self.pods: dict[str, dict[str, Any]] = {}

    def add(self, pod: dict[str, Any]) -> None:
        self.kubelets[pod["spec"]["nodeName"]].submit("ADDED", pod)
        self.pods[pod["metadata"]["uid"]] = pod

    def delete(self, pod: dict[str, Any]) -> None:
        self.kubelets[pod["spec"]["nodeName"]].submit("DELETED", pod)
        self.pods.pop(pod["metadata"]["uid"])

    def settle(self) -> None:
        for k in self.kubelets.values():
            k.drain()
        assert not self.errors, self.errors

    def status(self, pod: dict[str, Any]) -> Mapping[str, Any]:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        status: Mapping[str, Any] = self.recorder.patches[path]["status"]
        return status

    def model_pods(self) -> list[Any]:
        out = []
        for pod in self.pods.values():
            merged = {**pod, "status": self.status(pod)}
            out.append(pod_from_dict(merged))
        return sorted(out, key=lambda p: p.key)

    def close(self) -> None:
        for k in self.kubelets.values():
            k.stop()
        self.listeners.close()


@pytest.fixture
def net(request: pytest.FixtureRequest) -> Iterator[Net]:
    ipv6 = getattr(request, "param", False)
    topo = topology.plan(f"t{secrets.token_hex(4)}", nodes=2, ipv6=ipv6)
    try:
        topology.build(topo)
        n = Net(topo)
        try:
            yield n
        finally:
            n.close()
    finally:
        topology.destroy(topo.name)
    assert topology.lab_namespaces(topo.name) == []


def test_address_plan_and_status(net: Net) -> None:
    a = pod_dict("x/a", node="node-0")
    b = pod_dict("x/b", node="node-0")
    c = pod_dict("x/c", node="node-1")
    for pod in (a, b, c):
        net.add(pod)
    net.settle()
    assert net.status(a)["podIP"] == "10.244.0.10"
    assert net.status(b)["podIP"] == "10.244.0.11"
    assert net.status(c)["podIP"] == "10.244.1.10"
    st = net.status(c)
    assert st["phase"] == "Running" and st["hostIP"] == "172.18.0.3"
    assert {c["type"] for c in st["conditions"] if c["status"] == "True"} >= {"Ready"}


@pytest.mark.parametrize("net", [False, True], indirect=True, ids=["ipv4", "dual"])
def test_every_pair_connects_without_policy(net: Net) -> None:
    for key, node in (("x/a", "node-0"), ("x/b", "node-0"), ("y/a", "node-1")):
        net.add(pod_dict(key, node=node, ports=((80, "TCP"), (81, "UDP"))))
    net.settle()
    pods = net.model_pods()
    families = [Family.V4, Family.V6] if net.topo.ipv6 else [Family.V4]
    for family in families:
        table = probe_table(net.topo, pods, [(80, Protocol.TCP), (81, Protocol.UDP)], family=family)
        for block in table.blocks:
            assert all(all(row.values()) for row in block.allowed.values()), block


def test_undeclared_port_is_not_reachable(net: Net) -> None:
    net.add(pod_dict("x/a", node="node-0", ports=((80, "TCP"),)))
    net.add(pod_dict("x/b", node="node-1", ports=((80, "TCP"),)))
    net.settle()
    table = probe_table(net.topo, net.model_pods(), [(80, Protocol.TCP), (81, Protocol.TCP)])
    assert table.block(80, Protocol.TCP).allowed["x/a"]["x/b"]  # type: ignore[union-attr]
    assert not table.block(81, Protocol.TCP).allowed["x/a"]["x/b"]  # type: ignore[union-attr]


def test_delete_and_recreate_reuses_address_and_tears_down(net: Net) -> None:
    a = pod_dict("x/a", node="node-0")
    net.add(a)
    net.settle()
    first_ns = pod_netns(net.topo, a["metadata"]["uid"])
    assert first_ns in topology.lab_namespaces(net.topo.name)
    net.delete(a)
    net.settle()
    assert first_ns not in topology.lab_namespaces(net.topo.name)
    again = pod_dict("x/a", node="node-0")
    net.add(again)
    other = pod_dict("y/b", node="node-1")
    net.add(other)
    net.settle()
    assert net.status(again)["podIP"] == "10.244.0.10"
    table = probe_table(net.topo, net.model_pods(), [(80, Protocol.TCP)])
    assert all(all(r.values()) for r in table.blocks[0].allowed.values())


def test_host_network_pod_listens_in_node_namespace(net: Net) -> None:
    h = pod_dict("kube-system/h", node="node-1", host_network=True, ports=((8080, "TCP"),))
    net.add(h)
    a = pod_dict("x/a", node="node-0")
    net.add(a)
    net.settle()
    assert net.status(h)["podIP"] == "172.18.0.3"
    node0 = net.topo.node("node-0").netns
    got = probe(
        [
            Attempt(pod_netns(net.topo, a["metadata"]["uid"]), "172.18.0.3", 8080, Protocol.TCP),
            Attempt(node0, "10.244.0.10", 80, Protocol.TCP),
            Attempt(node0, "10.244.0.10", 80, Protocol.UDP),
        ],
        timeout=1.0,
    )
    assert list(got.values()) == [True, True, True]


def test_probe_source_ports_follow_each_other() -> None:
    ports = SourcePorts(range(100, 103))
    att = Attempt("npa-x", "10.244.0.10", 80, Protocol.UDP)
    first = ports.take(att)
    taken = [first] + [ports.take(att) for _ in range(5)]
    assert taken == [100 + (first - 100 + i) % 3 for i in range(6)]


def test_every_probe_is_a_new_flow(net: Net) -> None:
    """Probing a pair again never reuses a source port (the kernel's random pick may:
    a reused UDP 5-tuple rides the previous probe's conntrack entry)."""
    net.add(pod_dict("x/a", node="node-0", ports=((80, "TCP"),)))
    net.add(pod_dict("x/b", node="node-1", ports=((80, "TCP"),)))
    net.settle()
    a, b = net.model_pods()
    seen: list[tuple[str, int]] = []
    server = open_socket(pod_netns(net.topo, b.uid), Family.V4, Protocol.UDP)
    server.bind(("0.0.0.0", 9999))
    server.settimeout(0.2)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(64)
            except OSError:
                continue
            seen.append(addr)
            server.sendto(data, addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        att = Attempt(pod_netns(net.topo, a.uid), b.ips[0], 9999, Protocol.UDP)
        for _ in range(20):
            assert probe([att], timeout=2.0) == {att: True}
    finally:
        stop.set()
        thread.join()
        server.close()
    ports = [port for _ip, port in seen]
    assert len(set(ports)) == 20, ports
    assert all(port in PROBE_SOURCE_PORTS for port in ports)

"""Policies meet Service traffic: kube-proxy DNATs, our chains decide on the backing pod.

One backend `web` on node-1 behind a ClusterIP Service and two NodePort Services
(externalTrafficPolicy Cluster and Local); clients on both nodes, half of them allowed
by the backend's ingress policy. Each path must give the engine's verdict for the
source address the backend's node really sees (`seen_source`, docs/limitations.md):

- a pod's own node or a ClusterIP: the pod itself (kube-proxy's masquerade, if any,
  happens in POSTROUTING, after our FORWARD chains, on the backend's node);
- another node's address: Flannel (`--ip-masq`) masquerades the pod to its own
  node's address on the way out (the destination is outside the pod network);
  externalTrafficPolicy Local then sees an external client and only serves local
  endpoints (none on node-0: kube-proxy drops);
- externalTrafficPolicy Cluster through a node that is not the backend's: that
  node masquerades to its flannel.1 address (10.244.<i>.0) before the packet
  crosses, so the backend's node sees that address.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agent.core.convert import state_from_dicts
from agent.core.model import Pod, Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.lab.kubelet import pod_netns
from agent.lab.netsock import Attempt, probe
from agent.lab.probe import snapshot
from agent.lab.realcp.procs import Programs
from tests.lab.realcp.conftest import RealCluster, wait_running

NS = "svc"
CLIENTS = {"ok-0": ("client", "node-0"), "no-0": ("other", "node-0"),
           "ok-1": ("client", "node-1"), "no-1": ("other", "node-1")}  # fmt: skip
NODEPORT_CLUSTER, NODEPORT_LOCAL = 30080, 30081


def _pod(name: str, labels: dict[str, str], node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "c", "image": "lab", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
            ],
        },
    }


def _service(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 8080, "targetPort": 80, "protocol": "TCP"}
    spec: dict[str, Any] = {"type": kind, "selector": {"app": "web"}, "ports": [port]}
    if "node_port" in extra:
        port["nodePort"] = extra.pop("node_port")
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": spec}  # fmt: skip


OBJECTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    _pod("web", {"app": "web"}, "node-1"),
    *(_pod(n, {"role": role}, node) for n, (role, node) in CLIENTS.items()),
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web-from-clients", "namespace": NS},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
        },
    },
    _service("web", "ClusterIP"),
    _service(
        "web-cluster", "NodePort", node_port=NODEPORT_CLUSTER, externalTrafficPolicy="Cluster"
    ),
    _service("web-local", "NodePort", node_port=NODEPORT_LOCAL, externalTrafficPolicy="Local"),
]


def _flannel_address(lab: RealCluster, netns: str) -> str:
    out = lab.netns_exec(netns, "ip", "-4", "-o", "addr", "show", "flannel.1")
    return out.split("inet ", 1)[1].split("/", 1)[0]


def test_service_probes_match_the_engine_for_the_backing_pod(real_lab: RealCluster) -> None:
    real_lab.apply(OBJECTS)
    try:
        pods = wait_running(real_lab.client, NS, ["web", *CLIENTS])
        cluster_ip = real_lab.client.get(f"/api/v1/namespaces/{NS}/services/web")["spec"][
            "clusterIP"
        ]
        node_ip = {n.name: n.ip for n in real_lab.topo.nodes}
        snat = {n.name: _flannel_address(real_lab, n.netns) for n in real_lab.topo.nodes}
        snap = snapshot(real_lab.client)
        _, diff = real_lab.probe([(80, Protocol.TCP)])  # the agents applied the policy
        assert diff.empty, diff
        engine = ReferenceEvaluator(state_from_dicts(list(snap.objects)))
        model = {p.key: p for p in snap.state.pods.values()}
        web = model[f"{NS}/web"]

        paths = {
            "ClusterIP": (cluster_ip, 8080, None, "Cluster"),
            "NodePort Cluster via node-0": (
                node_ip["node-0"],
                NODEPORT_CLUSTER,
                "node-0",
                "Cluster",
            ),
            "NodePort Cluster via node-1": (
                node_ip["node-1"],
                NODEPORT_CLUSTER,
                "node-1",
                "Cluster",
            ),
            "NodePort Local via node-0": (node_ip["node-0"], NODEPORT_LOCAL, "node-0", "Local"),
            "NodePort Local via node-1": (node_ip["node-1"], NODEPORT_LOCAL, "node-1", "Local"),
        }

        def seen_source(client: str, via: str | None, policy: str) -> Pod | str | None:
            """What web's node sees as the source (None: kube-proxy drops the packet)."""
            pod = model[f"{NS}/{client}"]
            client_node = CLIENTS[client][1]
            if via is None or via == client_node:  # ClusterIP, or the client's own node
                if policy == "Cluster" and via is not None and via != "node-1":
                    return snat[via]  # forwarded to node-1 after masquerading
                return pod
            source = node_ip[client_node]  # Flannel masqueraded it on its way out
            if policy == "Local":
                return source if via == "node-1" else None  # node-0 has no local endpoint
            return source if via == "node-1" else snat[via]

        attempts = {
            (path, client): Attempt(
                pod_netns(real_lab.topo, pods[client]["metadata"]["uid"]), addr, port, Protocol.TCP
            )
            for path, (addr, port, _, _) in paths.items()
            for client in CLIENTS
        }
        expected = {}
        for path, client in attempts:
            source = seen_source(client, paths[path][2], paths[path][3])
            expected[(path, client)] = source is not None and engine.allowed(
                source, web, 80, Protocol.TCP
            )
        # kube-proxy programs Services a moment after the EndpointSlice appears: wait until
        # every expected-open path answers, then take the verdicts (blocked ones twice).
        deadline = time.monotonic() + 30
        while True:
            results = probe(list(attempts.values()), timeout=1.0)
            actual = {key: results[att] for key, att in attempts.items()}
            if all(actual[k] for k, ok in expected.items() if ok) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        wrong = {k: (expected[k], actual[k]) for k in attempts if expected[k] != actual[k]}
        assert not wrong, "engine vs kernel (path, client): " + "; ".join(
            f"{path} from {client}: engine {'allow' if e else 'block'}, kernel "
            f"{'allow' if a else 'block'}"
            for (path, client), (e, a) in sorted(wrong.items())
        )
        # What SNAT does to an allowed client: only its own node's ports and the ClusterIP
        # keep it allowed.
        assert actual[("ClusterIP", "ok-0")] and not actual[("ClusterIP", "no-0")]
        assert actual[("NodePort Local via node-0", "ok-0")]
        assert actual[("NodePort Cluster via node-1", "ok-1")]
        assert not actual[("NodePort Cluster via node-0", "ok-0")]
        assert not actual[("NodePort Cluster via node-1", "ok-0")]
    finally:
        real_lab.remove(OBJECTS)


def test_kube_proxy_and_flanneld_run_only_in_node_namespaces(real_lab: RealCluster) -> None:
    programs = Programs(real_lab.paths.root, real_lab.paths.logs)
    for node in real_lab.topo.nodes:
        netns = real_lab.netns_exec(node.netns, "readlink", "/proc/self/ns/net").strip()
        for name in (f"kube-proxy-{node.name}", f"flanneld-{node.name}"):
            pid = programs.pid(name)
            assert pid is not None, f"{name} is not running"
            assert os.readlink(f"/proc/{pid}/ns/net") == netns, f"{name} is not in {node.netns}"

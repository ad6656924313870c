"""Shared by the end-to-end tests and the latency benchmark: a node namespace with pods,
the lab API server listening inside it, and `netpol-agent run` as a process in it.

The API server's socket is created inside the node namespace (127.0.0.1 there),
so the agent reaches it exactly as a DaemonSet pod reaches its API server, and
nothing listens in the host namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.lab.apiserver import ApiServer
from agent.lab.apiserver import objects as lab_objects
from agent.lab.apiserver.resources import (
    CLUSTER_NETWORK_POLICIES,
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PODS,
)
from agent.sandbox.setns import inside
from agent.sandbox.sockets import Probe, probe_many
from agent.sandbox.topology import NodeSandbox, PodSandbox
from tests import polling

RESYNC = 3.0


def store_create(api: ApiServer, body: dict[str, Any]) -> int:
    """Create an object straight in the server's store (fast, no HTTP); returns its rv.

    A `metadata.uid` in `body` is dropped: the server assigns its own.
    """
    info = {
        "Pod": PODS,
        "Namespace": NAMESPACES,
        "Node": NODES,
        "NetworkPolicy": NETWORK_POLICIES,
        "ClusterNetworkPolicy": CLUSTER_NETWORK_POLICIES,
    }[body["kind"]]
    body = {k: v for k, v in body.items()}
    body["metadata"] = {k: v for k, v in body["metadata"].items() if k != "uid"}
    ns = body["metadata"].get("namespace") if info.namespaced else None
    obj = lab_objects.prepare_create(info, body, namespace=ns, now=api.handlers.now())
    stored = api.store.create(info, obj)
    return int(stored["metadata"]["resourceVersion"])


def pod_body(pod: PodSandbox, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "x", "name": pod.name, "labels": labels},
        "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "i"}]},
        "status": {
            "phase": "Running",
            "podIP": pod.ipv4,
            "podIPs": [{"ip": pod.ipv4}, {"ip": pod.ipv6}],
        },
    }


def deny(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "x", "name": name},
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"]},
    }


def api_in_namespace(netns_name: str, **options: Any) -> ApiServer:
    """A started lab API server whose listening socket lives in `netns_name` (127.0.0.1)."""
    with inside(netns_name):
        api = ApiServer(**options)
    return api.start()


def update(
    api: ApiServer, info: Any, ns: str, name: str, change: Callable[[dict[str, Any]], None]
) -> int:
    """Change an object in place through the store; returns the new resourceVersion."""

    def mutate(obj: dict[str, Any]) -> dict[str, Any]:
        change(obj)
        return obj

    return int(api.store.update(info, ns, name, mutate)["metadata"]["resourceVersion"])


@dataclass
class AgentProcess:
    """`netpol-agent run` inside a node namespace, talking to the API server there."""

    netns: str
    api: ApiServer
    kubeconfig: Path
    log: Path
    resync: float = RESYNC
    metrics_port: int = 19847
    log_level: str = "info"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-m",
            "agent",
            "run",
            "--node-name",
            "node-0",
            "--kubeconfig",
            str(self.kubeconfig),
            "--resync-interval",
            str(self.resync),
            "--log-format",
            "text",
            "--log-level",
            self.log_level,
            "--metrics-bind-address",
            f"127.0.0.1:{self.metrics_port}",
        ]
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            argv, stdout=out, stderr=out, env={**os.environ, "NODE_NAME": ""}
        )

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        self.proc = None
        return code

    def get(self, path: str) -> str | None:
        try:
            with inside(self.netns):
                resp = urllib.request.urlopen(
                    f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2
                )
            return str(resp.read().decode())
        except OSError:
            return None

    def statusz(self) -> dict[str, Any] | None:
        text = self.get("/statusz")
        return dict(json.loads(text)) if text else None

    def synced(self, rv: int) -> bool:
        st = self.statusz()
        return bool(st and st["ready"] and int(st["synced_resource_version"]) >= rv)

    def converged(self) -> bool:
        return self.synced(self.api.resource_version)

    def wait_converged(self, timeout: float = 20.0) -> None:
        wait_for(self.converged, timeout, lambda: self.log.read_text()[-3000:])


@dataclass
class Cluster:
    """Node 0 with pods a and b (namespace x), the API server and the agent."""

    node: NodeSandbox
    api: ApiServer
    a: PodSandbox
    b: PodSandbox
    agent: AgentProcess

    def a_to_b(self, timeout: float = 0.5) -> bool:
        return probe_many([Probe(self.a.netns, self.b.ipv4, 80)], timeout=timeout)[0]

    def set_labels(self, pod: PodSandbox, labels: dict[str, str]) -> None:
        def change(obj: dict[str, Any]) -> None:
            obj["metadata"]["labels"] = labels

        update(self.api, PODS, "x", pod.name, change)


def wait_for(
    cond: Callable[[], bool], timeout: float, why: Callable[[], str] | None = None
) -> None:
    """`tests.polling.wait_for` at the kit's pace (every 50 ms: each poll may scrape the agent)."""
    polling.wait_for(cond, timeout, why, interval=0.05)

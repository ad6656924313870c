"""The agent against the real API server: bookmarks, etcd compaction, a real 410, an outage.

- The real server sends watch bookmarks (about once a minute per watch): the agents
  count them.
- etcd is compacted under the running agents: their watches (served by the API
  server's watch cache) carry on and the next change is applied.
- The API server is stopped for 10 s (etcd is compacted meanwhile) and started again:
  the rules stay in force the whole time (real packets, engine verdicts of the last
  state); the restarted server's fresh watch cache answers the agents' resumed watches
  with a real 410 Gone, they list again, and the changes made right after the restart
  are neither lost (every kind converges, object counts equal the server's) nor
  repeated.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from agent.core.model import Protocol
from agent.lab import probe as lab_probe
from agent.lab.client import ApiClient
from agent.lab.realcp import binaries
from agent.lab.realcp.cluster import wait_ready
from agent.lab.realcp.procs import Programs, terminate
from tests.lab.realcp.conftest import RealCluster, wait_running

NS = "watch"


def _pod(name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "lab", "ports": [{"containerPort": 80}]}],
        },
    }


def _policy(name: str, allow: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": allow}}}]}],
        },
    }


BASE = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    _pod("server", "node-1", {"app": "server"}),
    _pod("a", "node-0", {"role": "a"}),
    _pod("b", "node-0", {"role": "b"}),
]


def _etcd_revision(lab: RealCluster, etcdctl: str) -> int:
    out = lab.netns_exec(lab.topo.net_netns, etcdctl, "--endpoints=http://127.0.0.1:2379",
                         "endpoint", "status", "-w", "json")  # fmt: skip
    match = re.search(r'"revision":\s*(\d+)', out)
    assert match, out
    return int(match.group(1))


def _compact(lab: RealCluster) -> int:
    etcdctl = binaries.find().path("etcdctl")
    revision = _etcd_revision(lab, etcdctl)
    lab.netns_exec(lab.topo.net_netns, etcdctl, "--endpoints=http://127.0.0.1:2379",
                   "compact", str(revision))  # fmt: skip
    return revision


def _gone(lab: RealCluster) -> float:
    return sum(lab.metric(n, "netpol_watch_restarts_total", reason="gone") for n in lab.topo.nodes)


def _converge(lab: RealCluster, timeout: float = 60.0) -> None:
    snap = lab_probe.settled_snapshot(lab.client, lab.topo, timeout=timeout)
    lab_probe.wait_snapshot(lab.topo, snap, per_kind=True, timeout=timeout)


def test_bookmarks_arrive(real_lab: RealCluster) -> None:
    deadline = time.monotonic() + 90  # the real server bookmarks each watch about once a minute
    while True:
        counts = {
            n.name: real_lab.metric(n, "netpol_watch_events_total", type="BOOKMARK")
            for n in real_lab.topo.nodes
        }
        if all(counts.values()):
            return
        assert time.monotonic() < deadline, f"no bookmarks: {counts}"
        time.sleep(2)


def test_compaction_restart_and_outage(real_lab: RealCluster) -> None:
    real_lab.apply([*BASE, _policy("allow", "a")])
    try:
        wait_running(real_lab.client, NS, ["server", "a", "b"])
        table, diff = real_lab.probe()
        assert diff.empty, diff
        assert real_lab.cell(table, f"{NS}/a", f"{NS}/server")
        assert not real_lab.cell(table, f"{NS}/b", f"{NS}/server")

        _compact(real_lab)  # under the running agents: they carry on
        real_lab.apply([_policy("allow", "b")])
        table, diff = real_lab.probe()
        assert diff.empty, diff
        assert real_lab.cell(table, f"{NS}/b", f"{NS}/server")

        before = lab_probe.settled_snapshot(real_lab.client, real_lab.topo, timeout=20)
        pods = lab_probe.probe_pods(before.state)
        cases = [(80, Protocol.TCP)]
        gone_before = _gone(real_lab)
        programs = Programs(real_lab.paths.root, real_lab.paths.logs)
        spec = programs.spec("kube-apiserver")
        pid = programs.pid("kube-apiserver")
        assert pid is not None
        terminate(pid, timeout=10)
        stopped = time.monotonic()
        try:
            kernel = lab_probe.probe_table(real_lab.topo, pods, cases, timeout=1.0)
            assert lab_probe.compare(kernel, before.state, pods, cases).empty, "rules changed"
            _compact(real_lab)
            for node in real_lab.topo.nodes:  # the agents live on, enforcing the last state
                status = json.loads(real_lab.node_http(node, "/statusz").split(" ", 1)[1])
                assert status["node"] == node.name, status
            time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
            kernel = lab_probe.probe_table(real_lab.topo, pods, cases, timeout=1.0)
            assert lab_probe.compare(kernel, before.state, pods, cases).empty, "rules changed"
        finally:
            programs.start(spec)
        wait_ready(ApiClient.from_kubeconfig(real_lab.paths.kubeconfig), programs,
                   "kube-apiserver", timeout=120)  # fmt: skip

        # Changes right after the restart: a pod relabelled, a policy replaced.
        real_lab.client.merge_patch(f"/api/v1/namespaces/{NS}/pods/a",
                                    {"metadata": {"labels": {"role": "b"}}})  # fmt: skip
        real_lab.apply([_policy("allow", "a")])
        deadline = time.monotonic() + 90
        while _gone(real_lab) <= gone_before:
            assert time.monotonic() < deadline, "no 410 Gone after the API server restart"
            time.sleep(0.5)
        _converge(real_lab)
        table, diff = real_lab.probe()
        assert diff.empty, diff
        assert not real_lab.cell(table, f"{NS}/a", f"{NS}/server")  # relabelled: now blocked
    finally:
        real_lab.remove([*BASE, _policy("allow", "a")])

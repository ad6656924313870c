"""RBAC really enforced: deploy/base's ClusterRole is enough, and one verb less is reported.

The agents run as the netpol-agent ServiceAccount (test_a checks the role equals
deploy/base's). Here `watch` is taken away from the pods/namespaces rule and
node-0's agent restarted: its list works, its watches get 403 Forbidden; the agent
says so in its log and in /readyz (503), keeps running and keeps every rule it had
(it never flushes). With the verb back (and the agent restarted, which is quicker than
waiting for its next watch event) it is ready again.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from typing import Any

from agent.lab.state import alive_pid
from tests.lab.realcp.conftest import RealCluster

ROLE = "/apis/rbac.authorization.k8s.io/v1/clusterroles/netpol-agent"


def _ours(lab: RealCluster, netns: str) -> list[str]:
    save = lab.netns_exec(netns, "iptables-save")
    return sorted(line for line in save.splitlines() if "NPA-" in line and line.startswith("-A"))


def _readyz(lab: RealCluster, node: Any) -> str:
    try:
        return lab.node_http(node, "/readyz")
    except OSError as exc:
        return f"unreachable {exc}"


def _restart_agent(lab: RealCluster, node: str) -> int:
    pid = alive_pid(lab.paths.agent_pid(node))
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while True:  # the lab restarts it, as the kubelet restarts a DaemonSet's container
        new = alive_pid(lab.paths.agent_pid(node))
        if new is not None and new != pid:
            return new
        assert time.monotonic() < deadline, "the agent was not restarted"
        time.sleep(0.1)


def test_a_missing_verb_is_reported_and_nothing_is_flushed(real_lab: RealCluster) -> None:
    client = real_lab.client
    node = real_lab.topo.nodes[0]
    original = client.get(ROLE)
    rules_before = _ours(real_lab, node.netns)
    assert rules_before, "no rules of ours on node-0 to keep"
    reduced = copy.deepcopy(original)
    for rule in reduced["rules"]:
        if "pods" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "watch"]
    client.request("PUT", ROLE, reduced)
    try:
        pid = _restart_agent(real_lab, node.name)
        log = real_lab.paths.agent_log(node.name)
        deadline = time.monotonic() + 60
        while True:
            readyz = _readyz(real_lab, node)
            logged = "403" in log.read_text(errors="replace").split("--- lab: starting")[-1]
            if readyz.startswith("503") and "403" in readyz and logged:
                break
            assert time.monotonic() < deadline, f"403 not reported: /readyz {readyz!r}"
            time.sleep(0.5)
        assert "forbidden" in readyz.lower(), readyz
        time.sleep(3)  # it keeps retrying, never crashes, never flushes
        assert alive_pid(real_lab.paths.agent_pid(node.name)) == pid
        assert _ours(real_lab, node.netns) == rules_before
    finally:
        current = client.get(ROLE)
        original["metadata"] = {**original["metadata"],
                                "resourceVersion": current["metadata"]["resourceVersion"]}  # fmt: skip
        client.request("PUT", ROLE, original)
    # A running agent clears the report with its next watch event or bookmark (about a
    # minute on a real server); a restarted one at its first list.
    _restart_agent(real_lab, node.name)
    deadline = time.monotonic() + 60
    while not _readyz(real_lab, node).startswith("200"):
        assert time.monotonic() < deadline, f"not ready again: {_readyz(real_lab, node)}"
        time.sleep(0.5)

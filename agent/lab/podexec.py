"""`lab exec`: run a command inside a lab pod's network namespace, like `kubectl exec`.

Lab pods are network namespaces, not containers: the command runs on this
machine with the pod's network (its addresses, routes, the node's policy in
front of it) and everything else of the caller. Users need it to try their own
clients and servers against their policies; tests need it for long-lived flows.
The pod is looked up in the API server (so the name a user typed is checked
against what the cluster holds), and its namespace derived as the kubelet
derives it; hostNetwork pods run in their node's namespace.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from agent.lab.client import ApiClient, ApiStatusError
from agent.lab.kubelet import pod_netns, started_by_lab
from agent.lab.topology import LabError, Topology


def pod_namespace(client: ApiClient, topo: Topology, namespace: str, name: str) -> str:
    """The network namespace of pod `namespace/name`; LabError when it has none (yet)."""
    try:
        pod = client.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    except ApiStatusError as exc:
        if exc.status == 404:
            raise LabError(f"pod {namespace}/{name} not found in lab {topo.name!r}") from None
        raise
    spec = pod.get("spec") or {}
    node = str(spec.get("nodeName") or "")
    if not node:
        raise LabError(f"pod {namespace}/{name} is not scheduled to a node yet")
    if spec.get("hostNetwork"):
        return topo.node(node).netns
    if not started_by_lab(pod):
        raise LabError(f"pod {namespace}/{name}: the lab kubelet of {node} has not started it yet")
    return pod_netns(topo, str(pod["metadata"]["uid"]))


def run_in(netns: str, argv: Sequence[str]) -> int:
    """Run `argv` inside `netns` with the caller's stdio; its exit code (127: not found)."""
    if not argv:
        raise LabError("lab exec: no command given (lab exec POD -- COMMAND...)")
    try:
        return subprocess.run(["ip", "netns", "exec", netns, *argv], check=False).returncode
    except FileNotFoundError as exc:
        raise LabError(f"lab exec: cannot run `ip`: {exc}") from exc

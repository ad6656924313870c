"""Lab nodes register with the real API server, as a kubelet does, and get a podCIDR.

A kubelet creates its Node with labels and no podCIDR, then writes status
(addresses, a Ready condition, nodeInfo) through the status subresource; the
controller manager's node IPAM then assigns spec.podCIDR from the cluster
CIDR. Nodes register one at a time, each waiting for its podCIDR, so node-<i>
gets 10.244.<i>.0/24 as in the lab's address plan (the allocator hands out the
lowest free block); a different answer is an error, not a surprise later.
"""

from __future__ import annotations

import time
from typing import Any

from agent.lab.client import ApiClient, ApiStatusError
from agent.lab.topology import LabError, NodeSpec, node_labels

KUBELET_VERSION = "v0.0.0-lab-kubelet"


def node_object(node: NodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": node_labels(node),
            # What a kubelet annotates at registration (flanneld expects a non-empty map).
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
    }


def node_status(node: NodeSpec) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "addresses": [
            {"type": "InternalIP", "address": node.ip},
            {"type": "Hostname", "address": node.name},
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "lab kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": "netpol-agent lab",
            "containerRuntimeVersion": "lab://",
            "kubeProxyVersion": "",
        },
    }


def register(client: ApiClient, node: NodeSpec, *, timeout: float = 30.0) -> str:
    """Create the Node, wait for node IPAM, post its status; returns its podCIDR."""
    try:
        client.create("/api/v1/nodes", node_object(node))
    except ApiStatusError as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + timeout
    while True:
        cidr = str(
            (client.get(f"/api/v1/nodes/{node.name}").get("spec") or {}).get("podCIDR") or ""
        )
        if cidr:
            if cidr != node.pod_cidr:
                raise LabError(
                    f"node IPAM gave {node.name} podCIDR {cidr}, the lab plan expects "
                    f"{node.pod_cidr}"
                )
            # Status after the podCIDR: an update racing the allocator can make it hand
            # out a second block (seen: node-1 got 10.244.2.0/24).
            client.merge_patch(f"/api/v1/nodes/{node.name}/status", {"status": node_status(node)})
            return cidr
        if time.monotonic() > deadline:
            raise LabError(
                f"{node.name} got no podCIDR within {timeout:g}s: is the controller "
                "manager's nodeipam controller running? (see logs/kube-controller-manager.log)"
            )
        time.sleep(0.1)

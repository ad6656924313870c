"""Kubeconfigs for every client of the real API server, one identity each.

Certificates identify the lab's own components the way kubeadm does (the
user is the certificate's CN, groups are its O fields):

    admin                    O=system:masters      kubectl on the host, the lab process
    system:kube-controller-manager                 bound by the default RBAC policy
    system:kube-proxy                              bound to system:node-proxier by default
    system:flannel           (rbac in flannel.py)  flannel's own ClusterRole
and the node agents use a TokenRequest token of the `netpol-agent`
ServiceAccount (bootstrap.py), exactly what the DaemonSet gets.

Files are JSON (valid YAML for kubectl and the official client) and name the
certificate files by path: they live in the lab's state directory.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from agent.lab.realcp.pki import KeyPair

CLUSTER = "npa-lab"


def kubeconfig(
    *,
    server: str,
    ca_cert: Path,
    user: str,
    client: KeyPair | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    credentials: dict[str, str] = {}
    if client is not None:
        credentials = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    if token is not None:
        credentials["token"] = token
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": CLUSTER, "context": {"cluster": CLUSTER, "user": user, "namespace": "default"}}
        ],
        "current-context": CLUSTER,
        "preferences": {},
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path

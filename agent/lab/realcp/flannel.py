"""flanneld on every lab node: the kube subnet manager with the VXLAN backend.

Each node's flanneld runs inside that node's namespace (`--iface=eth0`, the
node's underlay link), reads its podCIDR from its Node object (assigned by the
controller manager's node IPAM), annotates the Node with its VTEP, programs
flannel.1, the routes, ARP and FDB entries to the other nodes, and its own
FLANNEL-* iptables rules -- all inside the node namespace. It writes its own
`--subnet-file`, which that node's CNI configuration reads, so nodes never
share state on the host's filesystem. The ClusterRole is Flannel's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.lab.realcp.binaries import Binaries
from agent.lab.realcp.controlplane import CLUSTER_CIDR
from agent.lab.realcp.procs import ProgramSpec
from agent.lab.topology import NodeSpec

USER = "system:flannel"
NET_CONF = {"Network": CLUSTER_CIDR, "EnableNFTables": False, "Backend": {"Type": "vxlan"}}


def rbac() -> list[dict[str, Any]]:
    """kube-flannel.yml's ClusterRole, bound to the lab's flannel certificate user."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "flannel"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "flannel"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "flannel",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """One node's private files: flanneld's subnet file and the CNI plugins' data."""

    root: Path

    @classmethod
    def of(cls, state_root: Path, node: NodeSpec) -> NodeFiles:
        return cls(state_root / "nodes" / node.name)

    @property
    def subnet_file(self) -> Path:
        return self.root / "flannel" / "subnet.env"

    @property
    def cni_dir(self) -> Path:
        return self.root / "cni"


def write_net_conf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(NET_CONF, indent=2) + "\n")
    return path


def flanneld(
    bins: Binaries, node: NodeSpec, *, kubeconfig: Path, net_conf: Path, files: NodeFiles
) -> ProgramSpec:
    files.subnet_file.parent.mkdir(parents=True, exist_ok=True)
    return ProgramSpec(
        name=f"flanneld-{node.name}",
        netns=node.netns,
        argv=(
            bins.path("flanneld"),
            "--kube-subnet-mgr",
            f"--kubeconfig-file={kubeconfig}",
            "--iface=eth0",
            "--ip-masq",
            f"--subnet-file={files.subnet_file}",
            f"--net-config-path={net_conf}",
        ),
        env={"NODE_NAME": node.name},
    )


def read_subnet_file(path: Path) -> dict[str, str]:
    """FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ; {} until written."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out

"""kube-proxy in iptables mode on every lab node, so ClusterIP and NodePort Services work.

It runs inside the node's namespace only, as the `system:kube-proxy` user
(bound to `system:node-proxier` by the API server's default RBAC policy).
Conntrack sysctls are global or host-wide on some kernels (nf_conntrack_max,
the hash size), so every conntrack flag is 0, which tells kube-proxy to leave
the value as it is: the host's settings are never touched.
"""

from __future__ import annotations

from pathlib import Path

from agent.lab.realcp.binaries import Binaries
from agent.lab.realcp.controlplane import CLUSTER_CIDR
from agent.lab.realcp.procs import ProgramSpec
from agent.lab.topology import NodeSpec

USER = "system:kube-proxy"
CONNTRACK_UNTOUCHED = (
    "--conntrack-max-per-core=0",
    "--conntrack-min=0",
    "--conntrack-tcp-timeout-established=0",
    "--conntrack-tcp-timeout-close-wait=0",
    "--conntrack-udp-timeout=0",
    "--conntrack-udp-timeout-stream=0",
)


def kube_proxy(bins: Binaries, node: NodeSpec, *, kubeconfig: Path) -> ProgramSpec:
    return ProgramSpec(
        name=f"kube-proxy-{node.name}",
        netns=node.netns,
        argv=(
            bins.path("kube-proxy"),
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={node.name}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={CLUSTER_CIDR}",
            *CONNTRACK_UNTOUCHED,
            "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256",
            "--v=0",
        ),
    )

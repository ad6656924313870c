"""The small cluster every dataplane test uses (address plan of tests/conftest.py).

node-0  172.18.0.2 fd00:172:18::2  podCIDR 10.244.0.0/24 fd00:10:244::/64  (cni0 .1 / ::1)
node-1  172.18.0.3 fd00:172:18::3  podCIDR 10.244.1.0/24 fd00:10:244:1::/64
namespaces x, y, z labelled ns=<name>; pods a, b, c labelled pod=<name>
a, b on node-0 (10.244.0.10 upwards, in x/a x/b y/a y/b z/a z/b order); c on node-1
every pod serves 80 and 81 on TCP, UDP and SCTP, named serve-<port>-<proto>
"""

from __future__ import annotations

import ipaddress
from typing import Any

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import ClusterState, Family, NetworkPolicy, Node, Pod
from agent.core.ruleset import Ruleset
from tests.builders import make_ns, make_pod, make_policy, make_state

NAMESPACES = ("x", "y", "z")
NAMES = ("a", "b", "c")
PORTS = tuple(
    (port, proto, f"serve-{port}-{proto.lower()}")
    for port in (80, 81)
    for proto in ("TCP", "UDP", "SCTP")
)
NODES = (
    Node("node-0", ("172.18.0.2", "fd00:172:18::2"), ("10.244.0.0/24", "fd00:10:244::/64")),
    Node("node-1", ("172.18.0.3", "fd00:172:18::3"), ("10.244.1.0/24", "fd00:10:244:1::/64")),
)


def pods(*, dual_stack: bool = True) -> dict[str, Pod]:
    out: dict[str, Pod] = {}
    next_host = {0: 10, 1: 10}
    for ns in NAMESPACES:
        for name in NAMES:
            node = 1 if name == "c" else 0
            host = next_host[node]
            next_host[node] += 1
            ips: tuple[str, ...] = (f"10.244.{node}.{host}",)
            if dual_stack:
                ips += (str(ipaddress.ip_address(f"fd00:10:244:{node}::{host:x}")),)
            out[f"{ns}/{name}"] = make_pod(
                f"{ns}/{name}", f"pod={name}", ip=ips, node=f"node-{node}", ports=PORTS
            )
    return out


PODS = pods()


def policy(key: str, spec: dict[str, Any]) -> NetworkPolicy:
    return make_policy(key, spec)


def state(*policies: NetworkPolicy, pod_list: dict[str, Pod] | None = None) -> ClusterState:
    return make_state(
        *(make_ns(ns, f"ns={ns}") for ns in NAMESPACES),
        *NODES,
        *(pod_list if pod_list is not None else PODS).values(),
        *policies,
    )


def compiled(
    st: ClusterState,
    node: str = "node-0",
    *,
    families: tuple[Family, ...] = (Family.V4,),
    **kw: Any,
) -> Ruleset:
    return compile_ruleset(st, node=node, options=CompileOptions(families=families, **kw))

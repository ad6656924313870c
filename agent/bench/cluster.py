"""A realistic synthetic cluster, as plain manifests, deterministic from a seed.

Benchmarks need a cluster shaped like the ones users run, not a uniform grid:
namespaces owned by teams, each holding an application of five tiers
(frontend, backend, db, cache, worker) with named container ports, and up to
ten policies per namespace in the style of real deployments: default-deny,
egress to cluster DNS, ingress from the ingress controller and the internet
(ipBlock with except), tier-to-tier rules (podSelector, matchExpressions),
monitoring scraped from another namespace (namespaceSelector AND podSelector,
named port), cross-team access and egress to an external range.

Three system namespaces (kube-system with DNS, monitoring, ingress-nginx) come
first. Pods spread over nodes of `local_pods` pods each; `node-0` is "this
node". Local pods get 10.244.0.<first_local_host + k> (the address plan of
tests/conftest.py), remote node r gets the /20 at 10.64.0.0 + (r-1)*4096.

    generate(ClusterSpec(pods=10_000, policies=1_000, local_pods=100)) -> Manifests
    Manifests.objects() -> list of dicts (Namespaces first) ; Manifests.state() -> ClusterState
"""

from __future__ import annotations

import ipaddress
import math
import random
from dataclasses import dataclass, field
from typing import Any

from agent.core.convert import state_from_dicts
from agent.core.model import ClusterState

Obj = dict[str, Any]

NODE = "node-0"
NODE_ADDRESS = "172.18.0.2"
TIERS = ("frontend", "backend", "db", "cache", "worker")
TEAMS = ("payments", "search", "checkout", "identity", "catalog", "ads", "media", "billing")
ENVS = ("prod", "staging", "dev")
PORTS: dict[str, tuple[tuple[str, int], ...]] = {
    "frontend": (("http", 8080), ("metrics", 9100)),
    "backend": (("grpc", 9090), ("metrics", 9100)),
    "db": (("postgres", 5432), ("metrics", 9187)),
    "cache": (("redis", 6379),),
    "worker": (("metrics", 9100),),
}
POLICIES_PER_NAMESPACE = 10
NAME_LABEL = "kubernetes.io/metadata.name"
REMOTE_BASE = ipaddress.IPv4Address("10.64.0.0")
LOCAL_BASE = ipaddress.IPv4Address("10.244.0.0")


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    pods: int = 10_000
    policies: int = 1_000
    local_pods: int = 100
    seed: int = 1
    first_local_host: int = 10  # local pod k gets 10.244.0.0 + first_local_host + k


@dataclass(slots=True)
class Manifests:
    namespaces: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    policies: list[Obj] = field(default_factory=list)
    nodes: list[Obj] = field(default_factory=list)
    app_namespaces: list[str] = field(default_factory=list)

    def objects(self) -> list[Obj]:
        return [*self.namespaces, *self.nodes, *self.pods, *self.policies]

    def state(self) -> ClusterState:
        return state_from_dicts(self.objects())


def namespace(name: str, labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(
    ns: str, name: str, *, labels: dict[str, str], node: str, ips: list[str], ports: list[Obj]
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "registry.example/app:1", "ports": ports}],
        },
        "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]},
    }


def policy(ns: str, name: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


def node_object(name: str = NODE, *, pod_cidr: str = "10.244.0.0/24") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_ADDRESS}]},
    }


def _ports(tier: str) -> list[Obj]:
    return [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in PORTS[tier]]


def _sel(**labels: str) -> Obj:
    return {"matchLabels": dict(labels)}


def _in(key: str, *values: str) -> Obj:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}


def policy_specs(j: int, team: str) -> list[tuple[str, Obj]]:
    """The ten policies of application namespace number j, in the order they are handed out."""
    both = ["Ingress", "Egress"]
    ext = f"198.51.100.{(j % 64) * 4}/30"
    return [
        ("default-deny", {"podSelector": {}, "policyTypes": both}),
        (
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": _sel(**{NAME_LABEL: "kube-system"}),
                                "podSelector": _sel(**{"k8s-app": "kube-dns"}),
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        ),
        (
            "frontend-ingress",
            {
                "podSelector": _sel(tier="frontend"),
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": _sel(**{NAME_LABEL: "ingress-nginx"}),
                                "podSelector": _sel(**{"app.kubernetes.io/name": "ingress-nginx"}),
                            },
                            {
                                "ipBlock": {
                                    "cidr": "0.0.0.0/0",
                                    "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                                }
                            },
                        ],
                        "ports": [{"port": "http"}],
                    }
                ],
            },
        ),
        (
            "backend-from-frontend",
            {
                "podSelector": _sel(tier="backend"),
                "ingress": [
                    {"from": [{"podSelector": _sel(tier="frontend")}], "ports": [{"port": "grpc"}]}
                ],
            },
        ),
        (
            "db-from-backend",
            {
                "podSelector": _sel(tier="db"),
                "ingress": [
                    {
                        "from": [{"podSelector": _in("tier", "backend", "worker")}],
                        "ports": [{"port": 5432}],
                    }
                ],
            },
        ),
        (
            "cache-from-apps",
            {
                "podSelector": _sel(tier="cache"),
                "ingress": [
                    {
                        "from": [
                            {"podSelector": _sel(tier="backend")},
                            {"podSelector": _sel(tier="worker")},
                        ],
                        "ports": [{"port": "redis"}],
                    }
                ],
            },
        ),
        (
            "egress-internal",
            {
                "podSelector": _in("tier", "frontend", "backend", "worker"),
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {"podSelector": _sel(tier="backend")},
                            {"podSelector": _in("tier", "db", "cache")},
                        ],
                        "ports": [{"port": "grpc"}, {"port": 5432}, {"port": "redis"}],
                    }
                ],
            },
        ),
        (
            "allow-monitoring",
            {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": _sel(purpose="monitoring"),
                                "podSelector": _sel(app="prometheus"),
                            }
                        ],
                        "ports": [{"port": "metrics"}],
                    }
                ],
            },
        ),
        (
            "cross-team-backend",
            {
                "podSelector": _sel(tier="backend"),
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": _sel(team=team),
                                "podSelector": _sel(tier="frontend"),
                            },
                            {
                                "namespaceSelector": {
                                    "matchExpressions": [
                                        {"key": "env", "operator": "NotIn", "values": ["dev"]}
                                    ]
                                },
                                "podSelector": _sel(tier="backend"),
                            },
                        ],
                        "ports": [{"port": "grpc"}, {"port": 8000, "endPort": 8100}],
                    }
                ],
            },
        ),
        (
            "worker-egress-external",
            {
                "podSelector": _sel(tier="worker"),
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": [ext]}}],
                        "ports": [{"protocol": "TCP", "port": 443}],
                    }
                ],
            },
        ),
    ]


def _system(m: Manifests, place: _Placer) -> None:
    system = [
        (
            "kube-system",
            {},
            "coredns",
            {"k8s-app": "kube-dns"},
            [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
        ),
        (
            "monitoring",
            {"purpose": "monitoring"},
            "prometheus",
            {"app": "prometheus"},
            [("web", 9090, "TCP")],
        ),
        (
            "ingress-nginx",
            {},
            "controller",
            {"app.kubernetes.io/name": "ingress-nginx"},
            [("http", 80, "TCP"), ("https", 443, "TCP")],
        ),
    ]
    for ns, labels, app, pod_labels, ports in system:
        m.namespaces.append(namespace(ns, labels))
        for k in range(2):
            node, ip = place.remote()
            ps = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
            m.pods.append(
                pod(ns, f"{app}-{k}", labels=dict(pod_labels), node=node, ips=[ip], ports=ps)
            )


class _Placer:
    """Hands out nodes and addresses: every `stride`-th app pod is local, others round-robin."""

    def __init__(self, spec: ClusterSpec, remote_count: int) -> None:
        self.spec = spec
        per_node = max(1, spec.local_pods)
        self.nodes = max(1, math.ceil(remote_count / per_node))
        self.filled = [0] * (self.nodes + 1)
        self.next_node = 0
        self.local = 0

    def remote(self) -> tuple[str, str]:
        r = 1 + self.next_node % self.nodes
        self.next_node += 1
        ip = REMOTE_BASE + (r - 1) * 4096 + 10 + self.filled[r]
        self.filled[r] += 1
        return f"node-{r}", str(ip)

    def local_ip(self) -> tuple[str, str]:
        ip = LOCAL_BASE + self.spec.first_local_host + self.local
        self.local += 1
        return NODE, str(ip)


def generate(spec: ClusterSpec) -> Manifests:
    """The cluster for `spec`: exactly spec.pods pods and spec.policies policies."""
    rng = random.Random(spec.seed)
    m = Manifests()
    app_pods = max(0, spec.pods - 6)
    local = min(spec.local_pods, app_pods)
    n_ns = max(
        1,
        math.ceil(spec.policies / POLICIES_PER_NAMESPACE),
        app_pods // 100 if not spec.policies else 1,
    )
    place = _Placer(spec, max(0, spec.pods - local))
    last_local = spec.first_local_host + local
    pod_cidr = "10.244.0.0/24" if last_local < 255 else "10.244.0.0/16"
    m.nodes.append(node_object(pod_cidr=pod_cidr))
    _system(m, place)
    teams = []
    for j in range(n_ns):
        team = TEAMS[j % len(TEAMS)]
        name = f"{team}-{ENVS[j % len(ENVS)]}-{j:04d}"
        teams.append(team)
        m.app_namespaces.append(name)
        m.namespaces.append(namespace(name, {"team": team, "env": ENVS[j % len(ENVS)]}))
    stride = max(1, app_pods // local) if local else 0
    counters = [0] * n_ns
    made_local = 0
    for i in range(app_pods):
        j = i % n_ns
        k = counters[j]
        counters[j] += 1
        tier = TIERS[k % len(TIERS)]
        ns = m.app_namespaces[j]
        labels = {
            "app": f"{ns.split('-')[0]}-{tier}",
            "tier": tier,
            "version": rng.choice(("v1", "v1", "v2")),
            "pod-template-hash": f"{rng.getrandbits(32):08x}",
        }
        if stride and i % stride == 0 and made_local < local:
            node, ip = place.local_ip()
            made_local += 1
        else:
            node, ip = place.remote()
        m.pods.append(
            pod(
                ns,
                f"{tier}-{k // len(TIERS)}",
                labels=labels,
                node=node,
                ips=[ip],
                ports=_ports(tier),
            )
        )
    for n in range(spec.policies):
        j, t = divmod(n, POLICIES_PER_NAMESPACE)
        name, body = policy_specs(j, teams[j])[t]
        m.policies.append(policy(m.app_namespaces[j], name, body))
    return m

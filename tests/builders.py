"""Small builders for domain objects: `make_pod("x/a", "pod=a", ip="10.244.0.10")`.

Labels are given as "k=v" strings; see tests/conftest.py for the address plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.core.model import (
    ClusterState,
    ContainerPort,
    Labels,
    Namespace,
    NetworkPolicy,
    Node,
    Pod,
    Protocol,
)
from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy


def labels(*pairs: str) -> Labels:
    out: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return Labels(out)


def make_ns(name: str, *pairs: str) -> Namespace:
    return Namespace(name, labels(f"kubernetes.io/metadata.name={name}", *pairs))


def make_pod(
    key: str,
    *pairs: str,
    ip: str | tuple[str, ...] = (),
    node: str = "node-0",
    ports: tuple[tuple[int, str, str | None], ...] = (),
) -> Pod:
    namespace, _, name = key.partition("/")
    ips = (ip,) if isinstance(ip, str) else ip
    return Pod(
        namespace=namespace,
        name=name,
        uid=f"uid-{namespace}-{name}",
        labels=labels(*pairs),
        ips=ips,
        node=node,
        ports=tuple(ContainerPort(p, Protocol(proto), n) for p, proto, n in ports),
    )


# --- policies and whole states (engine helper) -----------------------------------------


def sel(*pairs: str) -> dict[str, Any]:
    """A matchLabels selector dict: sel("pod=a") -> {"matchLabels": {"pod": "a"}}."""
    return {"matchLabels": dict(labels(*pairs))}


def policy_dict(key: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A NetworkPolicy object dict `ns/name` with the given spec."""
    namespace, _, name = key.partition("/")
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": dict(spec),
    }


def make_policy(key: str, spec: Mapping[str, Any]) -> NetworkPolicy:
    """A NetworkPolicy from a spec dict, through the real conversion (invalid: fail closed)."""
    from agent.core.convert import policy_from_dict

    return policy_from_dict(policy_dict(key, spec))


def make_state(
    *items: Namespace | Pod | NetworkPolicy | Node | ClusterNetworkPolicy,
) -> ClusterState:
    """A ClusterState from model values (pods keyed by UID, policies by ns/name)."""
    return ClusterState(
        namespaces={i.name: i for i in items if isinstance(i, Namespace)},
        pods={i.uid: i for i in items if isinstance(i, Pod)},
        policies={i.key: i for i in items if isinstance(i, NetworkPolicy)},
        nodes={i.name: i for i in items if isinstance(i, Node)},
        cluster_policies={i.name: i for i in items if isinstance(i, ClusterNetworkPolicy)},
    )


# --- ClusterNetworkPolicy ---------------------------------------------------------------


def cnp_dict(
    name: str,
    *,
    tier: str = "Admin",
    priority: int = 10,
    subject: Mapping[str, Any] | None = None,
    ingress: list[Any] | None = None,
    egress: list[Any] | None = None,
) -> dict[str, Any]:
    """A ClusterNetworkPolicy object dict; the subject defaults to every namespace."""
    spec: dict[str, Any] = {
        "tier": tier,
        "priority": priority,
        "subject": dict(subject) if subject is not None else {"namespaces": {}},
    }
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def make_cnp(name: str, **kwargs: Any) -> ClusterNetworkPolicy:
    """A ClusterNetworkPolicy through the real conversion (invalid: fail closed)."""
    from agent.core.policyapi.cnpconvert import cluster_policy_from_dict

    return cluster_policy_from_dict(cnp_dict(name, **kwargs))


def cnp_rule(
    action: str,
    *peers: Mapping[str, Any],
    name: str = "",
    protocols: list[Any] | None = None,
    to: bool = False,
) -> dict[str, Any]:
    """One rule: `cnp_rule("Deny", {"namespaces": {}})` (ingress; `to=True` for egress)."""
    rule: dict[str, Any] = {"action": action, "to" if to else "from": [dict(p) for p in peers]}
    if name:
        rule["name"] = name
    if protocols is not None:
        rule["protocols"] = protocols
    return rule

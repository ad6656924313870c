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


def make_state(*items: Namespace | Pod | NetworkPolicy | Node) -> ClusterState:
    """A ClusterState from model values (pods keyed by UID, policies by ns/name)."""
    return ClusterState(
        namespaces={i.name: i for i in items if isinstance(i, Namespace)},
        pods={i.uid: i for i in items if isinstance(i, Pod)},
        policies={i.key: i for i in items if isinstance(i, NetworkPolicy)},
        nodes={i.name: i for i in items if isinstance(i, Node)},
    )

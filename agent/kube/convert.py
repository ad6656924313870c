"""The official client's V1* objects -> the domain model.

The client's models (V1Pod, V1NetworkPolicy, ...) are turned into the same
plain, camelCase dicts the API serves with `ApiClient.sanitize_for_serialization`
(None fields dropped, intstr ports kept as int or str), then converted by
`agent.core.convert`, so dicts and client objects share one code path and one
set of rules (validation, fail-closed policies, InputError naming the object).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient

from agent.core import convert
from agent.core.model import Namespace, NetworkPolicy, Node, Pod

_CLIENT: ApiClient | None = None


def to_dict(obj: Any) -> dict[str, Any]:
    """A client model (or a dict) as the API's JSON dict."""
    global _CLIENT
    if isinstance(obj, dict):
        return obj
    if _CLIENT is None:
        _CLIENT = ApiClient()
    sanitize: Any = _CLIENT.sanitize_for_serialization  # untyped in the client
    data = sanitize(obj)
    if not isinstance(data, dict):
        raise TypeError(f"not a Kubernetes object: {type(obj).__name__}")
    return data


def namespace_from_client(obj: Any) -> Namespace:
    return convert.namespace_from_dict(to_dict(obj))


def pod_from_client(obj: Any) -> Pod:
    return convert.pod_from_dict(to_dict(obj))


def policy_from_client(obj: Any) -> NetworkPolicy:
    return convert.policy_from_dict(to_dict(obj))


def node_from_client(obj: Any) -> Node:
    return convert.node_from_dict(to_dict(obj))

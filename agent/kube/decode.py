"""Decode watched JSON objects into the domain model, once, at the edge.

The watchers read raw JSON (see agent.kube.client for why), so the dict
converters of `agent.core.convert` do the work; this module only picks the
right one per kind. Only the fields the engine needs survive: a Pod keeps its
labels, IPs, node, phase, hostNetwork and container ports.
"""

from __future__ import annotations

from agent.core import convert
from agent.core.policyapi.cnpconvert import cluster_policy_from_dict
from agent.kube.api import JsonDict, Kind


def decode(kind: Kind, obj: JsonDict) -> object:
    """The domain value of one watched object; raises InputError when malformed."""
    if kind is Kind.PODS:
        return convert.pod_from_dict(obj)
    if kind is Kind.NAMESPACES:
        return convert.namespace_from_dict(obj)
    if kind is Kind.NETWORK_POLICIES:
        return convert.policy_from_dict(obj)
    if kind is Kind.CLUSTER_NETWORK_POLICIES:
        return cluster_policy_from_dict(obj)
    return convert.node_from_dict(obj)

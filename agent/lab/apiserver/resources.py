"""The resource types this server knows: names, kinds, scope and verbs.

One table drives routing, discovery documents and storage keys, so adding a kind is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One REST resource (the plural name in URLs) and its kind."""

    plural: str
    singular: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key(self) -> str:
        """Storage key: unique across groups."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACES = ResourceInfo(
    plural="namespaces",
    singular="namespace",
    kind="Namespace",
    group="",
    version="v1",
    namespaced=False,
    short_names=("ns",),
    subresources=("status",),
)
PODS = ResourceInfo(
    plural="pods",
    singular="pod",
    kind="Pod",
    group="",
    version="v1",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=("status",),
)
NODES = ResourceInfo(
    plural="nodes",
    singular="node",
    kind="Node",
    group="",
    version="v1",
    namespaced=False,
    short_names=("no",),
    subresources=("status",),
)
EVENTS = ResourceInfo(
    plural="events",
    singular="event",
    kind="Event",
    group="",
    version="v1",
    namespaced=True,
    short_names=("ev",),
)
NETWORK_POLICIES = ResourceInfo(
    plural="networkpolicies",
    singular="networkpolicy",
    kind="NetworkPolicy",
    group="networking.k8s.io",
    version="v1",
    namespaced=True,
    short_names=("netpol",),
)

CLUSTER_NETWORK_POLICIES = ResourceInfo(
    plural="clusternetworkpolicies",
    singular="clusternetworkpolicy",
    kind="ClusterNetworkPolicy",
    group="policy.networking.k8s.io",
    version="v1alpha2",
    namespaced=False,
    short_names=("cnp",),
    subresources=("status",),
)

RESOURCES: tuple[ResourceInfo, ...] = (
    NAMESPACES,
    PODS,
    NODES,
    EVENTS,
    NETWORK_POLICIES,
    CLUSTER_NETWORK_POLICIES,
)

GROUPS: dict[str, str] = {"networking.k8s.io": "v1", "policy.networking.k8s.io": "v1alpha2"}
"""Named API groups (the core group is served under /api) and their only version."""


def lookup(group: str, version: str, plural: str) -> ResourceInfo | None:
    for info in RESOURCES:
        if info.group == group and info.version == version and info.plural == plural:
            return info
    return None


def in_group_version(group: str, version: str) -> tuple[ResourceInfo, ...]:
    return tuple(r for r in RESOURCES if r.group == group and r.version == version)

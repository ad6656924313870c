"""The seam between the watchers and the Kubernetes API: a tiny Protocol and its errors.

`ApiSource` lists one page or opens one watch of one kind and hands back plain
JSON dicts (the official client's model classes cost too much CPU and memory at
10,000 pods). The real implementation lives in `agent.kube.client`; tests use
an honest in-memory fake that, like the API server, answers 410 Gone to a watch
from a compacted resourceVersion and can refuse connections.

    KubeError (agent.core.errors)
    +-- ApiUnavailable      cannot reach the server, timed out, or it failed (5xx, 429)
    |   +-- Gone            410: the resourceVersion is too old, relist
    +-- ApiRejected         the server refused us (401, 403, 404, other 4xx)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.errors import KubeError

JsonDict = Mapping[str, Any]


class Kind(enum.Enum):
    """The watched resource kinds; the value is the resource name (metrics label)."""

    NAMESPACES = "namespaces"
    PODS = "pods"
    NETWORK_POLICIES = "networkpolicies"
    NODES = "nodes"
    CLUSTER_NETWORK_POLICIES = "clusternetworkpolicies"

    @property
    def optional(self) -> bool:
        """A kind served by a CRD that may not be installed (or readable): when the API
        answers 404/403, the agent goes on without it and looks again later."""
        return self is Kind.CLUSTER_NETWORK_POLICIES


ABSENT = "absent"
"""The resourceVersion a sink gets for an optional kind the API does not serve (empty list)."""


class ApiUnavailable(KubeError):
    """The API server could not be reached, timed out, or failed; retry with backoff."""


class Gone(ApiUnavailable):
    """410 Gone / Expired: the resourceVersion was compacted; relist."""


class ApiRejected(KubeError):
    """The API server rejected the request (auth, RBAC, unknown resource)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


@dataclass(frozen=True, slots=True)
class ListPage:
    items: tuple[JsonDict, ...]
    resource_version: str
    continue_token: str | None = None


class ApiSource(Protocol):
    def list_page(self, kind: Kind, *, limit: int, continue_token: str | None) -> ListPage:
        """One page of a list; raises ApiUnavailable/Gone/ApiRejected."""
        ...

    def watch(
        self, kind: Kind, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[JsonDict]:
        """Watch events (`{"type": ..., "object": {...}}`) from resource_version, bookmarks
        included; ends when the server closes the watch; raises like list_page,
        also while iterating."""
        ...

"""URL paths to resources: `/api/v1/namespaces/{ns}/pods/{name}/status` and friends.

Also recognises the legacy `/watch/` path prefix. Discovery paths are not resources and
return None here; the handler serves them.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.lab.apiserver import errors
from agent.lab.apiserver.resources import ResourceInfo, lookup

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True, slots=True)
class Target:
    info: ResourceInfo
    namespace: str | None  # None: every namespace (or a cluster-scoped resource)
    name: str | None
    subresource: str | None
    watch_path: bool = False


def parse_path(path: str) -> Target | None:
    """The resource addressed by `path`, None for a non-resource path; 404 for unknown ones."""
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 2 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    if not rest:
        return None
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    info = lookup(group, version, rest[0]) if rest else None
    if info is None or len(rest) > 3:
        raise errors.path_not_found(path)
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else None
    if namespace is not None and not info.namespaced:
        raise errors.path_not_found(path)
    if info.namespaced and namespace is None and name is not None:
        raise errors.path_not_found(path)
    if subresource is not None and subresource not in info.subresources:
        raise errors.path_not_found(path)
    return Target(
        info=info, namespace=namespace, name=name, subresource=subresource, watch_path=watch_path
    )

"""The agent's in-memory view of the cluster, fed by the watchers, read by the reconciler.

Watcher threads write (`replace` after a list, `upsert`/`delete` per event,
`bookmark`); the reconcile thread takes a `Snapshot`: an immutable
ClusterState plus the per-kind resourceVersions it reflects and the arrival
times of the changes it contains (for the event-to-kernel latency metric).

An event whose converted value equals what we hold (a pod's status churn, a
resync) changes nothing but the resourceVersion: it marks nothing dirty, so
it costs no sync, yet the agent can still report that it has seen it
(`clean_resource_versions`, used by the convergence protocol).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from agent.core.model import ClusterState, Namespace, NetworkPolicy, Node, Pod
from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy
from agent.kube.api import ABSENT, Kind

MAX_TRACKED_EVENTS = 20_000
T = TypeVar("T")

ChangeCallback = Callable[[bool], None]  # relevant: does the state differ now?


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: ClusterState
    resource_versions: Mapping[Kind, str]
    changed_kinds: frozenset[Kind]
    event_times: tuple[tuple[Kind, float], ...]  # (resource, monotonic arrival) per change

    @property
    def synced_resource_version(self) -> str:
        return min_resource_version(self.resource_versions)


def min_resource_version(rvs: Mapping[Kind, str]) -> str:
    """The minimum over kinds (as integers; the lab and etcd use integers). "0" if unknown.

    A kind the API does not serve (`ABSENT`, an optional CRD not installed) does not count.
    """
    values = []
    for rv in rvs.values():
        try:
            values.append(int(rv))
        except ValueError:
            continue
    if len(rvs) < len(Kind) or len(values) < sum(1 for rv in rvs.values() if rv != ABSENT):
        return "0"
    return str(min(values))


@dataclass
class _KindState:
    objects: dict[str, object] = field(default_factory=dict)
    listed: bool = False
    resource_version: str = ""


class Store:
    """Thread-safe cluster state. `on_change(relevant)` is called after every write."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        on_change: ChangeCallback | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_change = on_change or (lambda relevant: None)
        self._kinds: dict[Kind, _KindState] = {kind: _KindState() for kind in Kind}
        self._dirty: set[Kind] = set()
        self._event_times: list[tuple[Kind, float]] = []

    def set_on_change(self, callback: ChangeCallback) -> None:
        self._on_change = callback

    # --- writes (watcher threads) -------------------------------------------------------
    def replace(self, kind: Kind, objects: Mapping[str, object], resource_version: str) -> None:
        with self._lock:
            ks = self._kinds[kind]
            relevant = not ks.listed or ks.objects != objects
            ks.objects = dict(objects)
            ks.listed = True
            ks.resource_version = resource_version
            if relevant:
                self._mark(kind)
        self._on_change(relevant)

    def upsert(self, kind: Kind, key: str, obj: object, resource_version: str) -> None:
        with self._lock:
            ks = self._kinds[kind]
            relevant = ks.objects.get(key) != obj
            ks.objects[key] = obj
            ks.resource_version = resource_version
            if relevant:
                self._mark(kind)
        self._on_change(relevant)

    def delete(self, kind: Kind, key: str, resource_version: str) -> None:
        with self._lock:
            ks = self._kinds[kind]
            relevant = ks.objects.pop(key, None) is not None
            ks.resource_version = resource_version
            if relevant:
                self._mark(kind)
        self._on_change(relevant)

    def bookmark(self, kind: Kind, resource_version: str) -> None:
        with self._lock:
            self._kinds[kind].resource_version = resource_version
        self._on_change(False)

    def _mark(self, kind: Kind) -> None:
        self._dirty.add(kind)
        if len(self._event_times) < MAX_TRACKED_EVENTS:
            self._event_times.append((kind, self._clock()))

    # --- reads (reconcile thread) -------------------------------------------------------
    def all_listed(self) -> bool:
        with self._lock:
            return all(ks.listed for ks in self._kinds.values())

    def unlisted(self) -> tuple[Kind, ...]:
        with self._lock:
            return tuple(kind for kind, ks in self._kinds.items() if not ks.listed)

    @property
    def dirty(self) -> bool:
        with self._lock:
            return bool(self._dirty)

    def resource_versions(self) -> dict[Kind, str]:
        with self._lock:
            return {kind: ks.resource_version for kind, ks in self._kinds.items()}

    def clean_resource_versions(self) -> dict[Kind, str] | None:
        """The current resourceVersions if nothing changed since the last snapshot, else None."""
        with self._lock:
            if self._dirty:
                return None
            return {kind: ks.resource_version for kind, ks in self._kinds.items()}

    def snapshot(self) -> Snapshot:
        """The current state; clears the dirty marks (see `restore_dirty` on failure)."""
        with self._lock:
            k = self._kinds
            state = ClusterState(
                namespaces=_typed(k[Kind.NAMESPACES].objects, Namespace),
                pods=_typed(k[Kind.PODS].objects, Pod),
                policies=_typed(k[Kind.NETWORK_POLICIES].objects, NetworkPolicy),
                nodes=_typed(k[Kind.NODES].objects, Node),
                cluster_policies=_typed(
                    k[Kind.CLUSTER_NETWORK_POLICIES].objects, ClusterNetworkPolicy
                ),
            )
            snap = Snapshot(
                state=state,
                resource_versions={kind: ks.resource_version for kind, ks in k.items()},
                changed_kinds=frozenset(self._dirty),
                event_times=tuple(self._event_times),
            )
            self._dirty.clear()
            self._event_times.clear()
            return snap

    def restore_dirty(self, snap: Snapshot) -> None:
        """A sync of `snap` failed: its changes are pending again."""
        with self._lock:
            self._dirty |= snap.changed_kinds
            self._event_times[:0] = snap.event_times[: MAX_TRACKED_EVENTS - len(self._event_times)]

    def counts(self) -> dict[Kind, int]:
        with self._lock:
            return {kind: len(ks.objects) for kind, ks in self._kinds.items()}


def _typed(objects: dict[str, object], cls: type[T]) -> dict[str, T]:
    out: dict[str, T] = {}
    for key, obj in objects.items():
        if isinstance(obj, cls):
            out[key] = obj
    return out

"""Honest fakes for the node agent's seams: clock, API source, dataplane.

FakeApiSource behaves like the API server where the agent can tell: one global
resourceVersion counter, consistent paginated lists, watches that replay from a
resourceVersion and answer 410 (an ERROR event) when it was compacted, bookmarks
carrying the current resourceVersion, and injectable faults (refused
connections, a watch dropped mid-stream).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.core.errors import ApplyError
from agent.kube.api import ApiRejected, ApiUnavailable, Gone, JsonDict, Kind, ListPage
from agent.kube.watching import object_key


class FakeClock:
    """Time that moves only when told to (or when something waits)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.now += max(0.0, timeout)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pod_dict(
    ns: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    ip: str = "10.244.0.10",
    node: str = "node-0",
    uid: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": ns,
            "name": name,
            "uid": uid or f"uid-{ns}-{name}",
            "labels": dict(labels or {}),
        },
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def ns_dict(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": f"uid-ns-{name}", "labels": dict(labels or {})},
    }


def policy_dict(
    ns: str,
    name: str,
    *,
    selector: dict[str, str] | None = None,
    types: tuple[str, ...] = ("Ingress",),
    ingress: list[Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name, "uid": f"uid-np-{ns}-{name}"},
        "spec": {
            "podSelector": {"matchLabels": dict(selector or {})},
            "policyTypes": list(types),
            "ingress": list(ingress or []),
        },
    }


def node_dict(
    name: str, *, address: str = "172.18.0.2", pod_cidr: str = "10.244.0.0/24"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-node-{name}"},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


@dataclass
class _Event:
    rv: int
    type: str
    obj: dict[str, Any]


@dataclass
class FakeApiSource:
    """An in-memory API server for the watchers (see module docstring)."""

    node_name: str = "node-0"
    rv: int = 1
    objects: dict[Kind, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {k: {} for k in Kind}
    )
    log: list[tuple[Kind, _Event]] = field(default_factory=list)
    compacted: int = 0  # watches from below this get 410
    refuse: int = 0  # the next N calls fail as if the connection was refused
    drop_after: int | None = None  # the next watch dies after this many events
    calls: list[str] = field(default_factory=list)
    bookmarks: bool = True
    idle_wait: float = 0.0  # real-time tests: a watch with nothing new lingers this long
    not_served: set[Kind] = field(default_factory=set)  # CRD not installed: 404

    # --- mutations (like kubectl) -------------------------------------------------------
    def put(self, kind: Kind, obj: dict[str, Any]) -> int:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = object_key(kind, obj)
        etype = "MODIFIED" if key in self.objects[kind] else "ADDED"
        self.objects[kind][key] = obj
        self.log.append((kind, _Event(self.rv, etype, obj)))
        return self.rv

    def remove(self, kind: Kind, obj: dict[str, Any]) -> int:
        key = object_key(kind, obj)
        old = self.objects[kind].pop(key)
        self.rv += 1
        old = copy.deepcopy(old)
        old["metadata"]["resourceVersion"] = str(self.rv)
        self.log.append((kind, _Event(self.rv, "DELETED", old)))
        return self.rv

    def compact(self) -> None:
        self.compacted = self.rv

    def _visible(self, kind: Kind, obj: dict[str, Any]) -> bool:
        return True  # the agent watches every Node (ClusterNetworkPolicy `nodes` peers)

    def _fault(self, what: str) -> None:
        self.calls.append(what)
        if self.refuse > 0:
            self.refuse -= 1
            raise ApiUnavailable(f"{what}: connection refused")

    # --- ApiSource ----------------------------------------------------------------------
    def list_page(self, kind: Kind, *, limit: int, continue_token: str | None) -> ListPage:
        self._fault(f"list {kind.value}")
        if kind in self.not_served:
            raise ApiRejected(404, f"list {kind.value}: the server could not find the resource")
        items = sorted(
            (o for o in self.objects[kind].values() if self._visible(kind, o)),
            key=lambda o: object_key(kind, o),
        )
        start = int(continue_token or 0)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return ListPage(
            tuple(copy.deepcopy(page)), str(self.rv), str(start + limit) if more else None
        )

    def watch(
        self, kind: Kind, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[JsonDict]:
        self._fault(f"watch {kind.value}")
        return self._stream(kind, int(resource_version))

    def _stream(self, kind: Kind, since: int) -> Iterator[JsonDict]:
        if since < self.compacted:
            yield {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": f"too old resource version: {since}",
                },
            }
            return
        sent = 0
        log = list(self.log)
        upto = log[-1][1].rv if log else 1  # a bookmark never claims more than was delivered
        for k, ev in log:
            if k is not kind or ev.rv <= since or not self._visible(kind, ev.obj):
                continue
            if self.drop_after is not None and sent >= self.drop_after:
                self.drop_after = None
                raise ApiUnavailable(f"watch {kind.value}: connection reset by peer")
            yield {"type": ev.type, "object": copy.deepcopy(ev.obj)}
            sent += 1
        if not sent and self.idle_wait:
            time.sleep(self.idle_wait)
        if self.bookmarks:
            yield {
                "type": "BOOKMARK",
                "object": {"kind": "Pod", "metadata": {"resourceVersion": str(upto)}},
            }


class RecordingSink:
    """A Sink that records calls (for watcher tests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Kind, str, str]] = []
        self.objects: dict[Kind, dict[str, object]] = {k: {} for k in Kind}

    def replace(self, kind: Kind, objects: Any, resource_version: str) -> None:
        self.calls.append(("replace", kind, ",".join(sorted(objects)), resource_version))
        self.objects[kind] = dict(objects)

    def upsert(self, kind: Kind, key: str, obj: object, resource_version: str) -> None:
        self.calls.append(("upsert", kind, key, resource_version))
        self.objects[kind][key] = obj

    def delete(self, kind: Kind, key: str, resource_version: str) -> None:
        self.calls.append(("delete", kind, key, resource_version))
        self.objects[kind].pop(key, None)

    def bookmark(self, kind: Kind, resource_version: str) -> None:
        self.calls.append(("bookmark", kind, "", resource_version))


class FakeDataplane:
    """Records applies; can be told to fail or to report tampering.

    Like the Applier it refuses a ruleset it cannot apply (fail=True raises
    ApplyError) and keeps the previous one in place when it does.
    """

    def __init__(self) -> None:
        self.applied: list[tuple[Any, bool]] = []
        self.current: Any = None
        self.fail = 0  # fail the next N applies
        self.tamper = False
        self.lock = threading.Lock()

    def apply(self, desired: Any, *, full: bool) -> None:
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                raise ApplyError("iptables-restore: line 3 failed\n   3: -A NPA-X -j NOWHERE")
            self.applied.append((desired, full))
            self.current = desired

    def tampered(self) -> bool:
        t, self.tamper = self.tamper, False
        return t


def gone() -> Gone:
    return Gone("expired")

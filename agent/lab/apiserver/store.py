"""The object store: one global resourceVersion counter, the objects, and the event history.

Every write takes the one lock, bumps the counter, stores an immutable snapshot, appends the
event to a bounded history and hands it to every open watcher, all before releasing the lock:
that single ordering is what makes watches exact (every event once, in order) and what lets a
watch resume from any resourceVersion still in the history (older ones get 410 Gone).
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from agent.lab.apiserver import errors
from agent.lab.apiserver.resources import NAMESPACES, RESOURCES, ResourceInfo
from agent.lab.apiserver.selectors import Predicate
from agent.lab.apiserver.watch import (
    ADDED,
    BOOKMARK,
    DELETED,
    MODIFIED,
    Delivery,
    Event,
    Watcher,
    encode_event,
)

Obj = dict[str, Any]
Mutation = Callable[[Obj], Obj]


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _without_rv(obj: Obj) -> Obj:
    clone = dict(obj)
    meta = dict(_meta(obj))
    meta.pop("resourceVersion", None)
    clone["metadata"] = meta
    return clone


def bookmark_object(info: ResourceInfo, rv: int, *, initial_end: bool = False) -> Obj:
    """The object of a BOOKMARK event: only kind, apiVersion and the resourceVersion."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}


class Store:
    """Thread-safe in-memory storage for every resource kind."""

    def __init__(self, *, history_limit: int = 50_000) -> None:
        self._lock = threading.RLock()
        self._rv = 0
        self._compacted_rv = 0
        self._history: deque[Event] = deque()
        self._history_limit = history_limit
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r.key: {} for r in RESOURCES}
        self._watchers: set[Watcher] = set()
        self.changed = threading.Condition(self._lock)

    # -- reading -----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    @property
    def compacted_rv(self) -> int:
        with self._lock:
            return self._compacted_rv

    def get(self, info: ResourceInfo, namespace: str, name: str) -> Obj:
        with self._lock:
            obj = self._objects[info.key].get((namespace, name))
        if obj is None:
            raise errors.not_found(info.plural, name, group=info.group)
        return obj

    def find(self, info: ResourceInfo, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects[info.key].get((namespace, name))

    def list(
        self, info: ResourceInfo, namespace: str | None, predicate: Predicate
    ) -> tuple[list[Obj], int]:
        """Matching objects sorted by (namespace, name), and the resourceVersion of the view."""
        with self._lock:
            items = [
                obj
                for (ns, _), obj in self._objects[info.key].items()
                if (namespace is None or ns == namespace) and predicate(obj)
            ]
            rv = self._rv
        items.sort(key=lambda o: (_meta(o).get("namespace", ""), _meta(o).get("name", "")))
        return items, rv

    # -- writing -----------------------------------------------------------------------------

    def _commit(self, type_: str, info: ResourceInfo, obj: Obj, prev: Obj | None) -> Obj:
        """Store (or forget, for DELETED) `obj` with the next resourceVersion. Lock held."""
        self._rv += 1
        meta = dict(_meta(obj))
        meta["resourceVersion"] = str(self._rv)
        obj = {**obj, "metadata": meta}
        namespace = meta.get("namespace", "") if info.namespaced else ""
        key = (namespace, meta["name"])
        if type_ == DELETED:
            self._objects[info.key].pop(key, None)
        else:
            self._objects[info.key][key] = obj
        event = Event(
            type=type_, key=info.key, namespace=namespace, rv=self._rv, obj=obj, prev=prev
        )
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self._compacted_rv = self._history.popleft().rv
        for watcher in self._watchers:
            watcher.offer(event)
        self.changed.notify_all()
        return obj

    def create(self, info: ResourceInfo, obj: Obj, *, dry_run: bool = False) -> Obj:
        meta = _meta(obj)
        name = meta["name"]
        namespace = meta.get("namespace", "") if info.namespaced else ""
        with self._lock:
            if info.namespaced and ("", namespace) not in self._objects[NAMESPACES.key]:
                raise errors.not_found("namespaces", namespace)
            if (namespace, name) in self._objects[info.key]:
                raise errors.already_exists(info.plural, name, group=info.group)
            if dry_run:
                return obj
            return self._commit(ADDED, info, obj, None)

    def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        mutate: Mutation,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """Apply `mutate` to a private copy of the current object, atomically.

        `mutate` may raise an ApiError. A resourceVersion left in the result that differs
        from the stored one is a stale write (409). A result equal to the current object
        is a no-op: no new resourceVersion, no event, as the real server does.
        """
        namespace = namespace if info.namespaced else ""
        with self._lock:
            current = self._objects[info.key].get((namespace, name))
            if current is None:
                raise errors.not_found(info.plural, name, group=info.group)
            updated = mutate(copy.deepcopy(current))
            meta = _meta(updated)
            wanted = meta.get("resourceVersion")
            if wanted not in (None, "") and wanted != _meta(current).get("resourceVersion"):
                raise errors.conflict(
                    info.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                    group=info.group,
                )
            if meta.get("name") != name or (info.namespaced and meta.get("namespace") != namespace):
                raise errors.bad_request(
                    f"the name/namespace of the object does not match the request ({name})"
                )
            if _without_rv(updated) == _without_rv(current):
                return current
            if dry_run:
                return {
                    **updated,
                    "metadata": {**meta, "resourceVersion": _meta(current)["resourceVersion"]},
                }
            return self._commit(MODIFIED, info, updated, current)

    def delete(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        *,
        precondition: Callable[[Obj], None] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Remove an object; deleting a namespace first deletes everything in it."""
        namespace = namespace if info.namespaced else ""
        with self._lock:
            current = self._objects[info.key].get((namespace, name))
            if current is None:
                raise errors.not_found(info.plural, name, group=info.group)
            if precondition is not None:
                precondition(current)
            if dry_run:
                return current
            if info is NAMESPACES:
                for other in RESOURCES:
                    if other.namespaced:
                        for key in [k for k in self._objects[other.key] if k[0] == name]:
                            gone = self._objects[other.key][key]
                            self._commit(DELETED, other, gone, gone)
            return self._commit(DELETED, info, current, current)

    def compact(self) -> int:
        """Forget all history: watches from any older resourceVersion now get 410."""
        with self._lock:
            self._history.clear()
            self._compacted_rv = self._rv
            return self._rv

    # -- watching ----------------------------------------------------------------------------

    def watch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        predicate: Predicate,
        *,
        since: int | None,
        bookmarks: bool,
        initial_end_bookmark: bool = False,
    ) -> Watcher:
        """Open a watch; `since=None` first replays the current objects as ADDED events.

        Raises a 410 ApiError when `since` is older than the retained history.
        """
        with self._lock:
            if since is not None and since < self._compacted_rv:
                raise errors.gone(f"too old resource version: {since} ({self._compacted_rv + 1})")
            watcher = Watcher(
                key=info.key,
                namespace=namespace,
                predicate=predicate,
                bookmarks=bookmarks,
                start_rv=self._rv,
            )
            if since is None:
                items, _ = self.list(info, namespace, predicate)
                for obj in items:
                    rv = int(_meta(obj).get("resourceVersion", "0"))
                    watcher.push(Delivery(type=ADDED, rv=rv, data=encode_event(ADDED, obj)))
                if initial_end_bookmark:
                    mark = bookmark_object(info, self._rv, initial_end=True)
                    watcher.push(
                        Delivery(type=BOOKMARK, rv=self._rv, data=encode_event(BOOKMARK, mark))
                    )
            else:
                for event in self._history:
                    if event.rv > since:
                        watcher.offer(event)
            self._watchers.add(watcher)
            return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)

    def watchers(self) -> Iterable[Watcher]:
        with self._lock:
            return list(self._watchers)

    def bookmark_rv(self, watcher: Watcher) -> int | None:
        """The resourceVersion to announce in a BOOKMARK, if the watcher is behind the counter.

        Checked under the lock: an idle queue then means every event up to the counter that
        this watcher should see has been delivered.
        """
        with self._lock:
            if watcher.idle() and self._rv > watcher.last_rv:
                watcher.last_rv = self._rv
                return self._rv
            return None

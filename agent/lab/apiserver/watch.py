"""Watch fan-out: one queue per open watch, filled in commit order under the store's lock.

The store calls `Watcher.offer` for every committed change while it holds its lock, so each
watcher receives events exactly once and in resourceVersion order. A watcher translates a
change into what its selector sees (an object leaving the selected set is a DELETED, one
entering it an ADDED), exactly as the real server does.
"""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field
from typing import Any

from agent.lab.apiserver.selectors import Predicate

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"


@dataclass(slots=True)
class Event:
    """One committed change. `obj` and `prev` are snapshots that nobody mutates."""

    type: str
    key: str
    namespace: str
    rv: int
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encode(self, type_: str) -> bytes:
        data = self._encoded.get(type_)
        if data is None:
            data = encode_event(type_, self.obj)
            self._encoded[type_] = data
        return data


def encode_event(type_: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a watcher's stream writes next."""

    type: str
    rv: int
    data: bytes


STOP = Delivery(type="STOP", rv=0, data=b"")


class Watcher:
    """An open watch on one resource (optionally one namespace) with a selector."""

    def __init__(
        self,
        *,
        key: str,
        namespace: str | None,
        predicate: Predicate,
        bookmarks: bool,
        start_rv: int,
    ) -> None:
        self.key = key
        self.namespace = namespace
        self.predicate = predicate
        self.bookmarks = bookmarks
        self.last_rv = start_rv
        self._queue: queue.SimpleQueue[tuple[str, Event] | Delivery] = queue.SimpleQueue()

    def wants(self, event: Event) -> bool:
        return event.key == self.key and (
            self.namespace is None or event.namespace == self.namespace
        )

    def offer(self, event: Event) -> None:
        """Called by the store, under its lock, for every change of this resource."""
        if not self.wants(event):
            return
        now = self.predicate(event.obj)
        before = event.prev is not None and self.predicate(event.prev)
        if event.type == MODIFIED:
            type_ = MODIFIED if now and before else ADDED if now else DELETED if before else ""
        else:
            type_ = event.type if now else ""
        if type_:
            self._queue.put((type_, event))

    def push(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def idle(self) -> bool:
        return self._queue.empty()

    def stop(self) -> None:
        self._queue.put(STOP)

    def next(self, timeout: float) -> Delivery | None:
        """The next thing to write, or None after `timeout` seconds of nothing."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Delivery):
            return item
        type_, event = item
        self.last_rv = max(self.last_rv, event.rv)
        return Delivery(type=type_, rv=event.rv, data=event.encode(type_))

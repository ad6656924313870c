"""Drop events on the node: aggregate, log, count, and keep the recent ones for /drops.

    NFLOG reader thread --LoggedPacket--> EventNamer (core) --DropEvent--> DropLog
    DropLog: per key (node, action, direction, pod, peer, protocol, port,
             policies) one record {count, first, last} while its window is open;
             a record is logged as one JSON line when its window closes and
             stays in a bounded ring that /drops serves (open records too).

Enforcement never waits for any of this: the kernel drops (or, in audit mode,
passes) the packet whatever we do, NFLOG never blocks, and this thread only
reads. The kernel rate-limits what it logs (hashlimit per source/destination),
so counts here are logged packets; the exact number of drops is the kernel's
counter (`netpol_dropped_packets`). What could not be read is counted in
`netpol_drop_events_lost`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from agent.core.dropevents import DropEvent, EventKey, EventNamer
from agent.core.errors import DataplaneError
from agent.core.model import ClusterState

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 5.0
DEFAULT_RING = 1000
MAX_OPEN = 10_000  # open records; beyond this a new key's events are counted as lost


@dataclass
class Record:
    event: DropEvent
    count: int
    first: float
    last: float

    def as_dict(self) -> dict[str, Any]:
        e = self.event
        return {
            "node": e.node,
            "action": e.action,
            "direction": e.direction,
            "pod": e.pod,
            "peer": e.peer,
            "protocol": e.protocol,
            "port": e.port,
            "policies": list(e.policies),
            "count": self.count,
            "first": round(self.first, 6),
            "last": round(self.last, 6),
        }


class DropMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "netpol_drop_events",
            "Packets the drop path logged (rate-limited per source/destination in the kernel), "
            "by local pod, direction and action (drop or audit).",
            ["namespace", "pod", "direction", "action"],
            registry=registry,
        )
        self.lost = Counter(
            "netpol_drop_events_lost",
            "Logged packets the agent never turned into events (socket overflow, too many keys).",
            registry=registry,
        )


class DropLog:
    """Aggregates events per key over a window; thread-safe; never blocks for long."""

    def __init__(
        self,
        *,
        metrics: DropMetrics | None = None,
        window: float = DEFAULT_WINDOW,
        ring: int = DEFAULT_RING,
    ) -> None:
        self.metrics = metrics
        self.window = window
        self._open: OrderedDict[EventKey, Record] = OrderedDict()
        self._closed: deque[Record] = deque(maxlen=ring)
        self._lock = threading.Lock()

    def add(self, events: Iterable[DropEvent]) -> None:
        with self._lock:
            for e in events:
                record = self._open.get(e.key)
                if record is None:
                    if len(self._open) >= MAX_OPEN:
                        self.lost(1)
                        continue
                    self._open[e.key] = Record(e, 1, e.time, e.time)
                else:
                    record.count += 1
                    record.first = min(record.first, e.time)
                    record.last = max(record.last, e.time)
                if self.metrics is not None:
                    ns, _, name = e.pod.partition("/")
                    self.metrics.events.labels(ns, name, e.direction, e.action).inc()

    def lost(self, n: int) -> None:
        if n > 0 and self.metrics is not None:
            self.metrics.lost.inc(n)

    def flush(self, now: float) -> list[Record]:
        """Close the windows that started at least `window` ago; log and return them."""
        with self._lock:
            done = [r for r in self._open.values() if now - r.first >= self.window]
            for r in done:
                del self._open[r.event.key]
                self._closed.append(r)
        for r in done:
            log.info(r.event.action, extra={"event": "drop", **_log_fields(r)})
        return done

    def records(self) -> list[dict[str, Any]]:
        """The ring (oldest first), then the records whose windows are still open."""
        with self._lock:
            return [r.as_dict() for r in (*self._closed, *self._open.values())]


def _log_fields(r: Record) -> dict[str, Any]:
    fields = r.as_dict()
    fields["policies"] = ",".join(r.event.policies)
    return fields


class Packet(Protocol):
    prefix: str
    family: int
    payload: bytes
    time: float


class Reader(Protocol):
    lost: int

    def open(self) -> Any: ...

    def read(self, timeout: float) -> list[Any]: ...

    def close(self) -> None: ...


class DropWatcher:
    """The reader thread: NFLOG packets -> events -> DropLog; rebinding after failures."""

    def __init__(
        self,
        *,
        node: str,
        reader: Reader,
        droplog: DropLog,
        clock: Callable[[], float],
        retry: float = 1.0,
    ) -> None:
        self.node = node
        self.reader = reader
        self.droplog = droplog
        self.clock = clock
        self.retry = retry
        self._state: ClusterState | None = None
        self._namer: EventNamer | None = None
        self._lost_seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bound = threading.Event()

    def update_state(self, state: ClusterState) -> None:
        """The state the kernel now enforces (called after each successful sync)."""
        self._state = state  # the namer is rebuilt lazily, when a packet needs it

    def start(self) -> DropWatcher:
        self._thread = threading.Thread(target=self.run, name="drop-events", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.reader.open()
            except DataplaneError as exc:
                log.warning("drop events unavailable, retrying: %s", exc)
                self._stop.wait(self.retry)
                continue
            self.bound.set()
            self._lost_seen = self.reader.lost
            try:
                while not self._stop.is_set():
                    self.step(0.25)
            except DataplaneError as exc:
                log.warning("drop event reader failed, rebinding: %s", exc)
            except Exception:
                log.exception("drop event reader crashed, rebinding")
            finally:
                self.bound.clear()
                self.reader.close()
            self._stop.wait(self.retry)
        self.droplog.flush(float("inf"))

    def step(self, timeout: float) -> int:
        """Read what arrives within `timeout`, name it, aggregate it; flush due windows."""
        packets: Iterator[Packet] = iter(self.reader.read(timeout))
        events = []
        for p in packets:
            namer = self._current_namer()
            if namer is None:
                self.droplog.lost(1)  # before the first sync: no names to give
                continue
            event = namer.event(prefix=p.prefix, family=p.family, payload=p.payload, time=p.time)
            if event is not None:
                events.append(event)
        self.droplog.add(events)
        lost = self.reader.lost
        self.droplog.lost(lost - self._lost_seen)
        self._lost_seen = lost
        self.droplog.flush(self.clock())
        return len(events)

    def _current_namer(self) -> EventNamer | None:
        state = self._state
        if state is None:
            return None
        if self._namer is None or self._namer.state is not state:
            self._namer = EventNamer(state, self.node)
        return self._namer

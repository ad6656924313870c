"""List-then-watch one kind: finite steps you can call from a test, and the thin loop.

`list_all` (one consistent, paginated list) and `watch_pass` (one watch
request, until the server closes it) are finite functions; `Watcher.run` is
the loop that strings them together the way client-go's reflector and kopf's
`infinite_watch` do:

    list -> watch from the list's resourceVersion -> watch again from the
    newest resourceVersion seen (events and bookmarks) -> ...
    410 Gone: list again (the sink diffs the new list against what it holds)
    anything else: wait a jittered exponential backoff, then resume from the
    newest resourceVersion seen, so no change is lost or repeated;
    watches that keep ending without a single event also back off (no spinning).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.core.errors import InputError, KubeError
from agent.kube.api import ABSENT, ApiRejected, ApiSource, Gone, JsonDict, Kind

log = logging.getLogger(__name__)

Decoder = Callable[[Kind, JsonDict], object]


class Sink(Protocol):
    """Where watched objects go (agent.node.state.Store)."""

    def replace(self, kind: Kind, objects: Mapping[str, object], resource_version: str) -> None: ...

    def upsert(self, kind: Kind, key: str, obj: object, resource_version: str) -> None: ...

    def delete(self, kind: Kind, key: str, resource_version: str) -> None: ...

    def bookmark(self, kind: Kind, resource_version: str) -> None: ...


class Waiter(Protocol):
    def wait(self, event: threading.Event, timeout: float) -> bool: ...


class BackoffPolicy(Protocol):
    def delay(self, attempt: int) -> float: ...


class WatchObserver(Protocol):
    """Metrics hooks (agent.node.metrics implements them)."""

    def watch_event(self, kind: Kind, event_type: str) -> None: ...

    def watch_restart(self, kind: Kind, reason: str) -> None: ...


class NullObserver:
    def watch_event(self, kind: Kind, event_type: str) -> None:
        pass

    def watch_restart(self, kind: Kind, reason: str) -> None:
        pass


def object_key(kind: Kind, obj: JsonDict) -> str:
    """How the state keys an object: pods by UID (names and IPs get reused), policies by
    ns/name, namespaces and nodes by name."""
    meta = obj.get("metadata") or {}
    if kind is Kind.PODS:
        return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
    if kind is Kind.NETWORK_POLICIES:
        return f"{meta.get('namespace')}/{meta.get('name')}"
    return str(meta.get("name"))


def _describe(kind: Kind, obj: JsonDict) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    return (
        f"{kind.value} {meta['namespace']}/{name}"
        if meta.get("namespace")
        else f"{kind.value} {name}"
    )


def list_all(
    source: ApiSource, kind: Kind, *, decode: Decoder, page_size: int = 500
) -> tuple[dict[str, object], str]:
    """One complete list of `kind`: {key: decoded object}, and the list's resourceVersion.

    Objects that cannot be decoded are logged (naming object and field) and left out.
    """
    objects: dict[str, object] = {}
    token: str | None = None
    resource_version = ""
    while True:
        page = source.list_page(kind, limit=page_size, continue_token=token)
        resource_version = page.resource_version
        for item in page.items:
            decoded = _decode(kind, item, decode)
            if decoded is not None:
                objects[object_key(kind, item)] = decoded
        token = page.continue_token
        if not token:
            return objects, resource_version


def _decode(kind: Kind, obj: JsonDict, decode: Decoder) -> object | None:
    try:
        return decode(kind, obj)
    except InputError as exc:
        log.error(
            "ignoring malformed %s: %s",
            _describe(kind, obj),
            exc,
            extra={"kind": kind.value, "object": object_key(kind, obj)},
        )
        return None


def watch_pass(
    source: ApiSource,
    kind: Kind,
    sink: Sink,
    *,
    resource_version: str,
    timeout_seconds: int,
    decode: Decoder,
    observer: WatchObserver | None = None,
    stop: threading.Event | None = None,
) -> str:
    """One watch request: feed every event to the sink; return the newest resourceVersion.

    Raises Gone on a 410 (in the response or as an ERROR event), ApiUnavailable /
    ApiRejected otherwise. Events handed to the sink before a failure stay handed;
    `Watcher` tracks the newest resourceVersion the sink saw and resumes after it.
    """
    obs = observer or NullObserver()
    rv = resource_version
    for event in source.watch(kind, resource_version=rv, timeout_seconds=timeout_seconds):
        event_type = str(event.get("type", ""))
        obj: JsonDict = event.get("object") or {}
        if event_type == "ERROR":
            code = int(obj.get("code") or 0)
            message = str(obj.get("message") or obj.get("reason") or "watch error")
            if code == 410:
                raise Gone(f"{kind.value}: {message}")
            raise ApiRejected(code, f"{kind.value} watch: {message}")
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        obs.watch_event(kind, event_type)
        if event_type == "BOOKMARK":
            sink.bookmark(kind, new_rv)
        elif event_type in ("ADDED", "MODIFIED"):
            key = object_key(kind, obj)
            decoded = _decode(kind, obj, decode)
            if decoded is None:
                sink.delete(kind, key, new_rv)  # unusable now: forget the old version
            else:
                sink.upsert(kind, key, decoded, new_rv)
        elif event_type == "DELETED":
            sink.delete(kind, object_key(kind, obj), new_rv)
        else:
            log.warning("unknown watch event type %r for %s", event_type, kind.value)
            continue
        rv = new_rv
        if stop is not None and stop.is_set():
            break
    return rv


@dataclass
class Watcher:
    """The thin loop for one kind. `run(stop)` returns when `stop` is set."""

    source: ApiSource
    kind: Kind
    sink: Sink
    decode: Decoder
    waiter: Waiter
    backoff: BackoffPolicy
    timeout_seconds: int = 120
    observer: WatchObserver = field(default_factory=NullObserver)
    page_size: int = 500
    resource_version: str | None = None  # newest seen; None: must (re)list
    absent_recheck_seconds: float = 60.0  # an optional kind not served: list again after
    absent_logged: bool = False
    # Told the API server's refusal (401/403: RBAC, credentials) and None once a list or
    # a watch pass succeeds again: the agent reports it in /readyz.
    on_problem: Callable[[Kind, str | None], None] | None = None

    def _problem(self, message: str | None) -> None:
        if self.on_problem is not None:
            self.on_problem(self.kind, message)

    def step(self, stop: threading.Event) -> int:
        """One finite step: a list if needed, then one watch pass; returns how many watch
        events (bookmarks included) the pass delivered. Raises on failure."""
        if self.resource_version is None:
            try:
                objects, rv = list_all(
                    self.source, self.kind, decode=self.decode, page_size=self.page_size
                )
            except ApiRejected as exc:
                if not (self.kind.optional and exc.status in (403, 404)):
                    raise
                self._absent(exc, stop)
                return 1
            self.sink.replace(self.kind, objects, rv)
            self.resource_version = rv
            if self.absent_logged:
                log.warning("%s: now served by the API", self.kind.value)
                self.absent_logged = False
            self._problem(None)
            log.info(
                "listed %s",
                self.kind.value,
                extra={"kind": self.kind.value, "count": len(objects), "resource_version": rv},
            )
        tracker = _Tracking(self.sink, self)
        self.resource_version = watch_pass(
            self.source,
            self.kind,
            tracker,
            resource_version=self.resource_version,
            timeout_seconds=self.timeout_seconds,
            decode=self.decode,
            observer=self.observer,
            stop=stop,
        )
        self._problem(None)
        return tracker.delivered

    def _absent(self, exc: ApiRejected, stop: threading.Event) -> None:
        """An optional kind the API does not serve (CRD not installed, or no RBAC to read
        it): the rest of the cluster is enforced without it; look again later."""
        self.sink.replace(self.kind, {}, ABSENT)
        if not self.absent_logged:
            why = "not installed" if exc.status == 404 else "not readable (RBAC)"
            log.warning(
                "%s: the API does not serve it (%s: %s); enforcing without it, checking "
                "again every %.0fs",
                self.kind.value,
                why,
                exc,
                self.absent_recheck_seconds,
                extra={"kind": self.kind.value},
            )
            self.absent_logged = True
        self.waiter.wait(stop, self.absent_recheck_seconds)

    def run(self, stop: threading.Event) -> None:
        failures = 0
        empty = 0
        while not stop.is_set():
            try:
                delivered = self.step(stop)
                failures = 0
                # a server that keeps closing watches at once must not make us spin
                empty = 0 if delivered else empty + 1
                if empty:
                    self.waiter.wait(stop, self.backoff.delay(empty))
            except Gone as exc:
                log.info("%s: resourceVersion expired, relisting (%s)", self.kind.value, exc)
                self.observer.watch_restart(self.kind, "gone")
                self.resource_version = None
                failures += 1
                if failures > 1:  # a relist that is itself gone: do not spin
                    self.waiter.wait(stop, self.backoff.delay(failures - 1))
            except KubeError as exc:
                failures += 1
                reason = "rejected" if isinstance(exc, ApiRejected) else "error"
                self.observer.watch_restart(self.kind, reason)
                if isinstance(exc, ApiRejected):
                    self._problem(str(exc))
                delay = self.backoff.delay(failures)
                log.warning(
                    "%s watch failed, retrying in %.2fs: %s",
                    self.kind.value,
                    delay,
                    exc,
                    extra={"kind": self.kind.value, "attempt": failures},
                )
                self.waiter.wait(stop, delay)
            except Exception as exc:  # never let one bad event kill the watcher thread
                failures += 1
                self.observer.watch_restart(self.kind, "bug")
                log.exception("%s watcher crashed, relisting: %s", self.kind.value, exc)
                self.resource_version = None
                self.waiter.wait(stop, self.backoff.delay(failures))


class _Tracking:
    """A sink wrapper recording the newest resourceVersion handed on, so a watch that
    dies mid-stream resumes exactly after the last event the sink saw."""

    def __init__(self, sink: Sink, watcher: Watcher) -> None:
        self._sink = sink
        self._watcher = watcher
        self.delivered = 0

    def _seen(self, resource_version: str) -> None:
        self._watcher.resource_version = resource_version
        if not self.delivered:  # the watch is served again: no refusal to report
            self._watcher._problem(None)
        self.delivered += 1

    def replace(self, kind: Kind, objects: Mapping[str, object], resource_version: str) -> None:
        self._sink.replace(kind, objects, resource_version)
        self._seen(resource_version)

    def upsert(self, kind: Kind, key: str, obj: object, resource_version: str) -> None:
        self._sink.upsert(kind, key, obj, resource_version)
        self._seen(resource_version)

    def delete(self, kind: Kind, key: str, resource_version: str) -> None:
        self._sink.delete(kind, key, resource_version)
        self._seen(resource_version)

    def bookmark(self, kind: Kind, resource_version: str) -> None:
        self._sink.bookmark(kind, resource_version)
        self._seen(resource_version)

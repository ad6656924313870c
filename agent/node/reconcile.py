"""The sync loop: keep this node's kernel in step with the cluster state.

    watchers --(Store writes)--> notify() --> Pacer.request
    run(): loop { action = pacer.next_action(now); step(action); wait }
    sync_once: snapshot -> compile -> dataplane.apply -> after-apply steps -> metrics, status

Rules (DESIGN.md "Syncing"):
- nothing is written to the kernel until every kind has finished its first list;
- the first sync and every periodic resync are full (a full compile, the
  reference); others are incremental (a StatefulCompiler recompiles only what
  the changes affect, the Applier rewrites only what changed); a failed sync keeps the old rules,
  retries with backoff and forces a full sync;
- a tamper check (the Applier's canary) runs on its own timer; drift -> full;
- invalid policies are logged once per distinct problem, naming policy and
  field; they fail closed in the compiler, the others are enforced;
- after each successful apply the agent publishes the minimum over kinds of
  the resourceVersions the applied state had seen (the convergence protocol);
  when only resourceVersions advanced (bookmarks, no-op updates) and nothing
  is pending, it publishes the new minimum without a sync. It also publishes
  that per kind (`synced_resource_versions`): a real API server sends a
  kind's watch a bookmark only about once a minute, so "every kind reached
  the newest resourceVersion" can lag; "each kind reached its own newest
  object" does not (agent.lab.probe uses it against a real control plane).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from agent import __version__
from agent.core.errors import NetpolError
from agent.core.model import ClusterState
from agent.kube.api import Kind
from agent.node.metrics import Metrics, StateView
from agent.node.pacing import Action, Clock, Pacer
from agent.node.state import Snapshot, Store, min_resource_version
from agent.node.views import Diagnostics, state_view

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """After the first sync: collect once, then freeze what survived.

    The cluster state, the compiler's caches and the client's objects are
    hundreds of thousands of long-lived objects; every full (generation 2)
    collection walked them all, 0.1-0.4 s at 10,000 pods, and a watch event
    arriving meanwhile waited (the 355-413 ms outliers of the incremental
    benchmark). Frozen objects are never scanned again; later objects are.
    """
    gc.collect()
    gc.freeze()


Compiler = Callable[[ClusterState], Any]  # state -> the desired ruleset for this node


@runtime_checkable
class StatefulCompiler(Protocol):
    """A compiler that works incrementally between full syncs (agent.node.engine.NodeCompiler).

    `compile(state, full=True)` runs the full reference compile; `reset()` forgets
    the baseline after a failed sync, so that nothing stale survives it.
    """

    def compile(self, state: ClusterState, *, full: bool = False) -> Any: ...

    def reset(self) -> None: ...


class Dataplane(Protocol):
    def apply(self, desired: Any, *, full: bool) -> None:
        """Program the kernel; raise DataplaneError (old rules stay) on failure."""
        ...

    def tampered(self) -> bool:
        """Cheap check that the kernel still holds what we applied."""
        ...


RulesetStats = Callable[[Any], dict[str, int]]  # ruleset -> chains/rules/ipsets/ipset_entries

# Steps run after each successful apply, in order, with the state and the ruleset applied
# (the new-pod hold's commit, revocation of flows no longer allowed). A step that applied a
# newer ruleset returns it as `Reapplied(ruleset)`; the next steps get that one. A step that
# raises is logged and counted (netpol_sync_failures{phase="after_apply"}); the sync stays a
# success.
AfterApply = Callable[[ClusterState, Any], object]


@dataclass(frozen=True, slots=True)
class Reapplied:
    ruleset: Any


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    action: Action
    ok: bool
    seconds: float
    error: str = ""


@dataclass
class Status:
    """What /statusz, /readyz and the collector report."""

    node: str
    ready: bool = False
    synced_resource_version: int = 0
    synced_resource_versions: dict[str, int] = field(default_factory=dict)  # per kind
    last_sync_unix: float = 0.0
    last_error: str = ""
    consecutive_failures: int = 0
    syncs: int = 0
    view: StateView = field(default_factory=StateView)


class Reconciler:
    def __init__(
        self,
        *,
        node_name: str,
        store: Store,
        compiler: Compiler,
        dataplane: Dataplane,
        pacer: Pacer,
        clock: Clock,
        metrics: Metrics,
        ruleset_stats: RulesetStats | None = None,
        healthz_threshold: float = 120.0,
        on_synced: Callable[[ClusterState], None] | None = None,
        after_apply: tuple[AfterApply, ...] = (),
    ) -> None:
        self.node_name = node_name
        self.store = store
        self.compiler = compiler
        self.dataplane = dataplane
        self.pacer = pacer
        self.clock = clock
        self.metrics = metrics
        self.ruleset_stats = ruleset_stats
        self.healthz_threshold = healthz_threshold
        self.on_synced = on_synced  # told the state the kernel now enforces
        self.after_apply = after_apply
        self._lock = threading.Lock()  # guards pacer and status
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._status = Status(node=node_name)
        self._watch_problems: dict[Kind, str] = {}  # the API server refused us (RBAC, 401)
        self._diagnostics = Diagnostics(node_name)

    # --- inputs -------------------------------------------------------------------------
    def notify(self, relevant: bool) -> None:
        """The store changed (relevant) or only a resourceVersion advanced."""
        if relevant:
            with self._lock:
                self.pacer.request(self.clock.monotonic())
        self._wake.set()

    def note_watch_problem(self, kind: Kind, message: str | None) -> None:
        """A watcher was refused (message) or works again (None); /readyz reports it."""
        with self._lock:
            if message is None:
                self._watch_problems.pop(kind, None)
            else:
                if self._watch_problems.get(kind) != message:
                    log.error("the API server refuses to serve %s: %s", kind.value, message)
                self._watch_problems[kind] = message

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    # --- finite steps -------------------------------------------------------------------
    def step(self) -> float:
        """Do what is due now (at most one sync or check); return when to look again."""
        if not self.store.all_listed():
            return float("inf")  # woken by the store when a list completes
        now = self.clock.monotonic()
        with self._lock:
            action, next_at = self.pacer.next_action(now)
            if action is not None:
                self.pacer.started(now, action)
        if action is None:
            self._publish_if_clean()
            return next_at
        if action is Action.TAMPER_CHECK:
            self.tamper_check_once(now)
        else:
            self.sync_once(action, started=now)
        return self.clock.monotonic()  # look again at once: more may be due

    def sync_once(self, action: Action, *, started: float) -> SyncOutcome:
        """One sync of the current state (pacer.started must have been called)."""
        snap = self.store.snapshot()
        self._diagnostics.check(snap.state)
        kind = action.value
        phase = "compile"
        try:
            if isinstance(self.compiler, StatefulCompiler):
                ruleset = self.compiler.compile(snap.state, full=action is Action.FULL_SYNC)
            else:
                ruleset = self.compiler(snap.state)
            phase = "apply"
            self.dataplane.apply(ruleset, full=action is Action.FULL_SYNC)
        except Exception as exc:
            return self._failed(snap, action, started, phase, exc)
        done = self.clock.monotonic()
        self._after_apply(snap.state, ruleset)
        seconds = done - started
        if self.on_synced is not None:
            self.on_synced(snap.state)
        self.metrics.sync_duration.labels(kind, "success").observe(seconds)
        for resource, arrived in snap.event_times:
            self.metrics.event_to_kernel.labels(resource.value).observe(max(0.0, done - arrived))
        wall = self.clock.time()
        self.metrics.last_success.set(wall)
        stats = self.ruleset_stats(ruleset) if self.ruleset_stats else {}
        view = state_view(snap.state, node=self.node_name, ruleset_stats=stats)
        with self._lock:
            failures_before = self.pacer.failures
            self.pacer.finished(done, ok=True, action=action, since=started)
            st = self._status
            st.ready = True
            st.synced_resource_version = max(
                st.synced_resource_version, int(snap.synced_resource_version)
            )
            _advance(st.synced_resource_versions, snap.resource_versions)
            st.last_sync_unix = wall
            st.last_error = ""
            st.consecutive_failures = 0
            st.syncs += 1
            st.view = view
        first = st.syncs == 1
        recovered = failures_before > 0
        log.log(
            logging.INFO if first or recovered else logging.DEBUG,
            "first sync done, enforcing" if first else "synced",
            extra={
                "sync": kind,
                "seconds": round(seconds, 6),
                "changes": len(snap.event_times),
                "resource_version": snap.synced_resource_version,
            },
        )
        if first:
            settle_heap()
        return SyncOutcome(action, True, seconds)

    def _after_apply(self, state: ClusterState, ruleset: Any) -> None:
        for step in self.after_apply:
            try:
                out = step(state, ruleset)
                if isinstance(out, Reapplied):
                    ruleset = out.ruleset
            except Exception as exc:
                self.metrics.sync_failures.labels("after_apply").inc()
                log.error(
                    "after-apply step failed (retried after the next sync): %s",
                    exc,
                    extra={"step": getattr(step, "__qualname__", repr(step))},
                    exc_info=not isinstance(exc, NetpolError),
                )

    def _failed(
        self, snap: Snapshot, action: Action, started: float, phase: str, exc: Exception
    ) -> SyncOutcome:
        self.store.restore_dirty(snap)
        if isinstance(self.compiler, StatefulCompiler):
            self.compiler.reset()  # the retry is a full sync with a full compile
        done = self.clock.monotonic()
        self.metrics.sync_duration.labels(action.value, "failure").observe(done - started)
        self.metrics.sync_failures.labels(phase).inc()
        with self._lock:
            self.pacer.finished(done, ok=False, action=action, since=started)
            self._status.last_error = f"{phase}: {exc}"
            self._status.consecutive_failures = self.pacer.failures
        log.error(
            "sync failed; previous rules stay in place, retrying with a full sync: %s",
            exc,
            extra={"phase": phase, "sync": action.value, "failures": self.pacer.failures},
            exc_info=phase == "compile" or not isinstance(exc, NetpolError),
        )
        return SyncOutcome(action, False, done - started, f"{phase}: {exc}")

    def tamper_check_once(self, now: float) -> bool:
        try:
            tampered = self.dataplane.tampered()
        except Exception as exc:
            log.warning("tamper check failed, forcing a full sync: %s", exc)
            self.metrics.sync_failures.labels("tamper_check").inc()
            tampered = True
        if tampered:
            self.metrics.tamper_detected.inc()
            log.warning("our rules changed behind our back; repairing with a full sync")
        with self._lock:
            self.pacer.tamper_result(self.clock.monotonic(), tampered=tampered)
        return tampered

    def _publish_if_clean(self) -> None:
        with self._lock:
            if self.pacer.pending or self.pacer.failures or not self._status.ready:
                return
            rvs = self.store.clean_resource_versions()
            if rvs is None:
                return
            rv = int(min_resource_version(rvs))
            self._status.synced_resource_version = max(self._status.synced_resource_version, rv)
            _advance(self._status.synced_resource_versions, rvs)

    # --- the thin loop --------------------------------------------------------------------
    def run(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                next_at = self.step()
            except Exception:  # a bug must not stop enforcement updates forever
                log.exception("reconcile step crashed")
                next_at = self.clock.monotonic() + 1.0
            timeout = min(next_at - self.clock.monotonic(), 3600.0)
            if timeout > 0 and not self._stopped.is_set():
                self.clock.wait(self._wake, timeout)

    # --- observation --------------------------------------------------------------------
    def status(self) -> Status:
        with self._lock:
            st = self._status
            return Status(
                node=st.node,
                ready=st.ready,
                synced_resource_version=st.synced_resource_version,
                synced_resource_versions=dict(st.synced_resource_versions),
                last_sync_unix=st.last_sync_unix,
                last_error=st.last_error,
                consecutive_failures=st.consecutive_failures,
                syncs=st.syncs,
                view=replace(
                    st.view,
                    ready=st.ready,
                    synced_resource_version=st.synced_resource_version,
                    objects={k.value: n for k, n in self.store.counts().items()},
                ),
            )

    def healthy(self) -> tuple[bool, str]:
        """Liveness: False when a due sync has not succeeded within the threshold."""
        if not self.store.all_listed():
            return True, "waiting for the first list of " + ", ".join(
                k.value for k in self.store.unlisted()
            )
        now = self.clock.monotonic()
        with self._lock:
            since = self.pacer.due_since(now)
            failures = self.pacer.failures
        if since is None or now - since <= self.healthz_threshold:
            return True, "ok"
        return False, (
            f"no successful sync for {now - since:.0f}s although one was due "
            f"({failures} consecutive failures)"
        )

    def ready(self) -> tuple[bool, str]:
        """Readiness: every kind listed and the first apply succeeded, no watch refused."""
        with self._lock:
            problems = dict(self._watch_problems)
        if problems:
            return False, "the API server refuses us (check the ClusterRole): " + "; ".join(
                f"{k.value}: {m}" for k, m in sorted(problems.items(), key=lambda i: i[0].value)
            )
        unlisted = self.store.unlisted()
        if unlisted:
            return False, "waiting for the first list of " + ", ".join(k.value for k in unlisted)
        st = self.status()
        if not st.ready:
            return False, "waiting for the first successful sync" + (
                f" (last error: {st.last_error})" if st.last_error else ""
            )
        return True, "ok"

    def statusz(self) -> dict[str, Any]:
        st = self.status()
        healthy, why = self.healthy()
        return {
            "version": __version__,
            "node": st.node,
            "ready": st.ready,
            "healthy": healthy,
            "health": why,
            "synced_resource_version": str(st.synced_resource_version),
            "synced_resource_versions": {k: str(v) for k, v in st.synced_resource_versions.items()},
            "last_sync_unix": st.last_sync_unix,
            "syncs": st.syncs,
            "consecutive_failures": st.consecutive_failures,
            "last_error": st.last_error,
            "resource_versions": {k.value: rv for k, rv in self.store.resource_versions().items()},
            "listed": {k.value: k not in self.store.unlisted() for k in Kind},
            "objects": dict(st.view.objects),
            "policies": st.view.policies,
            "invalid_policies": st.view.invalid_policies,
            "local_pods": st.view.local_pods,
        }


def _advance(synced: dict[str, int], rvs: Mapping[Kind, str]) -> None:
    """Raise each kind's synced resourceVersion to the applied one (integers only)."""
    for kind, rv in rvs.items():
        try:
            value = int(rv)
        except ValueError:
            continue
        synced[kind.value] = max(synced.get(kind.value, 0), value)

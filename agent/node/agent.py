"""Wiring: watchers -> store -> reconciler -> dataplane, plus the HTTP endpoints.

`Agent` takes its edges (the API source, the compiler, the dataplane, the
clock) as arguments, so tests run the whole agent in-process against the lab
API server with a fake dataplane. `run_agent(settings)` builds the real edges
and runs until SIGTERM/SIGINT.

Threads: one watcher per kind, one reconciler, one HTTP server, one drop-event
reader (agent.node.droplog, when an NFLOG group is set); all daemon threads.
Shutdown stops the loops, lets an apply in progress finish (up to
`shutdown_grace`), and leaves every rule in place: enforcement holds while
the pod is replaced, and the next start adopts the rules in one restore.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from agent.core.errors import ConfigError
from agent.core.model import NetworkPolicy
from agent.kube.api import ApiSource, JsonDict, Kind
from agent.kube.watching import Decoder, Watcher
from agent.node.droplog import DropLog, DropMetrics, DropWatcher, Reader
from agent.node.health import HealthServer
from agent.node.hold import Hold, HoldingCompiler, HoldMetrics
from agent.node.metrics import DropCount, Metrics, StateCollector
from agent.node.pacing import Backoff, Clock, Pacer, SystemClock
from agent.node.reconcile import (
    AfterApply,
    Compiler,
    Dataplane,
    Reconciler,
    RulesetStats,
    StatefulCompiler,
)
from agent.node.revocation import (
    ConntrackTable,
    RevocationMetrics,
    RevocationWorker,
    Revoker,
)
from agent.node.settings import Settings
from agent.node.state import Store

log = logging.getLogger(__name__)


@dataclass
class Agent:
    settings: Settings
    source: ApiSource
    decode: Decoder
    compiler: Compiler
    dataplane: Dataplane
    clock: Clock = field(default_factory=SystemClock)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    ruleset_stats: RulesetStats | None = None
    drops: Callable[[], Iterable[DropCount]] | None = None
    conntrack: ConntrackTable | None = None  # revocation (with settings.revoke_established)
    serve_http: bool = True
    drop_reader: Reader | None = None  # NFLOG (agent.dataplane.nflog) or a fake

    def __post_init__(self) -> None:
        s = self.settings
        self.stop_event = threading.Event()
        self.metrics = Metrics(self.registry)
        if s.enforcement == "audit":
            self.decode = _audit_all(self.decode)
        self.droplog: DropLog | None = None
        self.drop_watcher: DropWatcher | None = None
        if self.drop_reader is not None and s.nflog_group >= 0:
            self.droplog = DropLog(metrics=DropMetrics(self.registry), window=s.drop_event_window)
            self.drop_watcher = DropWatcher(
                node=s.node_name,
                reader=self.drop_reader,
                droplog=self.droplog,
                clock=self.clock.time,
            )
        self.store = Store(clock=self.clock.monotonic)
        steps: list[AfterApply] = []
        self.hold: Hold | None = None
        if s.new_pods == "hold" and isinstance(self.compiler, StatefulCompiler):
            self.hold = Hold(
                node=s.node_name, dataplane=self.dataplane, metrics=HoldMetrics(self.registry)
            )
            self.compiler = HoldingCompiler(self.compiler, self.hold)
            steps.append(self.hold.after_apply)
        self.revoker: Revoker | None = None
        self.revocation: RevocationWorker | None = None
        if s.revoke_established and self.conntrack is not None:
            self.revoker = Revoker(
                node=s.node_name,
                table=self.conntrack,
                metrics=RevocationMetrics(self.registry),
                clock=self.clock.monotonic,
            )
            self.revocation = RevocationWorker(self.revoker)
            steps.append(self.revocation.after_apply)
        self.pacer = Pacer(
            now=self.clock.monotonic(),
            min_interval=s.min_sync_interval,
            resync_interval=s.resync_interval,
            tamper_interval=s.effective_tamper_interval,
            backoff=Backoff(s.sync_backoff_initial, s.sync_backoff_max),
        )
        self.reconciler = Reconciler(
            node_name=s.node_name,
            store=self.store,
            compiler=self.compiler,
            dataplane=self.dataplane,
            pacer=self.pacer,
            clock=self.clock,
            metrics=self.metrics,
            ruleset_stats=self.ruleset_stats,
            healthz_threshold=s.healthz_threshold,
            on_synced=self.drop_watcher.update_state if self.drop_watcher else None,
            after_apply=tuple(steps),
        )
        self.store.set_on_change(self.reconciler.notify)
        self.registry.register(StateCollector(lambda: self.reconciler.status().view, self.drops))
        backoff = Backoff(s.watch_backoff_initial, s.watch_backoff_max)
        self.watchers = [
            Watcher(
                source=self.source,
                kind=kind,
                sink=self.store,
                decode=self.decode,
                waiter=self.clock,
                backoff=backoff,
                timeout_seconds=s.watch_timeout_seconds,
                observer=self.metrics,
                on_problem=self.reconciler.note_watch_problem,
            )
            for kind in Kind
        ]
        self.http: HealthServer | None = None
        self._threads: list[threading.Thread] = []
        self._reconcile_thread: threading.Thread | None = None

    def start(self) -> Agent:
        if self.serve_http:
            host, port = self.settings.metrics_host_port
            try:
                server = HealthServer(
                    host=host,
                    port=port,
                    registry=self.registry,
                    source=self.reconciler,
                    drops=self.droplog.records if self.droplog else None,
                )
            except OSError as exc:
                raise ConfigError(
                    f"--metrics-bind-address {host}:{port}: cannot listen: {exc.strerror or exc}"
                ) from exc
            self.http = server.start()
            log.info(
                "serving /metrics /healthz /readyz /statusz /drops",
                extra={"address": f"{host}:{self.http.port}"},
            )
        for watcher in self.watchers:
            t = threading.Thread(
                target=watcher.run,
                args=(self.stop_event,),
                name=f"watch-{watcher.kind.value}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        self._reconcile_thread = threading.Thread(
            target=self.reconciler.run, name="reconcile", daemon=True
        )
        self._reconcile_thread.start()
        if self.drop_watcher is not None:
            self.drop_watcher.start()
        return self

    def stop(self) -> None:
        """Stop promptly; leave the kernel rules in place."""
        self.stop_event.set()
        self.reconciler.stop()
        if self._reconcile_thread is not None:
            self._reconcile_thread.join(self.settings.shutdown_grace)
        if self.drop_watcher is not None:
            self.drop_watcher.stop()
        if self.revocation is not None:
            self.revocation.stop()
        if self.http is not None:
            self.http.close()
        # watcher threads may sit in a blocking read; they are daemons and see stop_event

    def wait(self, timeout: float | None = None) -> bool:
        return self.stop_event.wait(timeout)


def _audit_all(decode: Decoder) -> Decoder:
    """`--enforcement audit`: every NetworkPolicy decoded as audited."""

    def audited(kind: Kind, obj: JsonDict) -> Any:
        value = decode(kind, obj)
        if isinstance(value, NetworkPolicy) and not value.audit:
            return replace(value, audit=True)
        return value

    return audited


def _nflog_reader(settings: Settings) -> Reader | None:
    if settings.nflog_group < 0:
        return None
    from agent.dataplane.nflog import NflogReader

    return NflogReader(settings.nflog_group)


def run_agent(settings: Settings) -> int:
    """`netpol-agent run`: build the real edges, run until SIGTERM/SIGINT."""
    from agent.kube.client import KubeApiSource, load_api_client
    from agent.kube.decode import decode
    from agent.node.engine import build_engine
    from agent.node.logs import setup_logging

    setup_logging(fmt=settings.log_format, level=settings.log_level)
    engine = build_engine(settings)
    api = load_api_client(settings.kubeconfig)
    source = KubeApiSource(
        api,
        node_name=settings.node_name,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    agent = Agent(
        settings=settings,
        source=source,
        decode=decode,
        compiler=engine.compiler,
        dataplane=engine.dataplane,
        ruleset_stats=engine.ruleset_stats,
        drops=engine.drops,
        conntrack=engine.conntrack,
        drop_reader=_nflog_reader(settings) if engine.drop_events else None,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping, rules stay in place", signal.Signals(signum).name)
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "netpol-agent starting",
        extra={
            "node": settings.node_name,
            "backend": settings.backend,
            "resync_interval": settings.resync_interval,
            "revoke_established": settings.revoke_established,
            "new_pods": settings.new_pods,
        },
    )
    agent.start()
    while not agent.wait(1.0):
        pass
    agent.stop()
    log.info("stopped")
    return 0

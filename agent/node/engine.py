"""The real edges behind the reconciler's seams: the (incremental) compiler and the Applier.

`build_engine(settings)` checks the host (br_netfilter and the bridge sysctls;
loudly when they cannot be put right: same-node traffic would bypass policy),
selects the iptables backend, and returns the compiler (`NodeCompiler`), an
`ApplierDataplane` (Applier with an explicit `full` flag), ruleset statistics
for the owned-objects gauges, a throttled reader of the drop counters, and the
conntrack table (revocation).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.core.auditlogging import AuditLogging
from agent.core.compile import CompileOptions
from agent.core.droplogging import DropLogging
from agent.core.errors import DataplaneError, HostCheckError
from agent.core.hold import NewPodHold
from agent.core.incremental import IncrementalCompiler
from agent.core.model import ClusterState
from agent.core.ruleset import Ruleset
from agent.dataplane.applier import Applier
from agent.dataplane.backend import select_backend
from agent.dataplane.conntrack import Conntrack
from agent.dataplane.hostcheck import check_host
from agent.node.drops import DropTotals
from agent.node.metrics import DropCount
from agent.node.settings import Settings

log = logging.getLogger(__name__)

DROP_CACHE_SECONDS = 5.0


class ApplierDataplane:
    """The reconciler's Dataplane over the Applier (plus monotonic drop counters)."""

    def __init__(self, applier: Applier) -> None:
        self.applier = applier
        self._totals = DropTotals()
        self._drops: list[DropCount] = []
        self._drops_at = float("-inf")
        self._drops_lock = threading.Lock()

    def apply(self, desired: Any, *, full: bool) -> None:
        if full:
            self.applier.force_full()
            with self._drops_lock:
                self._sample()  # bank what the kernel counted: the rewrite zeroes it
        result = self.applier.apply(desired) if full else self.applier.apply_quick(desired)
        if result.full:
            with self._drops_lock:
                self._totals.rewritten()
                self._drops_at = float("-inf")
        log.debug(
            "applied",
            extra={
                "full": result.full,
                "changed": result.changed,
                "seconds": round(result.seconds, 6),
            },
        )

    def tampered(self) -> bool:
        return self.applier.tampered()

    def drops(self) -> list[DropCount]:
        """Drop counters per local pod and direction; read at most every few seconds."""
        with self._drops_lock:
            if time.monotonic() - self._drops_at >= DROP_CACHE_SECONDS:
                self._sample()
            return self._drops

    def _sample(self) -> None:
        if self.applier.applied is None:
            return
        try:
            counters = self.applier.drop_counters()
        except DataplaneError as exc:
            log.warning("cannot read drop counters: %s", exc)
            return
        raw = {key: (c.packets, c.bytes) for key, c in counters.items()}
        out = []
        for (pod, direction), (packets, octets) in sorted(self._totals.observe(raw).items()):
            ns, _, name = pod.partition("/")
            out.append(DropCount(ns, name, direction, packets, octets))
        self._drops, self._drops_at = out, time.monotonic()


def ruleset_stats(ruleset: Any) -> dict[str, int]:
    if not isinstance(ruleset, Ruleset):
        return {}
    return {
        "chains": sum(len(t.chains) for t in ruleset.tables.values()),
        "rules": sum(t.rule_count() for t in ruleset.tables.values()),
        "ipsets": len(ruleset.sets),
        "ipset_entries": sum(len(s.members) + len(s.nomatch) for s in ruleset.sets.values()),
    }


@dataclass(frozen=True, slots=True)
class Engine:
    compiler: Callable[[ClusterState], Any]
    dataplane: ApplierDataplane
    ruleset_stats: Callable[[Any], dict[str, int]]
    drops: Callable[[], list[DropCount]]
    conntrack: Conntrack
    drop_events: bool = False  # the drop path logs to --nflog-group: read it


class NodeCompiler:
    """This node's compiler: incremental between full syncs, the full compile on full syncs.

    A StatefulCompiler for the reconciler (full syncs, resyncs and the retry after
    a failure run `compile_ruleset`, the reference); plain calls are incremental.
    Logs loudly if a full sync ever finds that the incremental result had drifted.
    """

    def __init__(self, *, node: str, options: CompileOptions) -> None:
        self.inner = IncrementalCompiler(node=node, options=options)

    def __call__(self, state: ClusterState) -> Ruleset:
        return self.compile(state)

    def compile(self, state: ClusterState, *, full: bool = False) -> Ruleset:
        divergences, disabled = self.inner.divergences, self.inner.disabled
        ruleset = self.inner.compile(state, full=full)
        if self.inner.divergences != divergences:
            log.error(
                "incremental compile disagreed with the full compile (a bug, please report); "
                "the full result was applied and the incremental state rebuilt"
            )
        if self.inner.disabled and not disabled:
            log.error("incremental compile disabled: every sync now compiles in full")
        return ruleset

    def reset(self) -> None:
        self.inner.reset()


def compiler_for(settings: Settings, *, drop_events: bool = True) -> NodeCompiler:
    rate, burst = settings.drop_log_rate, settings.drop_log_burst
    logs = (
        (
            DropLogging(settings.nflog_group, rate, burst),
            AuditLogging(settings.nflog_group, rate, burst),
        )
        if drop_events and settings.nflog_group >= 0
        else ()
    )
    hold = (NewPodHold(settings.node_name),) if settings.new_pods == "hold" else ()
    options = CompileOptions(
        mark_bit=settings.mark_bit,
        connmark_bit=settings.connmark_bit,
        drop_action=settings.drop_action,
        allow_cidrs=settings.allow_cidrs,
        extensions=(*logs, *hold),
    )
    options.validate()
    return NodeCompiler(node=settings.node_name, options=options)


def build_engine(settings: Settings, *, host_check: bool = True) -> Engine:
    if host_check:
        try:
            for change in check_host():
                log.info("host prepared: %s", change)
        except HostCheckError as exc:
            log.error("HOST CHECK FAILED, same-node pod traffic is NOT policed: %s", exc)
    backend = select_backend(settings.backend)
    log.info("iptables backend selected", extra={"backend": backend.name, "mode": backend.mode})
    # With revocation on (the default), flows no longer allowed lose their conntrack
    # entry, fast-path mark included; without it the Applier clears the mark bit on
    # every narrowing apply instead (agent.dataplane.fastpath).
    dataplane = ApplierDataplane(Applier(backend, revoke_fast_path=not settings.revoke_established))
    drop_events = settings.nflog_group >= 0 and not backend.in_process
    if settings.nflog_group >= 0 and backend.in_process:
        log.warning(
            "no drop events with the python-iptables backend (it cannot program hashlimit, "
            "and NFLOG prefixes crash it)"
        )
    return Engine(
        compiler=compiler_for(settings, drop_events=drop_events),
        dataplane=dataplane,
        ruleset_stats=ruleset_stats,
        drops=dataplane.drops,
        conntrack=Conntrack(),
        drop_events=drop_events,
    )

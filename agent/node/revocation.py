"""Cut established flows that a sync no longer allows (`--revoke-established`, default on).

After every successful apply (on its own thread, `RevocationWorker`, so a big
conntrack table never holds the sync loop) the Revoker computes each local pod's view of
the applied ruleset (agent.core.revoke), compares it with the view of the
previous pass, asks the conntrack table only for the flows of pods whose view
changed, traces each as the connection it opened, and revokes the entries the
new rules refuse. Allowed flows are never touched. UDP and SCTP entries are
deleted: the flow's next packet is NEW again and meets the policy. TCP entries
are turned into tombstones instead (SYN_SENT, mark cleared, kept for the
peers' retransmission budget; see `Conntrack.neutralise`): a deleted entry
would let the server's next retransmission open it again the other way.
Either way the fast path's connmark goes with the old entry.

The first pass after start looks at every local pod (flows may have outlived a
policy change made while the agent was down). A failed pass is logged and
counted, and the next pass repeats the pods it could not finish, so a flaky
netlink socket delays revocation, never skips it. Views are tracked across
syncs (`ViewTracker`): when no table changed, only pods that consulted a
changed set are walked again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from agent.core.errors import NetpolError
from agent.core.flowviews import ViewTracker
from agent.core.model import ClusterState
from agent.core.model import Protocol as IPProtocol
from agent.core.revoke import Flow, forbidden, local_addresses, own_addresses
from agent.core.ruleset import Ruleset

log = logging.getLogger(__name__)

# A revoked TCP connection's peers retransmit for up to ~15 minutes (tcp_retries2=15).
TOMBSTONE_SECONDS = 1200
REVOKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ConntrackTable(Protocol):
    """The kernel edge (agent.dataplane.conntrack.Conntrack) or a fake."""

    def flows(self, addresses: Iterable[str]) -> list[Flow]: ...

    def delete(self, flows: Iterable[Flow]) -> int: ...

    def neutralise(self, flow: Flow, *, timeout: int) -> bool: ...


class RevocationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.revoked = Counter(
            "netpol_revoked_flows",
            "Conntrack entries deleted because the current rules no longer allow their flow.",
            ["family", "protocol"],
            registry=registry,
        )
        self.checked = Counter(
            "netpol_revocation_checked_flows",
            "Conntrack entries of pods whose verdicts changed, checked against the new rules.",
            registry=registry,
        )
        self.duration = Histogram(
            "netpol_revocation_duration_seconds",
            "Time of one revocation pass after a sync (views, conntrack dumps, deletions).",
            buckets=REVOKE_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "netpol_revocation_failures",
            "Revocation passes that failed (retried after the next sync).",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class RevocationPass:
    changed: frozenset[str]  # local addresses whose view changed
    checked: int
    revoked: tuple[Flow, ...]
    seconds: float


class Revoker:
    """The reconciler's after-apply step that deletes conntrack entries of forbidden flows."""

    def __init__(
        self,
        *,
        node: str,
        table: ConntrackTable,
        metrics: RevocationMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node, self.table, self.metrics, self.clock = node, table, metrics, clock
        self._views = ViewTracker()
        self._unfinished: frozenset[str] = frozenset()  # changed, not yet revoked
        self.last: RevocationPass | None = None

    def after_apply(self, state: ClusterState, ruleset: Any) -> RevocationPass | None:
        if not isinstance(ruleset, Ruleset):
            return None
        start = self.clock()
        try:
            result = self._pass(state, ruleset, start)
        except Exception:
            if self.metrics is not None:
                self.metrics.failures.inc()
            raise
        if self.metrics is not None:
            self.metrics.duration.observe(result.seconds)
            self.metrics.checked.inc(result.checked)
            for flow in result.revoked:
                self.metrics.revoked.labels(f"ipv{int(flow.family)}", flow.protocol.value).inc()
        if result.revoked:
            log.info(
                "revoked %d established flow(s) the rules no longer allow",
                len(result.revoked),
                extra={
                    "flows": [str(f) for f in result.revoked[:20]],
                    "changed_pods": len(result.changed),
                    "seconds": round(result.seconds, 6),
                },
            )
        self.last = result
        return result

    def _pass(self, state: ClusterState, ruleset: Ruleset, start: float) -> RevocationPass:
        local = local_addresses(state, self.node)
        changed = self._views.update(ruleset, local) | (self._unfinished & local)
        self._unfinished = changed  # until this pass is done
        revoked: list[Flow] = []
        checked = 0
        if changed:
            flows = self.table.flows(changed)
            checked = len(flows)
            revoked = forbidden(flows, ruleset, own_addresses(state, self.node))
            if revoked:
                tcp = [f for f in revoked if f.protocol is IPProtocol.TCP]
                for flow in tcp:
                    self.table.neutralise(flow, timeout=TOMBSTONE_SECONDS)
                self.table.delete(f for f in revoked if f.protocol is not IPProtocol.TCP)
        self._unfinished = frozenset()
        return RevocationPass(changed, checked, tuple(revoked), self.clock() - start)


class RevocationWorker:
    """Runs the Revoker's passes on a thread of their own, so that reading a big conntrack
    table never holds the sync loop; a pass always takes the newest applied ruleset (a
    ruleset that was replaced before its pass began needs no pass of its own)."""

    def __init__(self, revoker: Revoker) -> None:
        self.revoker = revoker
        self._cond = threading.Condition()
        self._latest: tuple[ClusterState, Any] | None = None
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def after_apply(self, state: ClusterState, ruleset: Any) -> None:
        with self._cond:
            self._latest = (state, ruleset)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="revoke", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                latest = self._latest
                assert latest is not None
                state, ruleset = latest
                self._latest, self._busy = None, True
            try:
                self.revoker.after_apply(state, ruleset)
            except Exception as exc:
                log.error(
                    "revocation pass failed (repeated after the next sync): %s",
                    exc,
                    exc_info=not isinstance(exc, NetpolError),
                )
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no pass is queued or running (tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._latest is None and not self._busy, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

"""The node's side of the new-pod hold (`--new-pods hold`, the default): what is programmed.

`agent.core.hold.NewPodHold` puts the hold in the layout while a pending pod
needs it; this fills its *programmed* set, and moves addresses into it only
after an apply committed their rules:

    compile(state) -> HoldingCompiler fills the set with the addresses committed
      by earlier applies (still local, same pod UID: a reused address is not
      trusted for its new pod) -> apply -> Hold.after_apply: the pods this apply
      programmed are committed now; if the set lacks any, one more (set-only,
      netlink) apply adds them.

The first sync of an agent trusts the local pods it programs (their rules are
committed in the same restore that creates the hold). Metrics: whether the hold
is on, how many pending pods need it, how often it was engaged.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.core.hold import (
    gateways,
    held_pods,
    hold_active,
    local_pods,
    programmed_set_name,
    with_programmed,
)
from agent.core.model import ClusterState, Family
from agent.core.ruleset import Ruleset
from agent.node.reconcile import Dataplane, Reapplied, StatefulCompiler

log = logging.getLogger(__name__)


class HoldMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge(
            "netpol_new_pod_hold_active",
            "1 while the new-pod hold drops traffic of unprogrammed pod addresses.",
            registry=registry,
        )
        self.pending = Gauge(
            "netpol_new_pods_held",
            "Pods scheduled to this node, without an IP yet, that a policy would isolate.",
            registry=registry,
        )
        self.engaged = Counter(
            "netpol_new_pod_hold_engaged",
            "Times the new-pod hold was switched on.",
            registry=registry,
        )
        self.released = Counter(
            "netpol_new_pod_hold_released_addresses",
            "Pod addresses let through the hold after their rules were committed.",
            registry=registry,
        )


class Hold:
    """Tracks what is programmed; fills the hold's set; releases pods after their apply."""

    def __init__(
        self, *, node: str, dataplane: Dataplane, metrics: HoldMetrics | None = None
    ) -> None:
        self.node, self.dataplane, self.metrics = node, dataplane, metrics
        self._committed: frozenset[tuple[str, str]] | None = None  # None: nothing applied yet
        self._active = False

    def programmed(self, state: ClusterState) -> frozenset[str]:
        """The addresses the hold lets through now (before this sync's apply)."""
        now = local_pods(state, self.node)
        trusted = now if self._committed is None else now & self._committed
        return frozenset(ip for _, ip in trusted) | gateways(state, self.node)

    def shape(self, state: ClusterState, ruleset: Any) -> Any:
        if not isinstance(ruleset, Ruleset):
            return ruleset
        return with_programmed(ruleset, self.node, self.programmed(state))

    def after_apply(self, state: ClusterState, ruleset: Any) -> Reapplied | None:
        """This apply committed the rules of every local pod in `state`: release them."""
        self._committed = local_pods(state, self.node)
        if not isinstance(ruleset, Ruleset):
            return None
        active = hold_active(ruleset, self.node)
        if self.metrics is not None:
            self.metrics.active.set(1 if active else 0)
            self.metrics.pending.set(len(held_pods(state, self.node)))
            if active and not self._active:
                self.metrics.engaged.inc()
        if active and not self._active:
            log.info(
                "new-pod hold on: unprogrammed pod addresses are dropped",
                extra={"pending": list(held_pods(state, self.node))[:20]},
            )
        elif self._active and not active:
            log.info("new-pod hold off")
        self._active = active
        if not active:
            return None
        released = with_programmed(ruleset, self.node, self.programmed(state))
        if released is ruleset:
            return None
        before = _members(ruleset, self.node)
        self.dataplane.apply(released, full=False)
        if self.metrics is not None:
            self.metrics.released.inc(len(_members(released, self.node) - before))
        return Reapplied(released)


def _members(ruleset: Ruleset, node: str) -> frozenset[str]:
    out: set[str] = set()
    for family in Family:
        s = ruleset.sets.get(programmed_set_name(node, family))
        if s is not None:
            out |= s.members
    return frozenset(out)


class HoldingCompiler:
    """A StatefulCompiler whose rulesets carry the hold's programmed set, filled."""

    def __init__(self, inner: StatefulCompiler, hold: Hold) -> None:
        self.inner, self.hold = inner, hold

    def __call__(self, state: ClusterState) -> Any:
        return self.compile(state)

    def compile(self, state: ClusterState, *, full: bool = False) -> Any:
        return self.hold.shape(state, self.inner.compile(state, full=full))

    def reset(self) -> None:
        self.inner.reset()

"""Audit mode's meaning: what the audited policies would drop that the enforced ones let through.

A NetworkPolicy annotated `netpol-agent.io/enforcement: audit` (or every
policy, under `run --enforcement audit`) is evaluated as if enforced and
enforces nothing. So there are two verdicts for each connection:

- the enforced verdict: the reference evaluator over the enforced policies
  only (audited ones do not isolate anything: `ReferenceEvaluator` skips them);
- the would-be verdict: the same evaluator over the state where the audited
  policies are enforced too (`ClusterState.audit_enforced()`).

A connection the first allows and the second refuses is reported with action
`audit`, naming the audited policies that isolate the refusing side. Since
policies only add allowances, this happens exactly on a side no enforced
policy isolates, which is where the kernel logs audit events
(agent.core.auditlogging).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.core.explain import DirectionVerdict
from agent.core.model import ClusterState, Family, Pod, Protocol
from agent.core.semantics import Endpoint, ReferenceEvaluator


@dataclass(frozen=True, slots=True)
class WouldDrop:
    """The audited policies that would drop a connection the enforced ones allow."""

    policies: tuple[str, ...]
    directions: tuple[str, ...]  # "egress" and/or "ingress": the sides that would refuse

    def __str__(self) -> str:
        names = ", ".join(f"policy {p} (audit)" for p in self.policies)
        return f"allowed; {names} would drop it"


class AuditEvaluator:
    """Answers "would the audited policies drop this?" for one ClusterState."""

    def __init__(self, state: ClusterState, enforced: ReferenceEvaluator | None = None) -> None:
        self.audited_keys = frozenset(k for k, p in state.policies.items() if p.audit)
        self.enforced = enforced or ReferenceEvaluator(state)
        self.would_be = (
            ReferenceEvaluator(state.audit_enforced()) if self.audited_keys else self.enforced
        )

    @property
    def active(self) -> bool:
        return bool(self.audited_keys)

    def would_drop(
        self,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: Protocol,
        *,
        family: Family | None = None,
    ) -> WouldDrop | None:
        if not self.audited_keys:
            return None
        if not self.enforced.allowed(src, dst, port, protocol, family=family):
            return None  # dropped for real: a drop event, not an audit one
        if self.would_be.allowed(src, dst, port, protocol, family=family):
            return None
        e = self.would_be.explain(src, dst, port, protocol, family=family)
        refusing = [s for s in (e.egress, e.ingress) if s is not None and not s.allowed]
        return WouldDrop(
            policies=tuple(sorted({p for s in refusing for p in self._audited(s)})),
            directions=tuple(s.direction.value.lower() for s in refusing),
        )

    def _audited(self, side: DirectionVerdict) -> tuple[str, ...]:
        return tuple(p for p in side.isolated_by if p in self.audited_keys)


@dataclass(frozen=True, slots=True)
class Finding:
    """One cell of a truth table that flows but that the audited policies would drop."""

    source: str
    destination: str
    port: int
    protocol: Protocol
    would: WouldDrop

    def __str__(self) -> str:
        return (
            f"{self.source} -> {self.destination} {self.port}/{self.protocol.value}: {self.would}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.source,
            "to": self.destination,
            "port": self.port,
            "protocol": self.protocol.value,
            "policies": list(self.would.policies),
            "directions": list(self.would.directions),
        }


def findings(
    auditor: AuditEvaluator, pods: Iterable[Pod], cases: Iterable[tuple[int, Protocol]]
) -> list[Finding]:
    """Every ordered pod pair and case the audited policies would drop, in table order."""
    if not auditor.active:
        return []
    ordered = sorted(pods, key=lambda p: p.key)
    out: list[Finding] = []
    for port, protocol in sorted(cases, key=lambda c: (c[0], c[1].value)):
        for src in ordered:
            for dst in ordered:
                if src.uid == dst.uid:
                    continue
                would = auditor.would_drop(src, dst, port, protocol)
                if would is not None:
                    out.append(Finding(src.key, dst.key, port, protocol, would))
    return out

"""Explanations: why a connection is allowed or blocked, as values and as text.

`ReferenceEvaluator.explain` returns an `Explanation`; `render_explanation`
turns it into the text `netpol-agent reachability --explain` prints. Keeping
the value separate from the text lets tests assert on the facts (which policy,
which rule) and lets other front ends (the lab, logs) render them their way.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.model import Direction, Peer, PolicyPort, Protocol
from agent.core.selectors import format_selector


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule that allows the connection: policy, direction, rule index, peer, port."""

    policy: str
    direction: Direction
    rule_index: int
    peer: str
    port: str

    def __str__(self) -> str:
        field = "ingress" if self.direction is Direction.INGRESS else "egress"
        return f"{self.policy} {field} rule {self.rule_index}: {self.peer}; {self.port}"


@dataclass(frozen=True, slots=True)
class TierDecision:
    """A ClusterNetworkPolicy rule that matched one side: tier, policy, rule, action."""

    tier: str
    policy: str
    priority: int
    direction: Direction
    rule_index: int
    rule_name: str
    action: str
    peer: str
    port: str
    invalid: bool = False

    def __str__(self) -> str:
        field = "ingress" if self.direction is Direction.INGRESS else "egress"
        verb = {"Accept": "accepted", "Deny": "denied", "Pass": "passed on"}[self.action]
        name = f' "{self.rule_name}"' if self.rule_name else ""
        bad = " (INVALID: failed closed)" if self.invalid else ""
        return (
            f"{self.tier} tier: {verb} by ClusterNetworkPolicy {self.policy}{bad} "
            f"(priority {self.priority}) {field} rule {self.rule_index}{name}: "
            f"{self.action}; {self.peer}; {self.port}"
        )


@dataclass(frozen=True, slots=True)
class DirectionVerdict:
    """The verdict of one side: the source's egress or the destination's ingress.

    admin/baseline: the ClusterNetworkPolicy rule that matched in that tier, if any
    (an Admin Accept or Deny decides alone; Baseline is asked only when no
    NetworkPolicy isolates the pod).
    """

    direction: Direction
    pod: str
    allowed: bool
    isolated_by: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    allowed_by: tuple[RuleMatch, ...] = ()
    note: str = ""
    admin: TierDecision | None = None
    baseline: TierDecision | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why `source` may or may not reach `destination` on port/protocol."""

    source: str
    destination: str
    port: int
    protocol: Protocol
    allowed: bool
    summary: str
    egress: DirectionVerdict | None = None
    ingress: DirectionVerdict | None = None


def describe_peer(peer: Peer, namespace: str) -> str:
    if peer.ip_block is not None:
        text = f"ipBlock {peer.ip_block.cidr}"
        if peer.ip_block.excepts:
            text += f" except {', '.join(peer.ip_block.excepts)}"
        return text
    parts = []
    if peer.pod_selector is not None:
        parts.append(f"podSelector {format_selector(peer.pod_selector)}")
    if peer.namespace_selector is not None:
        parts.append(f"namespaceSelector {format_selector(peer.namespace_selector)}")
    else:
        parts.append(f"in namespace {namespace}")
    return " ".join(parts)


def describe_port(pp: PolicyPort) -> str:
    if pp.port is None:
        return f"all {pp.protocol.value} ports"
    if isinstance(pp.port, str):
        return f"named port {pp.port}/{pp.protocol.value}"
    if pp.end_port is not None:
        return f"ports {pp.port}-{pp.end_port}/{pp.protocol.value}"
    return f"port {pp.port}/{pp.protocol.value}"


def _render_side(v: DirectionVerdict) -> list[str]:
    word = "egress from" if v.direction is Direction.EGRESS else "ingress to"
    verdict = "allowed" if v.allowed else "BLOCKED"
    lines = [f"  {word} {v.pod}: {verdict}"]
    if v.admin is not None:
        lines.append(f"    {v.admin}")
        if v.admin.action != "Pass":
            lines.append("    NetworkPolicies and the Baseline tier are not consulted")
            return lines
    if v.note:
        lines.append(f"    {v.note}")
    if v.isolated_by:
        names = [
            f"{p} (INVALID: isolates, allows nothing)" if p in v.invalid else p
            for p in v.isolated_by
        ]
        lines.append(f"    isolated by: {', '.join(names)}")
        if v.allowed_by:
            lines.extend(f"    allowed by {m}" for m in v.allowed_by)
        else:
            lines.append("    no rule of these policies allows it")
    if v.baseline is not None:
        lines.append(f"    {v.baseline}")
    return lines


def render_explanation(e: Explanation) -> str:
    """Human-readable text, one fact per line."""
    verdict = "ALLOWED" if e.allowed else "BLOCKED"
    lines = [f"{e.source} -> {e.destination} {e.port}/{e.protocol.value}: {verdict}"]
    if e.summary:
        lines.append(f"  {e.summary}")
    for side in (e.egress, e.ingress):
        if side is not None:
            lines.extend(_render_side(side))
    return "\n".join(lines) + "\n"

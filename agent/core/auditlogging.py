"""Audited policies in the kernel: log what they would drop, decide nothing.

An audited NetworkPolicy (agent.core.audit) isolates nothing, so the verdict
stage never sees it. This layout Extension, at the AUDIT stage (after the
Admin tier, before the NetworkPolicy verdict), evaluates it for every local
pod it would isolate in a direction that no enforced policy isolates:

    NPA-FORWARD:  -s <pod IP> -j NPA-AE-<pod>     (egress)
                  -d <pod IP> -j NPA-AI-<pod>     (ingress; NPA-OUTPUT too)
    NPA-AI-<pod>: clear mark; node addresses -> mark (ingress);
                  -j <each audited policy's chain> (they mark what they allow);
                  unmarked -> hashlimit'ed NFLOG, prefix npa:AI; clear mark

A direction the ClusterNetworkPolicy Admin tier already accepted (its mark
bit, agent.core.tierchains) skips the audit chain, as it skips the verdict.
Nothing here accepts or drops: the packet leaves with the mark cleared, and
the verdict stage (which clears it again) decides as if the audited policies
did not exist. Where an enforced policy isolates the pod in that direction,
the audited ones change nothing (policies only add allowances), so no chain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.core import naming
from agent.core.dropevents import ACTION_AUDIT
from agent.core.droplogging import DEFAULT_BURST, DEFAULT_RATE, log_rule
from agent.core.layout import Contribution, LayoutContext, Stage
from agent.core.matching import policy_selects
from agent.core.model import ClusterState, Direction, NetworkPolicy, Pod
from agent.core.policyapi.cnpmodel import Tier
from agent.core.ruleset import Chain, MarkMatch, Rule, SetMatch, Target, TargetKind, jump
from agent.core.tierchains import ADMIN_ACCEPTED


def audit_chain(direction: Direction, pod_uid: str) -> str:
    """NPA-AI-<hash> / NPA-AE-<hash>: one local pod's audit chain for a direction."""
    tag = "AI" if direction is Direction.INGRESS else "AE"
    return f"{naming.CHAIN_PREFIX}{tag}-{naming.digest(pod_uid)}"


@dataclass(frozen=True, slots=True)
class AuditLogging:
    """The layout Extension for audited policies; logs to the drop events' NFLOG group."""

    group: int
    rate: int = DEFAULT_RATE
    burst: int = DEFAULT_BURST

    @property
    def stage(self) -> Stage:
        return Stage.AUDIT

    def contribute(self, ctx: LayoutContext) -> Contribution:
        audited = [p for p in ctx.state.policies.values() if p.audit]
        if not audited:
            return Contribution()
        enforced = [p for p in ctx.state.policies.values() if p.enforced]
        clear = Target(TargetKind.MARK, mark_value=0, mark_mask=ctx.mark)
        # A direction the ClusterNetworkPolicy Admin tier accepted skips NetworkPolicies.
        admin = any(p.tier is Tier.ADMIN for p in ctx.state.cluster_policies.values())
        unmarked = MarkMatch(ctx.mark, ctx.mark, negate=True)
        forward: list[Rule] = []
        output: list[Rule] = []
        chains: list[Chain] = []
        for pod in ctx.local:
            ips = pod.ips_of(ctx.family)
            for d in (Direction.EGRESS, Direction.INGRESS):
                isolating = _isolating(audited, pod, d)
                if not ips or not isolating or _isolating(enforced, pod, d):
                    continue
                name = audit_chain(d, pod.uid)
                text = naming.comment(f"{pod.key} {d.value.lower()} (audit)")
                rules = [Rule(clear, comment=text)]
                node_set = ctx.sets.node_set(ctx.family) if d is Direction.INGRESS else None
                if node_set is not None:
                    mark = Target(TargetKind.MARK, mark_value=ctx.mark, mark_mask=ctx.mark)
                    rules.append(
                        Rule(mark, comment="from this node", sets=(SetMatch(node_set, "src"),))
                    )
                for policy in isolating:
                    chain = ctx.policy_chain(policy, d)
                    if chain is not None:
                        rules.append(Rule(jump(chain), comment=naming.comment(policy.key)))
                logged = log_rule(
                    action=ACTION_AUDIT,
                    direction=d,
                    group=self.group,
                    rate=self.rate,
                    burst=self.burst,
                )
                rules += [replace(logged, mark=unmarked), Rule(clear, comment="decide nothing")]
                chains.append(Chain(name, tuple(rules)))
                bit = ADMIN_ACCEPTED[d]
                gate = MarkMatch(bit, bit, negate=True) if admin else None
                for ip in ips:
                    host = f"{ip}/{128 if ':' in ip else 32}"
                    if d is Direction.EGRESS:
                        forward.append(Rule(jump(name), comment=text, src=host, mark=gate))
                    else:
                        forward.append(Rule(jump(name), comment=text, dst=host, mark=gate))
                        output.append(Rule(jump(name), comment=text, dst=host, mark=gate))
        return Contribution(forward=tuple(forward), output=tuple(output), chains=tuple(chains))

    def inputs(self, state: ClusterState) -> object:
        """The audited policies and the pods they select: a change rebuilds the layout."""
        audited = tuple(sorted((p for p in state.policies.values() if p.audit), key=_key))
        if not audited:
            return ()
        enforced = tuple(sorted((p for p in state.policies.values() if p.enforced), key=_key))
        pods = tuple(
            sorted(
                (p for p in state.pods.values() if any(policy_selects(a, p) for a in audited)),
                key=lambda p: p.uid,
            )
        )
        return audited, enforced, pods


def _key(policy: NetworkPolicy) -> str:
    return policy.key


def _isolating(policies: list[NetworkPolicy], pod: Pod, d: Direction) -> list[NetworkPolicy]:
    return sorted((p for p in policies if d in p.policy_types and policy_selects(p, pod)), key=_key)

"""The new-pod hold: no isolated pod is reachable before its rules are in the kernel.

A pod runs as soon as its network is up, but the agent programs it only once it
sees the pod's IP in the API (the kubelet writes it later). The agent knows the
pods scheduled to its node before that (`spec.nodeName`). While any such
*pending* pod would be isolated by a policy, the HOLD stage of the layout
(`agent.core.layout`) sends NPA-FORWARD's new packets through NPA-HOLD, which
drops those from or to an address of the node's podCIDRs that is not in the
*programmed* set: the local pod addresses whose rules a previous apply
committed (the node fills it, `with_programmed`; an address joins only after
its rules are in). Nothing changes while no pending pod needs it, so pods
nobody isolates never wait, and `reachability` (which compiles without this
runtime extension) is unaffected.

Node traffic to its pods (OUTPUT) is not held: the node may always reach them.
Established flows and the fast path come before the hold, so programmed pods'
flows never meet it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from agent.core import naming
from agent.core.layout import Contribution, LayoutContext, Stage
from agent.core.matching import policy_selects
from agent.core.model import ClusterState, Family, Pod, PodPhase, family_of
from agent.core.ruleset import DROP, RETURN, Chain, IPSet, Rule, Ruleset, SetMatch, SetType, jump

HOLD_CHAIN = "NPA-HOLD"
SET_KIND = "h"  # npa-h<family>-...: hash:ip, this node's programmed pod addresses


def programmed_set_name(node: str, family: Family) -> str:
    return naming.set_name(SET_KIND, family, f"programmed|{node}")


def pending_pods(state: ClusterState, node: str) -> list[Pod]:
    """Pods scheduled to `node` that have no IP yet (and will run with their own network)."""
    return [
        p
        for p in state.pods.values()
        if p.node == node
        and not p.host_network
        and not p.ips
        and p.phase not in (PodPhase.SUCCEEDED, PodPhase.FAILED)
    ]


def needs_hold(state: ClusterState, pod: Pod) -> bool:
    """Would a policy isolate `pod` once it runs? (Any cluster-wide policy might; audited
    NetworkPolicies isolate nothing.)"""
    if state.cluster_policies:
        return True
    return any(
        policy.enforced and policy.policy_types and policy_selects(policy, pod)
        for policy in state.policies.values()
    )


def held_pods(state: ClusterState, node: str) -> tuple[str, ...]:
    """The pending pods of `node` that make the hold necessary (sorted keys)."""
    return tuple(sorted(p.key for p in pending_pods(state, node) if needs_hold(state, p)))


@dataclass(frozen=True, slots=True)
class NewPodHold:
    """The HOLD stage's extension (pass it in CompileOptions.extensions)."""

    node: str

    @property
    def stage(self) -> Stage:
        return Stage.HOLD

    def inputs(self, state: ClusterState) -> object:
        node = state.nodes.get(self.node)
        return (held_pods(state, self.node), node.pod_cidrs if node is not None else ())

    def contribute(self, ctx: LayoutContext) -> Contribution:
        held = held_pods(ctx.state, self.node)
        node = ctx.state.nodes.get(self.node)
        cidrs = [c for c in (node.pod_cidrs if node else ()) if family_of(c) is ctx.family]
        if not held or not cidrs:
            return Contribution()
        name = programmed_set_name(self.node, ctx.family)
        ctx.sets.sets[name] = IPSet(
            name,
            SetType.HASH_IP,
            ctx.family,
            description=f"pod addresses of node {self.node} whose rules are programmed",
        )
        why = f"pending: {', '.join(held[:3])}{' ...' if len(held) > 3 else ''}"
        rules: list[Rule] = []
        for cidr in cidrs:
            for side, words in (("src", "from"), ("dst", "to")):
                rules.append(
                    Rule(
                        DROP,
                        comment=naming.comment(f"hold: {words} an unprogrammed pod ({why})"),
                        src=cidr if side == "src" else None,
                        dst=cidr if side == "dst" else None,
                        sets=(SetMatch(name, side, negate=True),),
                    )
                )
        rules.append(Rule(RETURN, comment="hold: programmed pods go on"))
        enter = Rule(jump(HOLD_CHAIN), comment="new-pod hold", ctstate=("NEW",))
        return Contribution(forward=(enter,), chains=(Chain(HOLD_CHAIN, tuple(rules)),))


def local_pods(state: ClusterState, node: str) -> frozenset[tuple[str, str]]:
    """(uid, canonical address) of the networked pods of `node`: what an apply commits."""
    return frozenset(
        (p.uid, str(ipaddress.ip_address(ip)))
        for p in state.pods.values()
        if p.node == node and p.is_networked
        for ip in p.ips
    )


def gateways(state: ClusterState, node: str) -> frozenset[str]:
    """The bridge gateway of each podCIDR (the node itself, never held)."""
    known = state.nodes.get(node)
    return frozenset(
        str(ipaddress.ip_network(c, strict=False).network_address + 1)
        for c in (known.pod_cidrs if known else ())
    )


def with_programmed(ruleset: Ruleset, node: str, addresses: frozenset[str]) -> Ruleset:
    """`ruleset` with its programmed sets (if the hold is on) holding `addresses`."""
    sets = dict(ruleset.sets)
    changed = False
    for family in Family:
        name = programmed_set_name(node, family)
        current = sets.get(name)
        if current is None:
            continue
        members = frozenset(a for a in addresses if family_of(a) is family)
        if current.members != members:
            sets[name] = replace(current, members=members)
            changed = True
    return replace(ruleset, sets=sets) if changed else ruleset


def hold_active(ruleset: Ruleset, node: str) -> bool:
    return any(programmed_set_name(node, f) in ruleset.sets for f in Family)

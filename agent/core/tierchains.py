"""ClusterNetworkPolicy tiers in the kernel: the ADMIN and BASELINE stages of the layout.

One chain per tier and direction (NPA-ADMIN-EGRESS, NPA-ADMIN-INGRESS,
NPA-BASELINE-EGRESS, NPA-BASELINE-INGRESS) holds every rule of that tier in
evaluation order (priority, name, rule position), each one iptables rule per
(peer, port) alternative matching three ipsets at most: the policy's subject
pods on this node (`src` for egress, `dst` for ingress), the peer (pods,
namespaces, networks, nodes) and a named port. Actions:

    Deny    -> the direction's drop path (counted, logged, dropped)
    Pass    -> RETURN: the rest of the tier is skipped
    Accept  -> Admin: set this direction's "Admin accepted" mark bit, RETURN;
               the NetworkPolicy verdict skips a direction whose bit is set,
               and so does the Baseline stage. Baseline: RETURN (allowed).

The Baseline subject sets hold only the local pods no NetworkPolicy isolates
for that direction ("further evaluation only happens for Pods not selected by
a v1.NetworkPolicy"). Each chain starts with one rule that returns packets of
pods no policy of the tier selects, and the ingress chains with one that
returns the node's own addresses (a node may always reach its pods), so what
a packet costs grows with the tier's rules only, never with pods, and pod
churn changes set members only. The node's traffic to its pods (NPA-OUTPUT)
and a pod's traffic to its own node (INPUT) are not tiered, as in the
reference evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.core import naming
from agent.core.ipsets import net_entries
from agent.core.layout import BUILTIN_EXTENSIONS, Contribution, LayoutContext, Stage
from agent.core.model import (
    ClusterState,
    Direction,
    NetworkPolicy,
    Peer,
    Pod,
    Protocol,
    family_of,
)
from agent.core.policyapi.cnpmodel import (
    Action,
    ClusterNetworkPolicy,
    ClusterPeer,
    ClusterPort,
    PeerKind,
    Tier,
)
from agent.core.policyapi.tiers import subject_selects
from agent.core.ruleset import (
    RETURN,
    Chain,
    IPSet,
    MarkMatch,
    Rule,
    SetMatch,
    SetType,
    Target,
    TargetKind,
    jump,
)
from agent.core.selectors import format_selector, selector_matches

# One packet-mark bit per direction the Admin tier accepted (never 21/22, kube-proxy's 14/15).
ADMIN_ACCEPTED = {Direction.EGRESS: 1 << 23, Direction.INGRESS: 1 << 24}
ADMIN_BITS = ADMIN_ACCEPTED[Direction.EGRESS] | ADMIN_ACCEPTED[Direction.INGRESS]
_ANY_POD = NetworkPolicy(namespace="", name="")  # peer_set's scope owner: unused with a ns selector
_WAY = {Direction.EGRESS: ("src", "dst"), Direction.INGRESS: ("dst", "src")}  # (subject, peer)


def tier_chain(tier: Tier, direction: Direction) -> str:
    return f"{naming.CHAIN_PREFIX}{tier.value.upper()}-{direction.value.upper()}"


def isolated_by_network_policy(
    state: ClusterState, pods: Sequence[Pod], direction: Direction
) -> frozenset[str]:
    """The UIDs of `pods` a NetworkPolicy with this policyType selects (Baseline is not
    asked for them), looking only at the policies of each pod's namespace."""
    by_namespace: dict[str, list[NetworkPolicy]] = {}
    for policy in state.policies.values():
        if direction in policy.policy_types and policy.enforced:  # audited ones isolate nothing
            by_namespace.setdefault(policy.namespace, []).append(policy)
    return frozenset(
        pod.uid
        for pod in pods
        if any(
            selector_matches(p.pod_selector, pod.labels)
            for p in by_namespace.get(pod.namespace, ())
        )
    )


class TierStage:
    """The Extension of one tier (`layout.Stage.ADMIN` or `layout.Stage.BASELINE`)."""

    follows_local_pods = True  # subject sets read the local pods' isolation (layout.py)

    def __init__(self, tier: Tier) -> None:
        self.tier = tier

    @property
    def stage(self) -> Stage:
        return Stage.ADMIN if self.tier is Tier.ADMIN else Stage.BASELINE

    def inputs(self, state: ClusterState) -> object:
        """The policies, and what subject and node sets read that the live sets do not track:
        namespace labels (local pods are tracked by the compiler) and Nodes."""
        if not state.cluster_policies:
            return ()
        labels = {name: ns.labels for name, ns in state.namespaces.items()}
        return (dict(state.cluster_policies), labels, dict(state.nodes))

    def contribute(self, ctx: LayoutContext) -> Contribution:
        policies = sorted(
            (p for p in ctx.state.cluster_policies.values() if p.tier is self.tier),
            key=lambda p: p.order,
        )
        if not policies:
            return Contribution()
        chains = []
        forward: list[Rule] = []
        if self.tier is Tier.ADMIN:
            forward.append(
                Rule(
                    Target(TargetKind.MARK, mark_value=0, mark_mask=ADMIN_BITS),
                    comment="ClusterNetworkPolicy: clear the Admin-accepted bits",
                )
            )
        for direction in (Direction.EGRESS, Direction.INGRESS):
            chain = _TierChain(ctx, self.tier, direction).build(policies)
            if chain is None:
                continue
            chains.append(chain)
            text = f"ClusterNetworkPolicy {self.tier.value} tier, {direction.value.lower()}"
            if self.tier is Tier.ADMIN:
                forward.append(Rule(jump(chain.name), comment=text))
            else:  # not for a direction the Admin tier accepted
                bit = ADMIN_ACCEPTED[direction]
                skip = MarkMatch(bit, bit, negate=True)
                forward.append(Rule(jump(chain.name), comment=text, mark=skip))
        return Contribution(forward=tuple(forward), chains=tuple(chains))


class _TierChain:
    """Builds one tier-direction chain for one family of one node."""

    def __init__(self, ctx: LayoutContext, tier: Tier, direction: Direction) -> None:
        self.ctx, self.tier, self.direction = ctx, tier, direction
        self.subject_way, self.peer_way = _WAY[direction]
        self.isolated = (
            isolated_by_network_policy(ctx.state, ctx.local, direction)
            if tier is Tier.BASELINE
            else frozenset()
        )

    def build(self, policies: Sequence[ClusterNetworkPolicy]) -> Chain | None:
        body: list[Rule] = []
        everyone: set[str] = set()
        for policy in policies:
            rules = policy.rules(self.direction)
            if not rules:
                continue
            subject, members = self.subject_set(policy)
            everyone |= members
            for ri, rule in enumerate(rules):
                text = naming.comment(
                    f"cnp {policy.name} {self.direction.value.lower()}[{ri}]"
                    + (f" {rule.name}" if rule.name else "")
                    + f": {rule.action.value}"
                )
                target = self.target(rule.action)
                emitted = []
                for peer in self.peer_matches(rule.peers):
                    for proto, dport, port_set in self.port_matches(rule.ports):
                        sets = (subject, *(s for s in (peer, port_set) if s is not None))
                        emitted.append(
                            Rule(target, comment=text, protocol=proto, dport=dport, sets=sets)
                        )
                body += dict.fromkeys(emitted)
                if emitted and rule.action is Action.ACCEPT and self.tier is Tier.ADMIN:
                    bit = ADMIN_ACCEPTED[self.direction]
                    body.append(Rule(RETURN, comment=text, mark=MarkMatch(bit, bit)))
        if not body:
            return None
        head: list[Rule] = []
        if self.direction is Direction.INGRESS:
            node_set = self.ctx.sets.node_set(self.ctx.family)
            if node_set is not None:
                head.append(
                    Rule(
                        RETURN,
                        comment=naming.comment(f"from node {self.ctx.node}: always allowed"),
                        sets=(SetMatch(node_set, "src"),),
                    )
                )
        anyone = self.local_set(f"any|{self.tier.value}", everyone, f"{self.tier.value} subjects")
        head.append(
            Rule(
                RETURN,
                comment=f"not a subject of the {self.tier.value} tier",
                sets=(SetMatch(anyone, self.subject_way, negate=True),),
            )
        )
        return Chain(tier_chain(self.tier, self.direction), (*head, *body))

    def target(self, action: Action) -> Target:
        if action is Action.DENY:
            return jump(self.ctx.drop_chain(self.direction))
        if action is Action.ACCEPT and self.tier is Tier.ADMIN:
            bit = ADMIN_ACCEPTED[self.direction]
            return Target(TargetKind.MARK, mark_value=bit, mark_mask=bit)
        return RETURN  # Pass; Baseline Accept (allowed: nothing after Baseline blocks)

    # -- sets --------------------------------------------------------------------------

    def subject_set(self, policy: ClusterNetworkPolicy) -> tuple[SetMatch, set[str]]:
        """This node's pods the policy applies to (Baseline: those no NetworkPolicy isolates)."""
        state, family = self.ctx.state, self.ctx.family
        members = {
            ip
            for pod in self.ctx.local
            if pod.uid not in self.isolated
            and subject_selects(policy, pod, state.namespace_labels(pod.namespace))
            for ip in pod.ips_of(family)
        }
        what = f"subject of {self.tier.value} ClusterNetworkPolicy {policy.name}"
        if self.tier is Tier.BASELINE:
            what += f", not isolated for {self.direction.value} by a NetworkPolicy"
        name = self.local_set(f"subject|{policy.name}", members, what)
        return SetMatch(name, self.subject_way), members

    def local_set(self, key: str, members: set[str], what: str) -> str:
        """A hash:ip set of this node's pods, named for what it holds, never for members."""
        family = self.ctx.family
        full_key = f"cnp|{key}|{self.tier.value}|{self.direction.value}|{self.ctx.node}"
        name = naming.set_name(naming.SET_SELECTOR, family, full_key)
        self.ctx.sets.sets[name] = IPSet(
            name, SetType.HASH_IP, family, frozenset(members), description=what
        )
        return name

    def peer_matches(self, peers: Sequence[ClusterPeer]) -> list[SetMatch | None]:
        """One match per peer alternative (None: anything); [] when none can match here."""
        out: list[SetMatch | None] = []
        family, sets = self.ctx.family, self.ctx.sets
        for peer in peers:
            if peer.kind is PeerKind.ALL:
                out.append(None)
            elif peer.kind is PeerKind.NAMESPACES:
                np_peer = Peer(namespace_selector=peer.namespace_selector)
                name = sets.peer_set(_ANY_POD, np_peer, family)
                out += [SetMatch(name, self.peer_way)] if name else []
            elif peer.kind is PeerKind.PODS:
                np_peer = Peer(peer.pod_selector, peer.namespace_selector)
                name = sets.peer_set(_ANY_POD, np_peer, family)
                out += [SetMatch(name, self.peer_way)] if name else []
            elif peer.kind is PeerKind.NETWORKS:
                for cidr in peer.networks:
                    block = sets.block_set(cidr, (), family)
                    out += [SetMatch(block, self.peer_way)] if block else []
            else:
                out.append(SetMatch(self.node_set(peer), self.peer_way))
        return out

    def node_set(self, peer: ClusterPeer) -> str:
        """The addresses (status.addresses) of the Nodes the selector picks, this family."""
        family = self.ctx.family
        entries = {
            e
            for node in self.ctx.state.nodes.values()
            if selector_matches(peer.node_selector, node.labels)
            for a in node.addresses
            if family_of(a) is family
            for e in net_entries(a)
        }
        key = f"cnp-nodes|{naming.selector_key(peer.node_selector)}"
        name = naming.set_name(naming.SET_NODE, family, key)
        what = f"addresses of nodes {format_selector(peer.node_selector)}"
        self.ctx.sets.sets[name] = IPSet(
            name, SetType.HASH_NET, family, frozenset(entries), description=what
        )
        return name

    def port_matches(
        self, ports: Sequence[ClusterPort]
    ) -> list[tuple[Protocol | None, tuple[int, int] | None, SetMatch | None]]:
        """(protocol, port range, named-port set) per alternative; one (None, None, None) = any."""
        if not ports:
            return [(None, None, None)]
        out: list[tuple[Protocol | None, tuple[int, int] | None, SetMatch | None]] = []
        for cp in ports:
            if cp.name is not None:  # any protocol the destination pod names it with
                for proto in Protocol:
                    port_set = self.ctx.sets.named_port_set(cp.name, proto, self.ctx.family)
                    out.append((proto, None, SetMatch(port_set, "dst,dst")))
            elif cp.port is None:
                out.append((cp.protocol, None, None))
            else:
                out.append((cp.protocol, (cp.port, cp.end_port or cp.port), None))
        return out


BUILTIN_EXTENSIONS.extend([TierStage(Tier.ADMIN), TierStage(Tier.BASELINE)])

"""compile_ruleset: cluster state + node name -> the ruleset that node's kernel should hold.

Layout per family (docs/rules.md shows it as annotated iptables-save):

    FORWARD/INPUT/OUTPUT --(position 1)--> NPA-FORWARD / NPA-INPUT / NPA-OUTPUT
      conntrack short-circuit (FORWARD: INVALID drop, RELATED,ESTABLISHED accept;
      INPUT/OUTPUT carry host traffic too: RELATED,ESTABLISHED return), clear our
      mark bit, dispatch by local pod IP: -s IP -> NPA-E-<pod>, -d IP -> NPA-I-<pod>,
      FORWARD only: marked -> ACCEPT (so a FORWARD policy of DROP does not eat it);
      INPUT dispatches nothing (a pod may always reach its own node), OUTPUT only -d
    NPA-I-<pod>: clear mark, node addresses mark, jump to each NPA-PI-<policy>,
      unmarked -> NPA-DROP-INGRESS (per-pod counting rule, then DROP/REJECT)
    NPA-PI-<policy> / NPA-PE-<policy>: one rule per (peer, port): set match -> MARK

Peers are ipsets whose names derive from the selector, never from membership,
so pod churn changes set members only. A named port always resolves on the
destination pod (the selected pod for ingress, the peer for egress), so it is
one `hash:ip,port` set per (name, protocol) holding every pod's
`IP,proto:number`, matched with `dst,dst`: one rule, whatever numbers the pods
use, shared by every pod the policy selects, and still only set members change
when pods come and go.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, replace

from agent.core import naming
from agent.core.errors import ConfigError
from agent.core.ipsets import SetBuilder
from agent.core.layout import Contribution, Extension, LayoutContext, Stage, extensions
from agent.core.model import (
    ClusterState,
    Direction,
    Family,
    NetworkPolicy,
    Pod,
    PolicyPort,
    Protocol,
)
from agent.core.podindex import PodIndex
from agent.core.policyapi.cnpmodel import Tier
from agent.core.ruleset import (
    ACCEPT,
    DROP,
    RETURN,
    Chain,
    Hook,
    MarkMatch,
    Rule,
    Ruleset,
    SetMatch,
    Table,
    Target,
    TargetKind,
    jump,
)
from agent.core.selectors import selector_matches

# Importing tierchains also registers the ClusterNetworkPolicy tiers (BUILTIN_EXTENSIONS).
from agent.core.tierchains import ADMIN_ACCEPTED, ADMIN_BITS

KUBE_PROXY_BITS = (14, 15)  # 0x4000 masquerade, 0x8000 drop
ND_TYPES = (133, 134, 135, 136)  # ICMPv6 router/neighbour solicitation/advertisement
HOOKS = (
    Hook("FORWARD", naming.TOP_FORWARD),
    Hook("INPUT", naming.TOP_INPUT),
    Hook("OUTPUT", naming.TOP_OUTPUT),
)


@dataclass(frozen=True, slots=True)
class CompileOptions:
    mark_bit: int = 21
    drop_action: str = "drop"  # "drop" or "reject"
    allow_cidrs: tuple[str, ...] = ()
    families: tuple[Family, ...] = (Family.V4, Family.V6)
    connmark_bit: int = 22  # the fast path's conntrack mark bit (`--connmark-bit`)
    extensions: tuple[Extension, ...] = ()  # features at stages of the layout (agent.core.layout)

    @property
    def mark(self) -> int:
        return 1 << self.mark_bit

    @property
    def connmark(self) -> int:
        return 1 << self.connmark_bit

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 0 <= self.mark_bit <= 31:
            out.append(f"mark bit {self.mark_bit}: must be 0..31")
        elif self.mark_bit in KUBE_PROXY_BITS:
            out.append(f"mark bit {self.mark_bit}: kube-proxy uses 0x4000 and 0x8000")
        if not 0 <= self.connmark_bit <= 31:
            out.append(f"connmark bit {self.connmark_bit}: must be 0..31")
        elif self.connmark_bit in KUBE_PROXY_BITS:
            out.append(f"connmark bit {self.connmark_bit}: kube-proxy uses 0x4000 and 0x8000")
        elif self.connmark_bit == self.mark_bit:
            out.append(f"connmark bit {self.connmark_bit}: the packet mark bit is the same")
        for name, bit in (("mark", self.mark_bit), ("connmark", self.connmark_bit)):
            if (1 << bit) & ADMIN_BITS:
                out.append(f"{name} bit {bit}: the ClusterNetworkPolicy Admin tier uses 23 and 24")
        if self.drop_action not in ("drop", "reject"):
            out.append(f"drop action {self.drop_action!r}: must be drop or reject")
        for cidr in self.allow_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                out.append(f"allow-cidr {cidr!r}: not a CIDR")
        if not self.families:
            out.append("families: at least one of 4, 6")
        return out

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))


def compile_ruleset(state: ClusterState, *, node: str, options: CompileOptions) -> Ruleset:
    options.validate()
    return _Compiler(state, node, options, PodIndex(state)).run()


class _Compiler:
    def __init__(
        self, state: ClusterState, node: str, options: CompileOptions, index: PodIndex
    ) -> None:
        self.state, self.node, self.options, self.index = state, node, options, index
        self.mark = options.mark
        self.setb = SetBuilder(state, node, options.allow_cidrs, index)
        local = (p for p in index.pods if p.node == node)
        self.local = sorted(local, key=lambda p: (p.namespace, p.name, p.uid))
        self.policies: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for policy in sorted(state.policies.values(), key=lambda p: p.key):
            if policy.enforced:  # audited policies isolate nothing (agent.core.audit)
                self.policies[policy.namespace].append(policy)
        # (local pod uid, direction) -> the policies isolating it, sorted by ns/name.
        self.isolating: dict[tuple[str, Direction], list[NetworkPolicy]] = {}
        for pod in self.local:
            for policy in self.policies.get(pod.namespace, ()):
                if selector_matches(policy.pod_selector, pod.labels):
                    for d in sorted(policy.policy_types, key=lambda d: d.value):
                        self.isolating.setdefault((pod.uid, d), []).append(policy)

    # -- the whole ruleset ------------------------------------------------------------

    def run(self) -> Ruleset:
        tables = {f: self.table(f) for f in self.options.families}
        sets = dict(sorted(self.setb.sets.items()))
        return Ruleset(tables=tables, sets=sets, mark=self.mark)

    def table(self, family: Family) -> Table:
        """One family's table: the top chains stage by stage (agent.core.layout), then the rest."""
        self.chains: dict[str, Chain] = {}
        self.policy_memo: dict[tuple[str, Direction], str | None] = {}
        ctx = LayoutContext(
            state=self.state,
            node=self.node,
            family=family,
            local=self.local,
            sets=self.setb,
            mark=self.mark,
            connmark=self.options.connmark,
            policy_chain=lambda policy, d: self.policy_chain(policy, d, family),
        )
        stages: list[tuple[Stage, Contribution]] = [
            (Stage.HEAD, self.head_stage(family)),
            (Stage.VERDICT, self.verdict_stage(family)),
            (Stage.ALLOWED, self.allowed_stage(family)),
        ]
        stages += [(e.stage, e.contribute(ctx)) for e in extensions(self.options.extensions)]
        order = list(Stage)
        stages.sort(key=lambda sc: order.index(sc[0]))  # stable: ours first within a stage
        for _, contribution in stages:
            for chain in contribution.chains:
                self.chains[chain.name] = chain
        top = self.top_chains(family, [c for _, c in stages])
        self.drop_chains(family, [c for _, c in stages], top)
        self.accept_chains(top)
        rest = sorted(self.chains.values(), key=lambda c: c.name)
        return Table(family, chains=(*top, *rest), hooks=HOOKS)

    # -- the stages of the top chains (the order is agent.core.layout's) ------------------

    def head_stage(self, family: Family) -> Contribution:
        """Conntrack short-circuit; IPv6 neighbour discovery first."""
        # IPv6 neighbour discovery (router/neighbour solicitation and advertisement)
        # between pods and with the node must pass, or no IPv6 traffic flows at all.
        nd_accept = [
            Rule(ACCEPT, comment="IPv6 neighbour discovery", icmpv6_type=t)
            for t in (ND_TYPES if family is Family.V6 else ())
        ]
        nd_return = [replace(r, target=RETURN) for r in nd_accept]
        fwd = [
            *nd_accept,
            Rule(DROP, comment="drop invalid", ctstate=("INVALID",)),
            Rule(ACCEPT, comment="established", ctstate=("RELATED", "ESTABLISHED")),
        ]
        # INPUT/OUTPUT carry the host's own traffic too: leave it to the host's rules.
        established = Rule(RETURN, comment="established", ctstate=("RELATED", "ESTABLISHED"))
        return Contribution(forward=tuple(fwd), output=(*nd_return, established))

    def verdict_stage(self, family: Family) -> Contribution:
        """NetworkPolicy: mark reset, then the dispatch into the pods' chains."""
        egress, ingress = self.dispatch(family)
        clear = Rule(self.set_mark(0), comment="clear the netpol-agent mark")
        fwd = [clear, *egress, *ingress] if egress or ingress else []
        return Contribution(forward=tuple(fwd), output=(clear, *ingress) if ingress else ())

    def allowed_stage(self, family: Family) -> Contribution:
        """FORWARD only: marked -> ACCEPT (so a FORWARD policy of DROP does not eat it)."""
        if not self.dispatched:
            return Contribution()
        allowed = Rule(ACCEPT, comment="allowed by policy", mark=MarkMatch(self.mark, self.mark))
        return Contribution(forward=(allowed,))

    def top_chains(self, family: Family, stages: list[Contribution]) -> list[Chain]:
        """NPA-FORWARD, NPA-INPUT, NPA-OUTPUT: the stages' rules in stage order."""
        fwd = [r for c in stages for r in c.forward]
        out = [r for c in stages for r in c.output]
        # No egress dispatch in INPUT: everything arriving there is for an address of
        # this node, and "traffic to and from the node where a Pod is running is always
        # allowed" (docs/limitations.md). Other nodes are reached through FORWARD.
        inp = [r for r in self.head_stage(family).output]
        return [
            Chain(naming.TOP_FORWARD, tuple(fwd)),
            Chain(naming.TOP_INPUT, tuple(inp)),
            Chain(naming.TOP_OUTPUT, tuple(out)),
        ]

    def dispatch(self, family: Family) -> tuple[list[Rule], list[Rule]]:
        """Egress and ingress dispatch rules; builds pod and policy chains on the way."""
        dispatch: dict[Direction, list[Rule]] = {Direction.EGRESS: [], Direction.INGRESS: []}
        self.dropped: dict[Direction, list[Rule]] = {Direction.EGRESS: [], Direction.INGRESS: []}
        drop = self.drop_target(family)
        # ClusterNetworkPolicy: a direction the Admin tier accepted skips its NetworkPolicies.
        admin = any(p.tier is Tier.ADMIN for p in self.state.cluster_policies.values())
        for pod in self.local:
            ips = pod.ips_of(family)
            for d in (Direction.EGRESS, Direction.INGRESS):
                policies = self.isolating.get((pod.uid, d))
                if not ips or policies is None:
                    continue  # not isolated in this direction: no chain, untouched
                chain = self.pod_chain(pod, d, policies, family)
                text = naming.comment(f"{pod.key} {d.value.lower()}")
                for ip in ips:
                    host = _host(ip)
                    src, dst = (host, None) if d is Direction.EGRESS else (None, host)
                    bit = ADMIN_ACCEPTED[d]
                    gate = MarkMatch(bit, bit, negate=True) if admin else None
                    dispatch[d].append(Rule(jump(chain), comment=text, src=src, dst=dst, mark=gate))
                    who = naming.comment(pod.key)
                    self.dropped[d].append(Rule(drop, comment=who, src=src, dst=dst))
        self.dispatched = bool(dispatch[Direction.EGRESS] or dispatch[Direction.INGRESS])
        return dispatch[Direction.EGRESS], dispatch[Direction.INGRESS]

    def drop_chains(self, family: Family, stages: list[Contribution], top: list[Chain]) -> None:
        """NPA-DROP-INGRESS/EGRESS: extension drop rules, per-pod counting, DROP/REJECT."""
        used = _jump_targets([*top, *self.chains.values()])
        for d, name in (
            (Direction.INGRESS, naming.DROP_INGRESS),
            (Direction.EGRESS, naming.DROP_EGRESS),
        ):
            if not self.dropped[d] and name not in used:
                continue
            head = [r for c in stages for r in c.drop.get(d, ())]
            final = Rule(self.drop_target(family), comment="no policy allows")
            self.chains[name] = Chain(name, (*head, *self.dropped[d], final))

    def accept_chains(self, top: list[Chain]) -> None:
        """NPA-ACCEPT / NPA-ACCEPT-OUT, when something jumps there: connmark bit, then allow."""
        used = _jump_targets([*top, *self.chains.values()])
        connmark = self.options.connmark
        for name, final in ((naming.ACCEPT_FORWARD, ACCEPT), (naming.ACCEPT_OUTPUT, RETURN)):
            if name in used:
                rules = (
                    Rule(
                        Target(TargetKind.CONNMARK, mark_value=connmark, mark_mask=connmark),
                        comment="allowed: fast path for the rest of the flow",
                    ),
                    Rule(final, comment="allowed"),
                )
                self.chains[name] = Chain(name, rules)

    # -- chains -------------------------------------------------------------------------

    def pod_chain(
        self, pod: Pod, d: Direction, policies: list[NetworkPolicy], family: Family
    ) -> str:
        name = naming.pod_chain(d.value.lower(), pod.uid)
        rules: list[Rule] = []
        if d is Direction.INGRESS:
            rules.append(
                Rule(self.set_mark(0), comment=naming.comment(f"{pod.key} ingress: clear mark"))
            )
            node_set = self.setb.node_set(family)
            if node_set is not None:
                rules.append(
                    Rule(
                        self.set_mark(self.mark),
                        comment=naming.comment(f"from node {self.node}"),
                        sets=(SetMatch(node_set, "src"),),
                    )
                )
        for policy in policies:
            chain = self.policy_chain(policy, d, family)
            if chain is not None:
                rules.append(Rule(jump(chain), comment=naming.comment(policy.key)))
        drop_chain = naming.DROP_INGRESS if d is Direction.INGRESS else naming.DROP_EGRESS
        rules.append(
            Rule(
                jump(drop_chain),
                comment=naming.comment(f"{pod.key}: no policy allows"),
                mark=MarkMatch(self.mark, self.mark, negate=True),
            )
        )
        self.chains[name] = Chain(name, tuple(rules))
        return name

    def policy_chain(self, policy: NetworkPolicy, d: Direction, family: Family) -> str | None:
        """The shared chain of one policy-direction; None when it allows nothing here."""
        memo_key = (policy.key, d)
        if memo_key in self.policy_memo:
            return self.policy_memo[memo_key]
        rules: list[Rule] = []
        way = "src" if d is Direction.INGRESS else "dst"
        for ri, rule in enumerate(policy.rules(d)):
            text = f"{policy.key} {d.value.lower()}[{ri}]"
            peers: list[SetMatch | None] = []
            if not rule.peers:
                peers.append(None)
            for peer in rule.peers:
                set_name = self.setb.peer_set(policy, peer, family)
                if set_name is not None:
                    peers.append(SetMatch(set_name, way))
            for peer_match in peers:
                for proto, dport, port_set in self.ports(rule.ports, family):
                    sets = tuple(s for s in (peer_match, port_set) if s is not None)
                    target = self.set_mark(self.mark)
                    rules.append(
                        Rule(
                            target,
                            comment=naming.comment(text),
                            protocol=proto,
                            dport=dport,
                            sets=sets,
                        )
                    )
        unique = tuple(dict.fromkeys(rules))
        name: str | None = None
        if unique:
            name = naming.policy_chain(d.value.lower(), policy.key)
            self.chains[name] = Chain(name, unique)
        self.policy_memo[memo_key] = name
        return name

    def ports(
        self, ports: tuple[PolicyPort, ...], family: Family
    ) -> list[tuple[Protocol | None, tuple[int, int] | None, SetMatch | None]]:
        """(protocol, port range, named-port set) per entry; one (None, None, None) = any."""
        out: list[tuple[Protocol | None, tuple[int, int] | None, SetMatch | None]] = []
        if not ports:
            return [(None, None, None)]
        for pp in ports:
            if pp.port is None:
                out.append((pp.protocol, None, None))
            elif isinstance(pp.port, int):
                out.append((pp.protocol, (pp.port, pp.end_port or pp.port), None))
            else:  # resolved on the destination pod, whichever direction: dst IP + dst port
                port_set = self.setb.named_port_set(pp.port, pp.protocol, family)
                out.append((pp.protocol, None, SetMatch(port_set, "dst,dst")))
        return out

    # -- sets ----------------------------------------------------------------------------

    # -- targets -------------------------------------------------------------------------

    def set_mark(self, value: int) -> Target:
        return Target(TargetKind.MARK, mark_value=value, mark_mask=self.mark)

    def drop_target(self, family: Family) -> Target:
        if self.options.drop_action == "reject":
            icmp = "icmp-port-unreachable" if family is Family.V4 else "icmp6-port-unreachable"
            return Target(TargetKind.REJECT, reject_with=icmp)
        return DROP


def _jump_targets(chains: list[Chain]) -> set[str]:
    return {r.target.chain for c in chains for r in c.rules if r.target.kind is TargetKind.JUMP}


def _host(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"{addr}/{addr.max_prefixlen}"

"""compile_ruleset: cluster state + node name -> the ruleset that node's kernel should hold.

Layout per family (docs/rules.md shows it as annotated iptables-save; the
order of the top chains is the contract in agent.core.layout):

    FORWARD/INPUT/OUTPUT --(position 1)--> NPA-FORWARD / NPA-INPUT / NPA-OUTPUT
      HEAD: INVALID drop, RELATED,ESTABLISHED accept (INPUT/OUTPUT: return)
      FAST_PATH: connmark bit set (a flow allowed before) -> ACCEPT (OUTPUT: RETURN)
      [HOLD, ADMIN: extensions]
      VERDICT: clear the mark; source in the egress gate set -> NPA-EGRESS,
        destination in the ingress gate set -> NPA-INGRESS (OUTPUT: ingress only)
      [BASELINE: extension]
      ALLOWED: marked -> NPA-ACCEPT (connmark bit, ACCEPT; OUTPUT: RETURN)
    NPA-INGRESS / NPA-EGRESS: mark; node addresses (ingress), "any port" set,
      "port" set, one rule per wide range / protocol-only entry -> RETURN;
      else NPA-DROP-<DIR>: extension drop rules, counted per pod (ipset
      counters), DROP/REJECT
    INPUT dispatches nothing: a pod may always reach its own node.

Pods never appear in rules: they are members of the gate, counter and
flattened allow sets (agent.core.flatten), so pod churn changes set members
only, and a new packet meets the same ~12 rules whatever the number of pods
and policies. Rules change with policies only when they bring a new wide
port range, and with the node's addresses or options.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, replace

from agent.core import flatten, naming
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
    COMMENT,
    DROP,
    RETURN,
    Chain,
    Hook,
    IPSet,
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
        self._isolating: dict[tuple[str, Direction], list[NetworkPolicy]] | None = None

    @property
    def isolating(self) -> dict[tuple[str, Direction], list[NetworkPolicy]]:
        """(local pod uid, direction) -> the policies isolating it (computed on first use:
        the incremental compiler asks pod by pod instead)."""
        if self._isolating is None:
            self._isolating = {}
            for pod in self.local:
                self._isolating.update(self.isolation_of(pod))
        return self._isolating

    def isolation_of(self, pod: Pod) -> dict[tuple[str, Direction], list[NetworkPolicy]]:
        out: dict[tuple[str, Direction], list[NetworkPolicy]] = {}
        for policy in self.policies.get(pod.namespace, ()):
            if selector_matches(policy.pod_selector, pod.labels):
                for d in sorted(policy.policy_types, key=lambda d: d.value):
                    out.setdefault((pod.uid, d), []).append(policy)
        return out

    # -- the whole ruleset ------------------------------------------------------------

    def run(self) -> Ruleset:
        tables = {f: self.table(f) for f in self.options.families}
        sets = self.kernel_sets(tables)
        for family in self.options.families:
            members = self.members(family)
            for name, found in members.items():
                sets[name] = replace(sets[name], members=frozenset(found))
        return Ruleset(
            tables=tables,
            sets=dict(sorted(sets.items())),
            mark=self.mark,
            connmark=self.options.connmark,
        )

    def kernel_sets(self, tables: dict[Family, Table]) -> dict[str, IPSet]:
        """The sets the rules use (flattened sets empty, to be filled), by name."""
        out: dict[str, IPSet] = {}
        for table in tables.values():
            for chain in table.chains:
                for rule in chain.rules:
                    for m in rule.sets:
                        out[m.name] = self.templates.get(m.name) or self.setb.sets[m.name]
        return out

    def members(self, family: Family) -> dict[str, set[str]]:
        """Gate, counter and flattened set members of one family."""
        out: dict[str, set[str]] = defaultdict(set)
        sets = self.setb.sets

        def current(name: str) -> frozenset[str]:
            return sets[name].members

        for d in Direction:
            gate, counters = flatten.gate_set(d, family).name, flatten.counter_set(d, family).name
            out[gate], out[counters] = set(), set()
            counted: set[str] = set()
            for pod in self.local:
                policies = self.isolating.get((pod.uid, d))
                if policies is None:
                    continue
                for ip in pod.ips_of(family):
                    address = flatten.canon(ip)
                    out[gate].add(address)
                    if address not in counted:  # two pods, one address: one counter
                        counted.add(address)
                        out[counters].add(counter_entry(address, pod))
                for term in self.pod_terms(pod, d, family, policies):
                    out[term.target] |= flatten.entries(term, current)
        return out

    def pod_terms(
        self, pod: Pod, d: Direction, family: Family, policies: list[NetworkPolicy]
    ) -> list[flatten.Term]:
        return flatten.pod_terms(pod, d, family, policies, self.setb)

    def table(self, family: Family) -> Table:
        """One family's table: the top chains stage by stage (agent.core.layout), then the rest."""
        self.chains: dict[str, Chain] = {}
        self.policy_memo: dict[tuple[str, Direction], str | None] = {}
        if not hasattr(self, "templates"):
            self.templates: dict[str, IPSet] = {}
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
            (Stage.FAST_PATH, self.fast_path_stage()),
            (Stage.VERDICT, self.verdict_stage(family)),
            (Stage.ALLOWED, self.allowed_stage()),
        ]
        stages += [(e.stage, e.contribute(ctx)) for e in extensions(self.options.extensions)]
        order = list(Stage)
        stages.sort(key=lambda sc: order.index(sc[0]))  # stable: ours first within a stage
        for _, contribution in stages:
            for chain in contribution.chains:
                self.chains[chain.name] = chain
        top = self.top_chains(family, [c for _, c in stages])
        self.drop_chains(family, [c for _, c in stages])
        self.accept_chains()
        rest = sorted(self.chains.values(), key=lambda c: c.name)
        return Table(family, chains=(*top, *rest), hooks=HOOKS)

    def template(self, ipset: IPSet) -> str:
        self.templates[ipset.name] = ipset
        return ipset.name

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

    def fast_path_stage(self) -> Contribution:
        """A flow allowed before carries the connmark bit: its later packets (unreplied UDP
        stays NEW) skip everything below. Narrowing changes clear the bit (the applier)."""
        cm = self.options.connmark
        marked = MarkMatch(cm, cm)
        text = "fast path: flow allowed before"
        return Contribution(
            forward=(Rule(ACCEPT, comment=text, connmark=marked),),
            output=(Rule(RETURN, comment=text, connmark=marked),),
        )

    def verdict_stage(self, family: Family) -> Contribution:
        """NetworkPolicy: mark reset, then isolated local pods into the verdict chains."""
        clear = Rule(self.set_mark(0), comment="clear the netpol-agent mark")
        gate_e = self.template(flatten.gate_set(Direction.EGRESS, family))
        gate_i = self.template(flatten.gate_set(Direction.INGRESS, family))
        # ClusterNetworkPolicy: a direction the Admin tier accepted skips its NetworkPolicies.
        admin = any(p.tier is Tier.ADMIN for p in self.state.cluster_policies.values())

        def skip(d: Direction) -> MarkMatch | None:
            bit = ADMIN_ACCEPTED[d]
            return MarkMatch(bit, bit, negate=True) if admin else None

        egress = Rule(
            jump(naming.VERDICT_EGRESS),
            comment="source isolated for egress",
            sets=(SetMatch(gate_e, "src"),),
            mark=skip(Direction.EGRESS),
        )
        ingress = Rule(
            jump(naming.VERDICT_INGRESS),
            comment="destination isolated for ingress",
            sets=(SetMatch(gate_i, "dst"),),
            mark=skip(Direction.INGRESS),
        )
        for d in Direction:
            self.verdict_chain(d, family)
        return Contribution(forward=(clear, egress, ingress), output=(clear, ingress))

    def allowed_stage(self) -> Contribution:
        """Marked (a verdict allowed it): connmark bit, then ACCEPT (so a FORWARD policy of
        DROP does not eat it) or, in OUTPUT, RETURN to the host's rules."""
        marked = MarkMatch(self.mark, self.mark)
        return Contribution(
            forward=(Rule(jump(naming.ACCEPT_FORWARD), comment="allowed by policy", mark=marked),),
            output=(Rule(jump(naming.ACCEPT_OUTPUT), comment="allowed by policy", mark=marked),),
        )

    def top_chains(self, family: Family, stages: list[Contribution]) -> list[Chain]:
        """NPA-FORWARD, NPA-INPUT, NPA-OUTPUT: the stages' rules in stage order."""
        fwd = [r for c in stages for r in c.forward]
        out = [r for c in stages for r in c.output]
        # No egress dispatch in INPUT: everything arriving there is for an address of
        # this node, and "traffic to and from the node where a Pod is running is always
        # allowed" (docs/limitations.md). Other nodes are reached through FORWARD.
        inp = list(self.head_stage(family).output)
        return [
            Chain(naming.TOP_FORWARD, tuple(fwd)),
            Chain(naming.TOP_INPUT, tuple(inp)),
            Chain(naming.TOP_OUTPUT, tuple(out)),
        ]

    def verdict_chain(self, d: Direction, family: Family) -> None:
        """NPA-INGRESS / NPA-EGRESS: allowed -> RETURN marked, else the drop path."""
        ingress = d is Direction.INGRESS
        name = naming.VERDICT_INGRESS if ingress else naming.VERDICT_EGRESS
        local, peer = ("dst", "src") if ingress else ("src", "dst")
        rules = [Rule(self.set_mark(self.mark), comment="allowed if a rule below matches")]
        if ingress:
            node_set = self.setb.node_set(family)
            if node_set is not None:
                rules.append(
                    Rule(
                        RETURN,
                        comment=naming.comment(f"from node {self.node}"),
                        sets=(SetMatch(node_set, "src"),),
                    )
                )
        port_name = self.template(flatten.port_set(d, family))
        rules.append(
            Rule(
                RETURN,
                comment="a policy allows the port",
                sets=(SetMatch(port_name, f"{local},dst,{peer}"),),
            )
        )
        policies = [p for _, ps in sorted(self.policies.items()) for p in ps]  # enforced ones
        for spec, source in flatten.pair_rules(policies, d, family, self.setb):
            locals_name = self.template(flatten.locals_set(d, family, spec, source))
            matches = [SetMatch(locals_name, local)]
            if source != flatten.ANYONE:
                matches.append(SetMatch(source, peer))
            proto, lo, hi = spec if spec is not None else (None, None, None)
            rules.append(
                Rule(
                    RETURN,
                    comment=naming.comment(f"a policy allows {flatten.describe_ports(spec)}"),
                    protocol=proto,
                    dport=None if lo is None or hi is None else (lo, hi),
                    sets=tuple(matches),
                )
            )
        rules.append(
            Rule(
                jump(naming.DROP_INGRESS if ingress else naming.DROP_EGRESS),
                comment="no policy allows",
            )
        )
        self.chains[name] = Chain(name, tuple(rules))

    def drop_chains(self, family: Family, stages: list[Contribution]) -> None:
        """NPA-DROP-INGRESS/EGRESS: extension drop rules, counted per pod, DROP/REJECT."""
        for d, name in (
            (Direction.INGRESS, naming.DROP_INGRESS),
            (Direction.EGRESS, naming.DROP_EGRESS),
        ):
            head = [r for c in stages for r in c.drop.get(d, ())]
            counters = self.template(flatten.counter_set(d, family))
            way = "dst" if d is Direction.INGRESS else "src"
            target = self.drop_target(family)
            counted = Rule(
                target, comment="counted per pod (ipset counters)", sets=(SetMatch(counters, way),)
            )
            final = Rule(target, comment="no policy allows")
            self.chains[name] = Chain(name, (*head, counted, final))

    def accept_chains(self) -> None:
        """NPA-ACCEPT / NPA-ACCEPT-OUT: the fast-path connmark bit, then allow."""
        connmark = self.options.connmark
        for name, final in ((naming.ACCEPT_FORWARD, ACCEPT), (naming.ACCEPT_OUTPUT, RETURN)):
            rules = (
                Rule(
                    Target(TargetKind.CONNMARK, mark_value=connmark, mark_mask=connmark),
                    comment="fast path for the rest of the flow",
                ),
                Rule(final, comment="allowed"),
            )
            self.chains[name] = Chain(name, rules)

    # -- per-policy chains, for extensions (LayoutContext.policy_chain) -------------------

    def policy_chain(self, policy: NetworkPolicy, d: Direction, family: Family) -> str | None:
        """A chain marking what one policy allows in one direction; None when it allows
        nothing here. Not used by the NetworkPolicy verdict (flattened sets are); built
        only when an extension asks (e.g. audit logging), shared by every caller."""
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

    # -- targets -------------------------------------------------------------------------

    def set_mark(self, value: int) -> Target:
        return Target(TargetKind.MARK, mark_value=value, mark_mask=self.mark)

    def drop_target(self, family: Family) -> Target:
        if self.options.drop_action == "reject":
            icmp = "icmp-port-unreachable" if family is Family.V4 else "icmp6-port-unreachable"
            return Target(TargetKind.REJECT, reject_with=icmp)
        return DROP


def counter_entry(address: str, pod: Pod) -> str:
    """A counter set entry: the address, with the pod's ns/name as the entry's comment."""
    return f'{address}{COMMENT}"{naming.comment(pod.key)}"'

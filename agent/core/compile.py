"""compile_ruleset: cluster state + node name -> the ruleset that node's kernel should hold.

Layout per family (docs/rules.md shows it as annotated iptables-save):

    FORWARD/INPUT/OUTPUT --(position 1)--> NPA-FORWARD / NPA-INPUT / NPA-OUTPUT
      conntrack short-circuit (FORWARD: INVALID drop, RELATED,ESTABLISHED accept;
      INPUT/OUTPUT carry host traffic too: RELATED,ESTABLISHED return), clear our
      mark bit, dispatch by local pod IP: -s IP -> NPA-E-<pod>, -d IP -> NPA-I-<pod>,
      FORWARD only: marked -> ACCEPT (so a FORWARD policy of DROP does not eat it)
    NPA-I-<pod>: clear mark, node addresses mark, jump to each NPA-PI-<policy>,
      unmarked -> NPA-DROP-INGRESS (per-pod counting rule, then DROP/REJECT)
    NPA-PI-<policy> / NPA-PE-<policy>: one rule per (peer, port): set match -> MARK

Peers are ipsets whose names derive from the selector, never from membership,
so pod churn changes set members only. Named ports are always resolved on the
destination (the selected pod for ingress, the peer for egress) with a set of
"pods whose port NAME/PROTO is N" matched on dst plus `--dport N`; that keeps
one chain per policy shared by all the pods it selects.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from agent.core import naming
from agent.core.errors import ConfigError
from agent.core.model import (
    MATCH_ALL,
    ClusterState,
    Direction,
    Family,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    Protocol,
    family_of,
)
from agent.core.podindex import PodIndex
from agent.core.ruleset import (
    ACCEPT,
    DROP,
    RETURN,
    Chain,
    Hook,
    IPSet,
    MarkMatch,
    Rule,
    Ruleset,
    SetMatch,
    SetType,
    Table,
    Target,
    TargetKind,
    jump,
)
from agent.core.selectors import format_selector, selector_matches

KUBE_PROXY_BITS = (14, 15)  # 0x4000 masquerade, 0x8000 drop


@dataclass(frozen=True, slots=True)
class CompileOptions:
    mark_bit: int = 21
    drop_action: str = "drop"  # "drop" or "reject"
    allow_cidrs: tuple[str, ...] = ()
    families: tuple[Family, ...] = (Family.V4, Family.V6)

    @property
    def mark(self) -> int:
        return 1 << self.mark_bit

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 0 <= self.mark_bit <= 31:
            out.append(f"mark bit {self.mark_bit}: must be 0..31")
        elif self.mark_bit in KUBE_PROXY_BITS:
            out.append(f"mark bit {self.mark_bit}: kube-proxy uses 0x4000 and 0x8000")
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


def net_entries(cidr: str) -> list[str]:
    """ipset entries for a CIDR: bare address for a host prefix, /0 split in two /1."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.prefixlen == 0:
        return [str(n) for n in net.subnets(prefixlen_diff=1)]
    if net.prefixlen == net.max_prefixlen:
        return [str(net.network_address)]
    return [str(net)]


def node_addresses(state: ClusterState, node: str, allow_cidrs: Iterable[str]) -> list[str]:
    """The node's own addresses, each pod CIDR's first address (cni0), and --allow-cidr."""
    out: list[str] = []
    known = state.nodes.get(node)
    if known is not None:
        out += list(known.addresses)
        for cidr in known.pod_cidrs:
            out.append(str(ipaddress.ip_network(cidr, strict=False).network_address + 1))
    return out + list(allow_cidrs)


class _Compiler:
    def __init__(
        self, state: ClusterState, node: str, options: CompileOptions, index: PodIndex
    ) -> None:
        self.state, self.node, self.options, self.index = state, node, options, index
        self.mark = options.mark
        self.sets: dict[str, IPSet] = {}
        self.local = [p for p in index.pods if p.node == node]
        self.policies: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for policy in sorted(state.policies.values(), key=lambda p: p.key):
            self.policies[policy.namespace].append(policy)
        # (pod uid, direction) -> the policies isolating it; and the reverse.
        self.isolating: dict[tuple[str, Direction], list[NetworkPolicy]] = {}
        self.selected_local: dict[str, list[Pod]] = defaultdict(list)
        for pod in self.local:
            for policy in self.policies.get(pod.namespace, ()):
                if selector_matches(policy.pod_selector, pod.labels):
                    self.selected_local[policy.key].append(pod)
                    for d in sorted(policy.policy_types, key=lambda d: d.value):
                        self.isolating.setdefault((pod.uid, d), []).append(policy)

    # -- the whole ruleset ------------------------------------------------------------

    def run(self) -> Ruleset:
        tables = {f: self.table(f) for f in self.options.families}
        return Ruleset(tables=tables, sets=dict(sorted(self.sets.items())), mark=self.mark)

    def table(self, family: Family) -> Table:
        self.chains: dict[str, Chain] = {}
        self.policy_memo: dict[tuple[str, Direction], str | None] = {}
        dispatch: dict[Direction, list[Rule]] = {Direction.EGRESS: [], Direction.INGRESS: []}
        dropped: dict[Direction, list[Rule]] = {Direction.EGRESS: [], Direction.INGRESS: []}
        for pod in self.local:
            ips = pod.ips_of(family)
            for d in (Direction.EGRESS, Direction.INGRESS):
                policies = self.isolating.get((pod.uid, d))
                if not ips or policies is None:
                    continue
                chain = self.pod_chain(pod, d, policies, family)
                for ip in ips:
                    host = _host(ip)
                    src, dst = (host, None) if d is Direction.EGRESS else (None, host)
                    text = f"{pod.key} {d.value.lower()}"
                    dispatch[d].append(
                        Rule(jump(chain), comment=naming.comment(text), src=src, dst=dst)
                    )
                    drop = self.drop_target(family)
                    dropped[d].append(Rule(drop, comment=naming.comment(pod.key), src=src, dst=dst))
        for d, name in (
            (Direction.INGRESS, naming.DROP_INGRESS),
            (Direction.EGRESS, naming.DROP_EGRESS),
        ):
            if dropped[d]:
                final = Rule(self.drop_target(family), comment="no policy allows")
                self.chains[name] = Chain(name, (*dropped[d], final))
        clear = Rule(self.set_mark(0), comment="clear the netpol-agent mark")
        marked = MarkMatch(self.mark, self.mark)
        fwd = [
            Rule(DROP, comment="drop invalid", ctstate=("INVALID",)),
            Rule(ACCEPT, comment="established", ctstate=("RELATED", "ESTABLISHED")),
        ]
        if dispatch[Direction.EGRESS] or dispatch[Direction.INGRESS]:
            fwd += [clear, *dispatch[Direction.EGRESS], *dispatch[Direction.INGRESS]]
            fwd.append(Rule(ACCEPT, comment="allowed by policy", mark=marked))
        established = Rule(RETURN, comment="established", ctstate=("RELATED", "ESTABLISHED"))
        inp = [established]
        if dispatch[Direction.EGRESS]:
            inp += [clear, *dispatch[Direction.EGRESS]]
        out = [established]
        if dispatch[Direction.INGRESS]:
            out += [clear, *dispatch[Direction.INGRESS]]
        top = [
            Chain(naming.TOP_FORWARD, tuple(fwd)),
            Chain(naming.TOP_INPUT, tuple(inp)),
            Chain(naming.TOP_OUTPUT, tuple(out)),
        ]
        hooks = (
            Hook("FORWARD", naming.TOP_FORWARD),
            Hook("INPUT", naming.TOP_INPUT),
            Hook("OUTPUT", naming.TOP_OUTPUT),
        )
        rest = sorted(self.chains.values(), key=lambda c: c.name)
        return Table(family, chains=(*top, *rest), hooks=hooks)

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
            node_set = self.node_set(family)
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
            peers: list[tuple[SetMatch | None, list[Pod] | None]] = []
            if not rule.peers:
                peers.append((None, None))
            for peer in rule.peers:
                resolved = self.peer_set(policy, peer, family)
                if resolved is not None:
                    set_name, members = resolved
                    peers.append((SetMatch(set_name, way), members))
            for peer_match, members in peers:
                for proto, dport, port_set in self.ports(policy, d, rule.ports, members, family):
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
        self,
        policy: NetworkPolicy,
        d: Direction,
        ports: tuple[PolicyPort, ...],
        peer_pods: list[Pod] | None,
        family: Family,
    ) -> list[tuple[Protocol | None, tuple[int, int] | None, SetMatch | None]]:
        out: list[tuple[Protocol | None, tuple[int, int] | None, SetMatch | None]] = []
        if not ports:
            return [(None, None, None)]
        for pp in ports:
            if pp.port is None:
                out.append((pp.protocol, None, None))
            elif isinstance(pp.port, int):
                out.append((pp.protocol, (pp.port, pp.end_port or pp.port), None))
            else:
                for number in self.named_numbers(policy, d, pp.port, pp.protocol, peer_pods):
                    port_set = self.named_port_set(pp.port, pp.protocol, number, family)
                    out.append((pp.protocol, (number, number), SetMatch(port_set, "dst")))
        return out

    def named_numbers(
        self,
        policy: NetworkPolicy,
        d: Direction,
        name: str,
        protocol: Protocol,
        peer_pods: list[Pod] | None,
    ) -> list[int]:
        """The numbers a named port can stand for at the destination of this rule."""
        if d is Direction.INGRESS:
            candidates: Iterable[Pod] = self.selected_local.get(policy.key, ())
        elif peer_pods is not None:
            candidates = peer_pods
        else:
            return self.index.named_port_numbers(name, protocol)
        return sorted(
            {
                cp.port
                for p in candidates
                for cp in p.ports
                if cp.name == name and cp.protocol is protocol
            }
        )

    # -- sets ----------------------------------------------------------------------------

    def peer_set(
        self, policy: NetworkPolicy, peer: Peer, family: Family
    ) -> tuple[str, list[Pod] | None] | None:
        """(set name, member pods or None for an ipBlock), or None if it matches nothing here."""
        if peer.ip_block is not None:
            return self.block_set(peer.ip_block.cidr, peer.ip_block.excepts, family)
        if peer.pod_selector is None and peer.namespace_selector is None:
            return None
        if peer.namespace_selector is None:
            scope, namespaces = f"ns={policy.namespace}", frozenset({policy.namespace})
            where = f"namespace {policy.namespace}"
        else:
            scope = f"nssel={naming.selector_key(peer.namespace_selector)}"
            namespaces = self.index.namespaces_matching(peer.namespace_selector)
            where = f"namespaces {format_selector(peer.namespace_selector)}"
        selector = peer.pod_selector or MATCH_ALL
        pods = self.index.select(scope, namespaces, selector)
        key = f"sel|{scope}|{naming.selector_key(selector)}"
        name = naming.set_name(naming.SET_SELECTOR, family, key)
        if name not in self.sets:
            members = frozenset(_canon(ip) for p in pods for ip in p.ips_of(family))
            what = f"pods {format_selector(selector)} in {where}"
            self.sets[name] = IPSet(name, SetType.HASH_IP, family, members, description=what)
        return name, list(pods)

    def block_set(
        self, cidr: str, excepts: tuple[str, ...], family: Family
    ) -> tuple[str, None] | None:
        if family_of(cidr) is not family:
            return None
        net = ipaddress.ip_network(cidr, strict=False)
        holes = []
        for e in excepts:
            hole = ipaddress.ip_network(e, strict=False)
            if hole.version != net.version or not hole.overlaps(net):
                continue
            if hole.supernet_of(net):  # type: ignore[arg-type]
                return None  # the except swallows the whole block
            holes.append(hole)
        key = f"block|{net}|{','.join(sorted(str(h) for h in set(holes)))}"
        name = naming.set_name(naming.SET_BLOCK, family, key)
        if name not in self.sets:
            nomatch = frozenset(e for h in holes for e in net_entries(str(h)))
            members = frozenset(net_entries(str(net))) - nomatch
            what = f"ipBlock {net}" + (
                f" except {', '.join(sorted(map(str, holes)))}" if holes else ""
            )
            self.sets[name] = IPSet(name, SetType.HASH_NET, family, members, nomatch, what)
        return name, None

    def named_port_set(self, port: str, protocol: Protocol, number: int, family: Family) -> str:
        key = f"port|{port}|{protocol.value}|{number}"
        name = naming.set_name(naming.SET_NAMED_PORT, family, key)
        if name not in self.sets:
            pods = self.index.named_port_pods(port, protocol, number)
            members = frozenset(_canon(ip) for p in pods for ip in p.ips_of(family))
            what = f"pods whose port {port}/{protocol.value} is {number}"
            self.sets[name] = IPSet(name, SetType.HASH_IP, family, members, description=what)
        return name

    def node_set(self, family: Family) -> str | None:
        entries = {
            e
            for a in node_addresses(self.state, self.node, self.options.allow_cidrs)
            if family_of(a) is family
            for e in net_entries(a)
        }
        if not entries:
            return None
        name = naming.set_name(naming.SET_NODE, family, f"node|{self.node}")
        what = f"addresses of node {self.node} (always allowed to its pods)"
        self.sets[name] = IPSet(
            name, SetType.HASH_NET, family, frozenset(entries), description=what
        )
        return name

    # -- targets -------------------------------------------------------------------------

    def set_mark(self, value: int) -> Target:
        return Target(TargetKind.MARK, mark_value=value, mark_mask=self.mark)

    def drop_target(self, family: Family) -> Target:
        if self.options.drop_action == "reject":
            icmp = "icmp-port-unreachable" if family is Family.V4 else "icmp6-port-unreachable"
            return Target(TargetKind.REJECT, reject_with=icmp)
        return DROP


def _host(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"{addr}/{addr.max_prefixlen}"


def _canon(ip: str) -> str:
    return str(ipaddress.ip_address(ip))

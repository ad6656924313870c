"""The packet tracer: run one packet through a compiled ruleset, as the kernel would.

`trace` walks the filter table of one family from a built-in hook (FORWARD,
INPUT, OUTPUT) through our jump at position 1, evaluating each rule's matches
(addresses, interfaces, protocol, ports, ipsets, conntrack state, mark) and
following jumps, returns, MARK and the terminal targets, like kube-proxy's
packet-flow tests. The result names every rule the packet matched, so a test
failure shows the path. Falling off our top chain means "not our business":
the built-in chain goes on (verdict PASS, counted as allowed).

`RulesetEvaluator` answers the reference evaluator's question ("may src reach
dst on port/protocol?") through compile + trace: egress is traced on the
source's node, ingress on the destination's node; pods on the same node are
one bridged FORWARD pass that visits both. A pod's packet to its own node (one
of the node's addresses, or a hostNetwork pod there) enters INPUT, which
enforces nothing: traffic to the pod's own node is always allowed. Pods
without a node (manifests rarely set spec.nodeName) are placed together on
one node of their own, `UNSCHEDULED_NODE`, so that they are enforced as the
reference evaluator assumes (NetworkPolicy does not depend on placement).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field, replace

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.errors import InputError
from agent.core.ipsets import node_addresses
from agent.core.model import ClusterState, Family, Pod, Protocol, family_of
from agent.core.ruleset import Rule, Ruleset, TargetKind
from agent.core.traceindex import TableIndex

ALLOWING = ("ACCEPT", "PASS")
_MAX_DEPTH = 32
UNSCHEDULED_NODE = "npa-unscheduled"  # where pods without spec.nodeName are traced


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    protocol: Protocol
    dport: int
    ctstate: str = "NEW"  # NEW, ESTABLISHED, RELATED, INVALID
    hook: str = "FORWARD"  # FORWARD, INPUT, OUTPUT
    in_interface: str | None = None
    out_interface: str | None = None
    mark: int = 0
    ctmark: int = 0  # the flow's conntrack mark (the fast-path bit of an allowed flow)


@dataclass(frozen=True, slots=True)
class Step:
    chain: str
    position: int  # 1-based, as `iptables -L --line-numbers`
    rule: Rule

    def __str__(self) -> str:
        return f"{self.chain}#{self.position}: {self.rule.spec()}"


@dataclass(frozen=True, slots=True)
class Trace:
    packet: Packet
    verdict: str  # ACCEPT, DROP, REJECT or PASS (fell through our chains)
    steps: tuple[Step, ...] = ()
    mark: int = 0
    ctmark: int = 0  # the conntrack mark the packet leaves behind
    evaluated: int = 0  # rules the kernel evaluated (matched or not), as an iptables walk

    @property
    def allowed(self) -> bool:
        return self.verdict in ALLOWING

    def __str__(self) -> str:
        p = self.packet
        head = (
            f"{p.hook} {p.protocol.value} {p.src} -> {p.dst}:{p.dport} [{p.ctstate}]: "
            f"{self.verdict}"
        )
        return "\n".join([head, *(f"  {s}" for s in self.steps)])


class TraceError(Exception):
    """The ruleset is broken (a jump to a missing chain, a missing set, a loop)."""


def trace(ruleset: Ruleset, packet: Packet, *, index: TableIndex | None = None) -> Trace:
    """Run `packet` through `ruleset`; pass the table's `index` when tracing many packets."""
    family = family_of(packet.src)
    if family_of(packet.dst) is not family:
        raise InputError(f"packet {packet.src} -> {packet.dst} mixes address families")
    table = ruleset.table(family)
    walker = _Walker(ruleset, index if index is not None else TableIndex(table), packet)
    for hook in table.hooks:
        if hook.builtin == packet.hook:
            walker.steps.append(Step(hook.builtin, 1, hook.rule()))
            verdict = walker.run(hook.chain, 0) or "PASS"
            return Trace(
                packet,
                verdict,
                tuple(walker.steps),
                walker.mark,
                walker.ctmark,
                walker.evaluated + 1,
            )
    return Trace(packet, "PASS", (), packet.mark, packet.ctmark)


@dataclass
class _Walker:
    ruleset: Ruleset
    index: TableIndex
    packet: Packet
    steps: list[Step] = field(default_factory=list)
    mark: int = 0
    ctmark: int = 0
    evaluated: int = 0

    def __post_init__(self) -> None:
        self.mark = self.packet.mark
        self.ctmark = self.packet.ctmark

    def run(self, chain_name: str, depth: int) -> str | None:
        """Evaluate a chain: a terminal verdict, or None when it returns."""
        if depth > _MAX_DEPTH:
            raise TraceError(f"jump depth over {_MAX_DEPTH} at {chain_name}: a loop?")
        chain = self.index.chains.get(chain_name)
        if chain is None:
            raise TraceError(f"jump to missing chain {chain_name}")
        for i in self.index.candidates(chain, self.packet.src, self.packet.dst):
            rule = chain.rules[i]
            if not self.matches(rule):
                continue
            self.steps.append(Step(chain_name, i + 1, rule))
            t = rule.target
            if t.kind is TargetKind.JUMP:
                verdict = self.run(t.chain, depth + 1)
                if verdict is not None:
                    self.evaluated += i + 1
                    return verdict
            elif t.kind is TargetKind.RETURN:
                self.evaluated += i + 1
                return None
            elif t.kind is TargetKind.MARK:
                self.mark = (self.mark & ~t.mark_mask) ^ t.mark_value
            elif t.kind is TargetKind.CONNMARK:
                self.ctmark = (self.ctmark & ~t.mark_mask) ^ t.mark_value
            elif t.kind is TargetKind.NFLOG:
                pass  # logs, then the packet goes on (a hashlimit match is taken as a hit)
            else:
                self.evaluated += i + 1
                return str(t.kind.value)
        self.evaluated += len(chain.rules)
        return None

    def matches(self, rule: Rule) -> bool:
        p = self.packet
        if rule.src is not None and not _in(p.src, rule.src):
            return False
        if rule.dst is not None and not _in(p.dst, rule.dst):
            return False
        if rule.in_interface is not None and not _iface(p.in_interface, rule.in_interface):
            return False
        if rule.out_interface is not None and not _iface(p.out_interface, rule.out_interface):
            return False
        if rule.protocol is not None and rule.protocol is not p.protocol:
            return False
        if rule.icmpv6_type is not None:  # our packets are TCP, UDP or SCTP
            return False
        if rule.dport is not None and not rule.dport[0] <= p.dport <= rule.dport[1]:
            return False
        if rule.ctstate and p.ctstate not in rule.ctstate:
            return False
        if rule.mark is not None:
            hit = (self.mark & rule.mark.mask) == rule.mark.value
            if hit == rule.mark.negate:
                return False
        if rule.connmark is not None:
            hit = (self.ctmark & rule.connmark.mask) == rule.connmark.value
            if hit == rule.connmark.negate:
                return False
        for s in rule.sets:
            found = self.index.set_match(self.ruleset, s.name, s.direction, p)
            if found is None:
                raise TraceError(f"rule references missing set {s.name}: {rule.spec()}")
            if found == s.negate:
                return False
        return True


def _in(ip: str, cidr: str) -> bool:
    if cidr.endswith(("/32", "/128")):  # dispatch rules: a plain comparison
        return cidr[: cidr.rindex("/")] == ip
    return _in_net(ip, cidr)


@functools.lru_cache(maxsize=65536)
def _in_net(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


def _iface(actual: str | None, wanted: str) -> bool:
    if actual is None:
        return False
    if wanted.endswith("+"):
        return actual.startswith(wanted[:-1])
    return actual == wanted


Endpoint = Pod | str


class RulesetEvaluator:
    """`ReferenceEvaluator.allowed`, answered by compiling each node and tracing packets."""

    def __init__(self, state: ClusterState, options: CompileOptions | None = None) -> None:
        self.placed: dict[str, Pod] = {}  # uid -> the pod as traced (unscheduled: placed)
        node = UNSCHEDULED_NODE
        while node in state.nodes:
            node += "-"
        for pod in state.pods.values():
            if pod.node is None and pod.is_networked:
                self.placed[pod.uid] = replace(pod, node=node)
        if self.placed:
            state = replace(state, pods={**state.pods, **self.placed})
        self.state = state
        self.options = options or CompileOptions()
        self._compiled: dict[str, Ruleset] = {}
        self._own: dict[str, frozenset[str]] = {}
        self._index: dict[tuple[str, Family], TableIndex] = {}

    def own_addresses(self, node: str) -> frozenset[str]:
        """The addresses a node's packets to its pods come from (OUTPUT, not FORWARD)."""
        hit = self._own.get(node)
        if hit is None:
            addrs = node_addresses(self.state, node, ())
            hit = frozenset(str(ipaddress.ip_address(a)) for a in addrs)
            self._own[node] = hit
        return hit

    def ruleset(self, node: str) -> Ruleset:
        hit = self._compiled.get(node)
        if hit is None:
            hit = compile_ruleset(self.state, node=node, options=self.options)
            self._compiled[node] = hit
            for family, table in hit.tables.items():
                self._index[(node, family)] = TableIndex(table)
        return hit

    def _trace(self, node: str, packet: Packet) -> Trace:
        ruleset = self.ruleset(node)
        index = self._index.get((node, family_of(packet.src)))
        return trace(ruleset, packet, index=index)

    def allowed(
        self,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: Protocol,
        *,
        family: Family | None = None,
    ) -> bool:
        traces = self.traces(src, dst, port, protocol, family=family)
        return traces is not None and all(t.allowed for _, t in traces)

    def traces(
        self,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: Protocol,
        *,
        family: Family | None = None,
    ) -> list[tuple[str, Trace]] | None:
        """(node, trace) for each pass the packet makes; [] when nothing can stop it,
        None when no packet can be sent at all (no address, no shared family)."""
        src, dst = self._placed(_canonical(src)), self._placed(_canonical(dst))
        if isinstance(src, Pod) and isinstance(dst, Pod) and src.uid == dst.uid:
            return []  # never leaves the pod's network namespace
        src_ip, dst_ip = _addresses(src, dst, family)
        if src_ip is None or dst_ip is None:
            return None
        out: list[tuple[str, Trace]] = []
        src_node = src.node if isinstance(src, Pod) and src.is_networked else None
        dst_node = dst.node if isinstance(dst, Pod) else None
        if src_node is not None:
            to_host = dst_ip in self.own_addresses(src_node) or (
                isinstance(dst, Pod) and not dst.is_networked and dst.node == src_node
            )
            hook = "INPUT" if to_host else "FORWARD"
            packet = Packet(src_ip, dst_ip, protocol, port, hook=hook)
            out.append((src_node, self._trace(src_node, packet)))
        if dst_node is not None and dst_node != src_node:
            local_host = isinstance(src, Pod) and not src.is_networked and src.node == dst_node
            hook = "OUTPUT" if local_host or src_ip in self.own_addresses(dst_node) else "FORWARD"
            packet = Packet(src_ip, dst_ip, protocol, port, hook=hook)
            out.append((dst_node, self._trace(dst_node, packet)))
        return out

    def _placed(self, end: Endpoint) -> Endpoint:
        if isinstance(end, Pod) and end.node is None:
            return self.placed.get(end.uid, end)
        return end

    def explain(
        self, src: Endpoint, dst: Endpoint, port: int, protocol: Protocol
    ) -> RulesetExplanation:
        """The walk of one packet on each node it crosses (for `reachability --explain`)."""
        traces = self.traces(src, dst, port, protocol)
        return RulesetExplanation(
            _name(src), _name(dst), port, protocol, tuple(traces) if traces else (), traces
        )


@dataclass(frozen=True, slots=True)
class RulesetExplanation:
    src: str
    dst: str
    port: int
    protocol: Protocol
    passes: tuple[tuple[str, Trace], ...]
    sendable: object  # None when no packet can be sent (no address, no shared family)

    @property
    def allowed(self) -> bool:
        return self.sendable is not None and all(t.allowed for _, t in self.passes)

    def render(self) -> str:
        head = f"{self.src} -> {self.dst} {self.port}/{self.protocol.value}: "
        if self.sendable is None:
            return head + "no packet (no address or no shared family)\n"
        lines = [head + ("ALLOWED" if self.allowed else "DENIED")]
        if not self.passes:
            lines.append("  nothing on the way enforces anything (same pod)")
        for node, t in self.passes:
            lines.append(
                f"  node {node}: {t.packet.hook} -> {t.verdict} ({t.evaluated} rules evaluated)"
            )
            lines += [f"    {step}" for step in t.steps]
        return "\n".join(lines) + "\n"


def _name(end: Endpoint) -> str:
    return end.key if isinstance(end, Pod) else str(end)


def _canonical(end: Endpoint) -> Endpoint:
    if isinstance(end, Pod):
        return end
    try:
        return _canon_ip(end.strip())
    except ValueError:
        raise InputError(f"{end!r} is neither a pod nor an IP address") from None


@functools.lru_cache(maxsize=65536)
def _canon_ip(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def _usable(end: Endpoint) -> bool:
    """Pods that can send or receive: networked ones, or hostNetwork ones with an IP."""
    return not isinstance(end, Pod) or end.is_networked or (end.host_network and bool(end.ips))


def _addresses(src: Endpoint, dst: Endpoint, family: Family | None) -> tuple[str | None, ...]:
    """The packet's addresses: the destination's first family the source also has."""
    if not (_usable(src) and _usable(dst)):
        return (None, None)

    def families(end: Endpoint) -> list[Family]:
        ips = [end] if isinstance(end, str) else list(end.ips)
        return list(dict.fromkeys(family_of(ip) for ip in ips))

    shared = [f for f in families(dst) if f in families(src)]
    if family is not None:
        shared = [family] if family in shared else []
    if not shared:
        return (None, None)

    def first(end: Endpoint) -> str:
        return _canon_ip(end if isinstance(end, str) else end.ips_of(shared[0])[0])

    return (first(src), first(dst))

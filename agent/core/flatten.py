"""Flattening: what each isolated local pod may talk to, as entries of a few kernel sets.

Walking a chain per policy costs every new packet a rule per policy selecting
the pod (docs/performance.md). Instead, the union of everything a pod's
policies allow in one direction becomes set entries keyed by the pod's own
address, so the NetworkPolicy verdict is a handful of set lookups whatever
the number of pods and policies (docs/rules.md):

- TCP/UDP/SCTP ports, ranges of at most RANGE_EXPAND_MAX ports (expanded) and
  named ports: the `hash:ip,port,net` "port" set, entry `POD,proto:port,PEER`,
  PEER a pod address or a CIDR of an ipBlock with its excepts cut out exactly
  (`block_cidrs`), so no `nomatch` entry of one policy can hide what another
  allows. A named port resolves on the destination: for ingress on the local
  pod itself, for egress on each peer (joined with the named-port set's
  `IP,proto:number` members).
- Rules without ports, wider ranges and protocol-only entries cannot be
  expanded into ports cheaply, and kernels without `hash:net,net` (this
  project's CI VM has none) cannot hold `POD,PEER`: these are "pair rules",
  one per distinct (ports, peer) in the cluster's policies, matching the
  peer's own set and a "locals" set of the local pods allowed that way
  (`-m set --match-set LOCALS dst -m set --match-set PEER src`). Their count
  follows the distinct portless peers and wide ranges policies use (9 in the
  10k-pod benchmark cluster), never pods.

A `Term` is one (local address, peer source, ports) product; `entries` expands
it given the members of the selector and named-port sets, so the full
compiler (`agent.core.compile`) and the incremental one (`agent.core.incremental`,
which also applies member deltas with `peer_entries`) expand terms the same way.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol as Interface

from agent.core import naming
from agent.core.model import (
    Direction,
    Family,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    Protocol,
    family_of,
)
from agent.core.ruleset import IPSet, SetType

RANGE_EXPAND_MAX = 16  # port ranges up to this many ports become port-set entries
PRODUCT_MAXELEM = 1 << 20
Members = Callable[[str], frozenset[str]]
# (protocol, first port, last port), or (protocol, None, None) for every port of it
Fallback = tuple[Protocol, int | None, int | None]


@dataclass(frozen=True, slots=True)
class Term:
    """Entries `local[,port],peer` for each peer of a source and each port key."""

    target: str  # the kernel set the entries go to
    local: str  # the local pod's address (canonical text)
    ports: tuple[str, ...] = ()  # "tcp:80"...; () for a hash:net,net target
    peers: tuple[str, ...] = ()  # static peers (CIDRs, hosts) when `source` is None
    source: str | None = None  # selector set whose members (pod addresses) are the peers
    named: str | None = None  # egress named port: named-port set of "IP,proto:number"
    pair: bool = False  # a pair rule's locals set: the entry is the local address alone


def entries(term: Term, members: Members) -> frozenset[str]:
    """Every entry of one term, given the current members of the sets it refers to."""
    if term.pair:
        return frozenset((term.local,))
    if term.named is None:
        peers = members(term.source) if term.source is not None else term.peers
        return frozenset(peer_entries(term, peers))
    by_ip = _ports_by_ip(members(term.named))
    local = term.local
    pairs: Iterable[tuple[str, tuple[str, ...]]]
    if term.source is not None:
        allowed = members(term.source)
        pairs = (
            ((ip, ports) for ip in allowed if (ports := by_ip.get(ip)))
            if len(allowed) < len(by_ip)
            else ((ip, ports) for ip, ports in by_ip.items() if ip in allowed)
        )
    elif term.peers == anyone(family_of(local)):
        pairs = by_ip.items()
    else:
        pairs = ((ip, ports) for ip, ports in by_ip.items() if _in_any(ip, term.peers))
    return frozenset(f"{local},{port},{ip}" for ip, ports in pairs for port in ports)


@functools.lru_cache(maxsize=256)
def _ports_by_ip(members: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """A named-port set's `IP,proto:number` members grouped by IP (cached per value)."""
    out: dict[str, list[str]] = {}
    for member in members:
        ip, _, port = member.partition(",")
        out.setdefault(ip, []).append(port)
    return {ip: tuple(ports) for ip, ports in out.items()}


def peer_entries(term: Term, peers: Iterable[str]) -> list[str]:
    """The entries some peers contribute to a term without a named port."""
    assert term.named is None and not term.pair
    return [f"{term.local},{port},{p}" for p in peers for port in term.ports]


def _in_any(ip: str, cidrs: tuple[str, ...]) -> bool:
    return any(_in_cidr(ip, c) for c in cidrs)


@functools.lru_cache(maxsize=65536)
def _in_cidr(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


@functools.lru_cache(maxsize=4096)
def block_cidrs(cidr: str, excepts: tuple[str, ...], family: Family) -> tuple[str, ...]:
    """An ipBlock as set entries: the CIDR minus its excepts, exactly (no nomatch), with
    host prefixes as bare addresses and /0 split in two /1 (hash:net types hold no /0)."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version != int(family):
        return ()
    parts: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [net]
    for text in excepts:
        hole = ipaddress.ip_network(text, strict=False)
        if hole.version != net.version:
            continue
        kept: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for part in parts:
            if hole.supernet_of(part):  # type: ignore[arg-type]
                continue
            if part.overlaps(hole):
                kept += list(part.address_exclude(hole))  # type: ignore[arg-type]
            else:
                kept.append(part)
        parts = kept
    out: list[str] = []
    for part in sorted(ipaddress.collapse_addresses(parts)):  # type: ignore[type-var]
        if part.prefixlen == 0:
            out += [str(n) for n in part.subnets(prefixlen_diff=1)]
        elif part.prefixlen == part.max_prefixlen:
            out.append(str(part.network_address))
        else:
            out.append(str(part))
    return tuple(out)


@functools.lru_cache(maxsize=1 << 17)
def canon(ip: str) -> str:
    """The canonical text of an address (cached: every sync sees the same pod IPs)."""
    return str(ipaddress.ip_address(ip))


def anyone(family: Family) -> tuple[str, ...]:
    return block_cidrs("0.0.0.0/0" if family is Family.V4 else "::/0", (), family)


# -- kernel set names ----------------------------------------------------------------------


def _way(d: Direction) -> str:
    return d.value.lower()


@functools.lru_cache(maxsize=4096)
def gate_set(d: Direction, family: Family) -> IPSet:
    name = naming.set_name(naming.SET_GATE, family, f"gate|{_way(d)}")
    what = f"local pods a policy isolates for {_way(d)} (the gate to the verdict)"
    return IPSet(name, SetType.HASH_IP, family, description=what)


@functools.lru_cache(maxsize=4096)
def counter_set(d: Direction, family: Family) -> IPSet:
    name = naming.set_name(naming.SET_COUNTERS, family, f"count|{_way(d)}")
    what = f"local pods a policy isolates for {_way(d)}: drop counters, comment ns/pod"
    return IPSet(name, SetType.HASH_IP, family, description=what, counters=True)


@functools.lru_cache(maxsize=4096)
def port_set(d: Direction, family: Family) -> IPSet:
    name = naming.set_name(naming.SET_PORTS, family, f"ports|{_way(d)}")
    what = f"{_way(d)} allowed on a port: local pod,proto:port,peer"
    return IPSet(name, SetType.HASH_IP_PORT_NET, family, description=what, maxelem=PRODUCT_MAXELEM)


def describe_ports(ports: Fallback | None) -> str:
    if ports is None:
        return "every port"
    proto, lo, hi = ports
    return f"{proto.value} " + ("every port" if lo is None else f"ports {lo}-{hi}")


@functools.lru_cache(maxsize=4096)
def locals_set(d: Direction, family: Family, ports: Fallback | None, source: str) -> IPSet:
    """The local pods a pair rule lets reach (or be reached by) `source` on `ports`."""
    spec = "any" if ports is None else f"{ports[0].value}|{ports[1]}-{ports[2]}"
    name = naming.set_name(naming.SET_LOCALS, family, f"pair|{_way(d)}|{spec}|{source}")
    peer = "anyone" if source == ANYONE else source
    what = f"local pods allowed {_way(d)} on {describe_ports(ports)} with {peer}"
    return IPSet(name, SetType.HASH_IP, family, description=what)


ANYONE = "anyone"  # a pair rule's source when the rule has no peers
_FLATTENED = tuple(f"{naming.SET_PREFIX}{kind}" for kind in (naming.SET_PORTS, naming.SET_LOCALS))


_PINNING = tuple(
    f"{naming.SET_PREFIX}{kind}"
    for kind in (naming.SET_GATE, naming.SET_COUNTERS, naming.SET_LOCALS)
)


def pins_local_pods(name: str) -> bool:
    """Does a match on set `name` pin its rule to the local pods it holds (gate, counter,
    locals sets), as a `-d POD/32` dispatch rule would?"""
    return name.startswith(_PINNING)


def is_flattened(name: str) -> bool:
    """Is `name` a set whose entries come from terms (port sets, locals sets)?"""
    return name.startswith(_FLATTENED)


def fallback_of(pp: PolicyPort) -> Fallback | None:
    """The fallback key of a numeric ports entry sets cannot expand cheaply, else None."""
    if isinstance(pp.port, str):
        return None
    if pp.port is None:
        return (pp.protocol, None, None)
    hi = pp.end_port or pp.port
    if hi - pp.port + 1 <= RANGE_EXPAND_MAX:
        return None
    return (pp.protocol, pp.port, hi)


def pair_keys(rule_ports: tuple[PolicyPort, ...]) -> list[Fallback | None]:
    """The pair-rule port specs of one rule: None (every port) for a rule without
    ports, else its wide ranges and protocol-only entries."""
    if not rule_ports:
        return [None]
    return [fb for fb in (fallback_of(pp) for pp in rule_ports) if fb is not None]


def pair_rules(
    policies: Iterable[NetworkPolicy], d: Direction, family: Family, sets: PeerSets
) -> list[tuple[Fallback | None, str]]:
    """(ports, peer set or ANYONE) of every pair rule, from every policy of the cluster
    (pods do not matter: rules never follow pods), in a stable order."""
    found: set[tuple[Fallback | None, str]] = set()
    for policy in policies:
        for rule in policy.rules(d):
            keys = pair_keys(rule.ports)
            if not keys:
                continue
            for source in _sources(policy, rule.peers, family, sets):
                for key in keys:
                    found.add((key, source))
    return sorted(found, key=lambda k: (_spec_order(k[0]), k[1]))


def _spec_order(spec: Fallback | None) -> tuple[str, int, int]:
    if spec is None:
        return ("", 0, 0)
    return (spec[0].value, spec[1] or 0, spec[2] or 0)


def _sources(
    policy: NetworkPolicy, peers: tuple[Peer, ...], family: Family, sets: PeerSets
) -> list[str]:
    if not peers:
        return [ANYONE]
    out = []
    for peer in peers:
        name = sets.peer_set(policy, peer, family)
        if name is not None:
            out.append(name)
    return out


# -- terms ---------------------------------------------------------------------------------


class PeerSets(Interface):
    """How terms name their peer sources (agent.core.ipsets.SetBuilder and its subclass)."""

    def peer_set(self, policy: NetworkPolicy, peer: Peer, family: Family) -> str | None: ...

    def named_port_set(self, port: str, protocol: Protocol, family: Family) -> str: ...


def pod_terms(
    pod: Pod,
    d: Direction,
    family: Family,
    policies: Iterable[NetworkPolicy],
    sets: PeerSets,
) -> list[Term]:
    """The terms of one isolated local pod in one direction and family, in policy order."""
    out: list[Term] = []
    addresses = [canon(ip) for ip in pod.ips_of(family)]
    port_name = port_set(d, family).name
    for policy in policies:
        for rule in policy.rules(d):
            # (static peers for the port set, selector set for the port set, pair source)
            sources: list[tuple[tuple[str, ...], str | None, str]] = []
            if not rule.peers:
                sources.append((anyone(family), None, ANYONE))
            for peer in rule.peers:
                name = sets.peer_set(policy, peer, family)
                if name is None:
                    continue
                if peer.ip_block is not None:
                    block = peer.ip_block
                    cidrs = block_cidrs(block.cidr, tuple(block.excepts), family)
                    sources.append((cidrs, None, name))
                else:
                    sources.append(((), name, name))
            if not sources:
                continue
            keys: list[str] = []
            named: list[PolicyPort] = []
            for pp in rule.ports:
                proto = pp.protocol.value.lower()
                if isinstance(pp.port, str):
                    if d is Direction.EGRESS:
                        named.append(pp)
                    else:  # resolved on the local pod itself
                        keys += [
                            f"{proto}:{cp.port}"
                            for cp in pod.ports
                            if cp.name == pp.port and cp.protocol is pp.protocol
                        ]
                    continue
                if fallback_of(pp) is not None or pp.port is None:
                    continue  # a pair rule's
                keys += [f"{proto}:{n}" for n in range(pp.port, (pp.end_port or pp.port) + 1)]
            port_keys = tuple(dict.fromkeys(keys))
            pairs = pair_keys(rule.ports)
            for local in addresses:
                for peers, source, pair_source in sources:
                    for spec in pairs:
                        target = locals_set(d, family, spec, pair_source).name
                        out.append(Term(target, local, pair=True))
                    if port_keys and (peers or source):
                        out.append(Term(port_name, local, port_keys, peers, source))
                    for pp in named:
                        ports_of = sets.named_port_set(str(pp.port), pp.protocol, family)
                        out.append(Term(port_name, local, (), peers, source, ports_of))
    return out

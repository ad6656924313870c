"""The ipsets a node's rules match against, named for what selects them, never for members.

One set per distinct peer (namespace scope + pod selector: hash:ip), per
ipBlock (hash:net, `except` entries as `nomatch`, /0 split in two /1 halves
because hash:net cannot hold /0), per named container port (hash:ip,port of
`IP,proto:number`), and one for the node's own addresses (hash:net). Because
the names come from selectors, a pod joining, leaving or changing changes
members only; `render.plan` turns that into `add`/`del` lines.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from agent.core import naming
from agent.core.model import (
    MATCH_ALL,
    ClusterState,
    Family,
    NetworkPolicy,
    Peer,
    Protocol,
    family_of,
)
from agent.core.podindex import PodIndex
from agent.core.ruleset import IPSet, SetType
from agent.core.selectors import format_selector


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


class SetBuilder:
    """Creates each set once per compile, on first use, and remembers it in `sets`."""

    def __init__(
        self, state: ClusterState, node: str, allow_cidrs: tuple[str, ...], index: PodIndex
    ) -> None:
        self.state, self.node, self.allow_cidrs, self.index = state, node, allow_cidrs, index
        self.sets: dict[str, IPSet] = {}

    def peer_set(self, policy: NetworkPolicy, peer: Peer, family: Family) -> str | None:
        """The set of a peer; None if it can match nothing in this family."""
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
        return name

    def block_set(self, cidr: str, excepts: tuple[str, ...], family: Family) -> str | None:
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
        return name

    def named_port_set(self, port: str, protocol: Protocol, family: Family) -> str:
        """hash:ip,port of every pod's (IP, protocol:number) for containerPort `port`."""
        key = f"port|{port}|{protocol.value}"
        name = naming.set_name(naming.SET_NAMED_PORT, family, key)
        if name not in self.sets:
            proto = protocol.value.lower()
            members = frozenset(
                f"{_canon(ip)},{proto}:{number}"
                for number, pods in self.index.named_port(port, protocol).items()
                for p in pods
                for ip in p.ips_of(family)
            )
            what = f"pods with a containerPort named {port}/{protocol.value}: IP,port"
            self.sets[name] = IPSet(name, SetType.HASH_IP_PORT, family, members, description=what)
        return name

    def node_set(self, family: Family) -> str | None:
        entries = {
            e
            for a in node_addresses(self.state, self.node, self.allow_cidrs)
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


@functools.lru_cache(maxsize=1 << 17)
def _canon(ip: str) -> str:
    """The canonical text of an address (cached: every sync sees the same 10k pod IPs)."""
    return str(ipaddress.ip_address(ip))

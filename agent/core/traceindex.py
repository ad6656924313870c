"""Indexes over one filter table and its sets so the tracer answers many packets fast.

Rules: chains may hold rules with a host address (`-s IP/32`, `-d IP/32`,
e.g. from an extension); the index keeps, per chain, the rules without a
host address and the rules keyed by their host source or destination, so a
packet only meets the rules that could match it, in order.

Sets: `reachability --engine ruleset` traces millions of packets against sets
of up to ~10^5 entries. Each set is indexed on first use: entries grouped by
their first dimension (a local pod's address in the flattened sets) and, per
group, by port and by prefix length of the last address, so a lookup is a few
dictionary probes, answering exactly as the kernel does (most specific
prefix first, `nomatch` means no).
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.core.ruleset import Chain, IPSet, Ruleset, SetType, Table, entry_key

if TYPE_CHECKING:
    from agent.core.trace import Packet

_HOST = ("/32", "/128")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class _ChainIndex:
    always: list[int] = field(default_factory=list)
    by_src: dict[str, list[int]] = field(default_factory=dict)
    by_dst: dict[str, list[int]] = field(default_factory=dict)

    def candidates(self, src: str, dst: str) -> list[int]:
        a, b = self.by_src.get(src), self.by_dst.get(dst)
        if a is None and b is None:
            return self.always
        return list(heapq.merge(self.always, a or [], b or []))


# A net-keyed table: prefix length -> {network as int: is_nomatch}, longest prefix first.
_Nets = list[tuple[int, dict[int, bool]]]


def _add_net(nets: dict[int, dict[int, bool]], text: str, nomatch: bool) -> None:
    net = ipaddress.ip_network(text, strict=False)
    nets.setdefault(net.prefixlen, {})[int(net.network_address)] = nomatch


def _freeze(nets: dict[int, dict[int, bool]]) -> _Nets:
    return sorted(nets.items(), key=lambda kv: -kv[0])


def _lookup(nets: _Nets, addr: _IP) -> bool | None:
    """True (match), False (nomatch) or None (no entry): the most specific prefix decides."""
    value, bits = int(addr), addr.max_prefixlen
    for plen, table in nets:
        hit = table.get(value >> (bits - plen) << (bits - plen))
        if hit is not None:
            return not hit
    return None


class SetIndex:
    """One ipset, indexed for lookups of packet keys."""

    def __init__(self, ipset: IPSet) -> None:
        self.type = ipset.type
        self.plain: frozenset[str] = frozenset()
        self.nets: _Nets = []
        # first address (host) -> port ("" for none) -> nets of the last dimension
        self.product: dict[int, dict[str, _Nets]] = {}
        self.first_prefixes: set[int] = set()
        if ipset.type in (SetType.HASH_IP, SetType.HASH_IP_PORT):
            self.plain = frozenset(entry_key(m) for m in ipset.members)
            return
        entries = [(entry_key(m), False) for m in ipset.members]
        entries += [(m, True) for m in ipset.nomatch]
        if ipset.type is SetType.HASH_NET:
            flat: dict[int, dict[int, bool]] = {}
            for text, nomatch in entries:
                _add_net(flat, text, nomatch)
            self.nets = _freeze(flat)
            return
        groups: dict[tuple[int, int, str], dict[int, dict[int, bool]]] = {}
        for text, nomatch in entries:
            parts = text.split(",")
            first = ipaddress.ip_network(parts[0], strict=False)
            port = parts[1] if len(parts) == 3 else ""
            key = (first.prefixlen, int(first.network_address), port)
            _add_net(groups.setdefault(key, {}), parts[-1], nomatch)
        for (plen, value, port), nets in groups.items():
            self.first_prefixes.add(plen)
            self.product.setdefault((plen << 200) | value, {})[port] = _freeze(nets)

    def match(self, flags: str, packet: Packet) -> bool:
        """`-m set --match-set NAME FLAGS` for this packet (FLAGS: src/dst per dimension)."""
        ways = flags.split(",")
        addr = ipaddress.ip_address(packet.src if ways[0] == "src" else packet.dst)
        if self.type is SetType.HASH_IP:
            return str(addr) in self.plain
        if self.type is SetType.HASH_IP_PORT:
            return f"{addr},{_port(packet)}" in self.plain
        if self.type is SetType.HASH_NET:
            return _lookup(self.nets, addr) is True
        last = ipaddress.ip_address(packet.src if ways[-1] == "src" else packet.dst)
        if last.version != addr.version:
            return False
        port = _port(packet)
        bits = addr.max_prefixlen
        # most specific first dimension first, then the last dimension's prefixes
        for plen in sorted(self.first_prefixes, reverse=True):
            value = int(addr) >> (bits - plen) << (bits - plen)
            group = self.product.get((plen << 200) | value)
            if group is None:
                continue
            nets = group.get(port)
            if nets is None:
                continue
            hit = _lookup(nets, last)
            if hit is not None:
                return hit
        return False


def _port(packet: Packet) -> str:
    return f"{packet.protocol.value.lower()}:{packet.dport}"


class TableIndex:
    """Chains by name plus, built on first use, a per-chain rule index and set indexes."""

    def __init__(self, table: Table) -> None:
        self.chains: dict[str, Chain] = table.by_name()
        self._index: dict[str, _ChainIndex] = {}
        self._sets: dict[str, tuple[IPSet, SetIndex]] = {}

    def candidates(self, chain: Chain, src: str, dst: str) -> list[int]:
        """0-based positions of the rules of `chain` that src -> dst may match, in order."""
        index = self._index.get(chain.name)
        if index is None:
            index = _ChainIndex()
            for i, rule in enumerate(chain.rules):
                if rule.src is not None and rule.src.endswith(_HOST):
                    index.by_src.setdefault(rule.src.rpartition("/")[0], []).append(i)
                elif rule.dst is not None and rule.dst.endswith(_HOST):
                    index.by_dst.setdefault(rule.dst.rpartition("/")[0], []).append(i)
                else:
                    index.always.append(i)
            self._index[chain.name] = index
        return index.candidates(src, dst)

    def set_match(self, ruleset: Ruleset, name: str, flags: str, packet: Packet) -> bool | None:
        """Does the packet match set `name` with `flags`? None when the set is missing."""
        ipset = ruleset.sets.get(name)
        if ipset is None:
            return None
        hit = self._sets.get(name)
        if hit is None or hit[0] is not ipset:
            hit = (ipset, SetIndex(ipset))
            self._sets[name] = hit
        return hit[1].match(flags, packet)

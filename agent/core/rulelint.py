"""Structural checks of a ruleset, before it goes anywhere near a kernel.

The kernel rejects some mistakes (a jump to a missing chain, a missing set) and
silently accepts others (an orphan chain nobody jumps to, an empty chain that
makes a jump pointless, a set of the wrong family that never matches). Tests
run `lint` on every compiled ruleset; the applier may run it as a last guard.
"""

from __future__ import annotations

import ipaddress

from agent.core import naming
from agent.core.model import Family
from agent.core.ruleset import COMMENT, Ruleset, SetType, TargetKind, entry_key


def lint(ruleset: Ruleset) -> list[str]:
    """Every structural problem found, as readable lines; [] when the ruleset is sound."""
    problems: list[str] = []
    used_sets: set[str] = set()
    for family, table in sorted(ruleset.tables.items()):
        where = f"v{int(family)}"
        chains = table.by_name()
        if len(chains) != len(table.chains):
            problems.append(f"{where}: duplicate chain names")
        referenced: set[str] = set()
        for hook in table.hooks:
            referenced.add(hook.chain)
            if hook.chain not in chains:
                problems.append(f"{where}: {hook.builtin} jumps to missing chain {hook.chain}")
        for chain in table.chains:
            if not naming.owned_chain(chain.name) or len(chain.name) > naming.MAX_CHAIN:
                problems.append(f"{where}: chain name {chain.name!r} not owned or too long")
            for i, rule in enumerate(chain.rules, start=1):
                at = f"{where} {chain.name}#{i}"
                if len(rule.comment) > naming.MAX_COMMENT or naming.comment(rule.comment) != (
                    rule.comment
                ):
                    problems.append(f"{at}: comment {rule.comment!r} not sanitised")
                if rule.dport is not None and rule.protocol is None:
                    problems.append(f"{at}: a port without a protocol")
                if rule.icmpv6_type is not None and (family is not Family.V6 or rule.protocol):
                    problems.append(f"{at}: an ICMPv6 match outside IPv6 or with a protocol")
                for addr in (rule.src, rule.dst):
                    if addr is not None and ipaddress.ip_network(addr).version != int(family):
                        problems.append(f"{at}: address {addr} of the wrong family")
                t = rule.target
                if t.kind is TargetKind.JUMP:
                    referenced.add(t.chain)
                    target = chains.get(t.chain)
                    if target is None:
                        problems.append(f"{at}: jump to missing chain {t.chain}")
                    elif not target.rules:
                        problems.append(f"{at}: jump to empty chain {t.chain}")
                for s in rule.sets:
                    used_sets.add(s.name)
                    ipset = ruleset.sets.get(s.name)
                    if ipset is None:
                        problems.append(f"{at}: reference to missing set {s.name}")
                    elif ipset.family is not family:
                        problems.append(f"{at}: set {s.name} is v{int(ipset.family)}")
                    elif len(s.direction.split(",")) != len(ipset.type.dimensions) or not set(
                        s.direction.split(",")
                    ) <= {"src", "dst"}:
                        problems.append(f"{at}: flags {s.direction} do not fit {ipset.type.value}")
                    elif ipset.type is SetType.HASH_IP_PORT and rule.protocol is None:
                        problems.append(f"{at}: an IP,port set without a protocol")
        for name in sorted(set(chains) - referenced):
            problems.append(f"{where}: orphan chain {name} (nothing jumps to it)")
    for name, ipset in sorted(ruleset.sets.items()):
        if name != ipset.name:
            problems.append(f"set {name}: keyed under another name {ipset.name}")
        if not naming.owned_set(name) or len(name) > naming.MAX_SET:
            problems.append(f"set name {name!r} not owned or too long")
        if name not in used_sets:
            problems.append(f"set {name}: no rule uses it")
        if ipset.nomatch and ipset.type is SetType.HASH_IP:
            problems.append(f"set {name}: nomatch entries need a net type")
        if any(COMMENT in m for m in ipset.members) and not ipset.counters:
            problems.append(f"set {name}: entry comments need a set created with comment")
        for entry in (*ipset.members, *ipset.nomatch):
            problems += _entry_problems(name, ipset.type, ipset.family, entry_key(entry))
    return problems


def _entry_problems(name: str, kind: SetType, family: Family, entry: str) -> list[str]:
    parts = entry.split(",")
    if len(parts) != len(kind.dimensions):
        return [f"set {name}: entry {entry} does not fit {kind.value}"]
    out: list[str] = []
    for part, dim in zip(parts, kind.dimensions, strict=True):
        if dim == "port":
            proto, _, port = part.partition(":")
            if proto not in ("tcp", "udp", "sctp") or not port.isdigit():
                out.append(f"set {name}: entry {entry} has no proto:port")
            continue
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            out.append(f"set {name}: entry {entry}: {part} is not an address")
            continue
        if net.version != int(family):
            out.append(f"set {name}: entry {entry} of the wrong family")
        elif net.prefixlen == 0:
            out.append(f"set {name}: hash:net types cannot hold /0 ({entry})")
        elif kind in (SetType.HASH_IP, SetType.HASH_IP_PORT) and net.prefixlen != (
            net.max_prefixlen
        ):
            out.append(f"set {name}: {kind.value} entry {entry} is a network")
    return out

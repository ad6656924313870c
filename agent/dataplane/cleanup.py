"""Remove every chain, rule and ipset we own, and nothing else (`netpol-agent cleanup`).

Ours means: chains named `NPA-*` in any table, rules in other chains that jump
or go to an `NPA-*` chain or match an `npa-*` set, and ipsets named `npa-*`.
Here reading the whole ruleset back is fine (this is not the hot path). Per
family and table one `iptables-restore --noflush` deletes the foreign chains'
references, flushes our chains and deletes them, atomically; sets go last, when
nothing refers to them any more.

    cleanup(backends) -> CleanupReport
    owned_in_save(save_text) -> {table: Owned}   what cleanup would remove (pure)
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.core.errors import ApplyError
from agent.core.model import Family
from agent.dataplane.backend import Backend
from agent.dataplane.executor import Executor, ipset_restore, read_command

CHAIN_PREFIX = "NPA-"
SET_PREFIX = "npa-"


@dataclass(slots=True)
class Owned:
    """In one table: our chains and the rules elsewhere that refer to ours."""

    chains: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # "-A CHAIN ..." lines of foreign chains


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What cleanup removed; `kept_sets` are ours but still used by rules it did not clean."""

    chains: int
    rules: int
    sets: int
    kept_sets: tuple[str, ...] = ()


def _refers_to_ours(tokens: list[str]) -> bool:
    for i, token in enumerate(tokens[:-1]):
        nxt = tokens[i + 1]
        if token in ("-j", "--jump", "-g", "--goto") and nxt.startswith(CHAIN_PREFIX):
            return True
        if token == "--match-set" and nxt.startswith(SET_PREFIX):
            return True
    return False


def owned_in_save(save_text: str) -> dict[str, Owned]:
    """Parse `iptables-save` output into what we own, per table (tables with nothing omitted)."""
    result: dict[str, Owned] = {}
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            chain = line[1:].split()[0]
            if chain.startswith(CHAIN_PREFIX):
                result.setdefault(table, Owned()).chains.append(chain)
        elif line.startswith("-A "):
            tokens = shlex.split(line)
            if not tokens[1].startswith(CHAIN_PREFIX) and _refers_to_ours(tokens):
                result.setdefault(table, Owned()).references.append(line)
    return result


def removal_payload(owned: dict[str, Owned]) -> str:
    """One iptables-restore --noflush payload removing `owned` (empty if nothing)."""
    lines: list[str] = []
    for table, what in owned.items():
        lines.append(f"*{table}")
        lines.extend("-D" + ref[2:] for ref in what.references)
        lines.extend(f":{chain} - [0:0]" for chain in what.chains)
        lines.extend(f"-X {chain}" for chain in what.chains)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n" if lines else ""


def owned_sets() -> list[str]:
    names = read_command(["ipset", "list", "-n"]).split()
    return sorted(name for name in names if name.startswith(SET_PREFIX))


def cleanup(backends: Iterable[Backend]) -> CleanupReport:
    """Remove what we own from the given iptables variants (both families), then our sets."""
    chains = rules = 0
    for backend in backends:
        executor = Executor(backend)
        for family in (Family.V4, Family.V6):
            owned = owned_in_save(read_command([backend.save(family)]))
            chains += sum(len(o.chains) for o in owned.values())
            rules += sum(len(o.references) for o in owned.values())
            executor.iptables(family, removal_payload(owned))
    names = owned_sets()
    destroyed: list[str] = []
    kept: list[str] = []
    try:
        ipset_restore("".join(f"destroy {name}\n" for name in names))
        destroyed = names
    except ApplyError:  # some set is still referenced: go one by one, keep those
        for name in owned_sets():
            try:
                ipset_restore(f"destroy {name}\n")
            except ApplyError:  # e.g. used by the other iptables variant's rules
                kept.append(name)
        destroyed = [n for n in names if n not in kept]
    return CleanupReport(chains=chains, rules=rules, sets=len(destroyed), kept_sets=tuple(kept))

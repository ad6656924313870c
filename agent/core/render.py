"""plan(previous, desired): the kernel text that turns one applied ruleset into the next.

A plan has three steps, run in this order by the dataplane:

1. `ipset_before` (`ipset restore`): new sets are created and filled completely
   (a set that may already be in the kernel is filled under a scratch name and
   swapped in), changed sets get `del`/`add` of the differing members. No rule
   ever sees a half-filled set: rules that reference a set only arrive in step 2.
2. `iptables[family]` (`iptables-restore --noflush --wait`, one per family):
   declares (and so flushes) only the chains whose body changed (compared rule
   by rule with the previous ruleset), rewrites them, flushes stale chains and
   finally deletes them (`-X`). Hook lines (the jumps
   at position 1 of FORWARD/INPUT/OUTPUT) depend on what the built-in chains
   hold now; `Plan.payload(family, builtin_rules)` merges them in.
3. `ipset_after`: `destroy` for sets no rule references any more.

`previous=None` gives a full plan: every chain and set is written; pass the
names of our chains and sets the kernel holds (`kernel_chains`, `kernel_sets`)
so that leftovers of an earlier run are collected too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.core import naming
from agent.core.model import Family
from agent.core.patch import chain_patch
from agent.core.ruleset import Chain, Hook, IPSet, Ruleset, entry_key, entry_sort_key


@dataclass(frozen=True, slots=True)
class Counts:
    chains_written: int = 0
    rules_written: int = 0
    chains_deleted: int = 0
    sets_created: int = 0
    sets_updated: int = 0
    set_entries_added: int = 0
    set_entries_removed: int = 0
    sets_destroyed: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    full: bool
    ipset_before: str
    iptables: Mapping[Family, str]  # "" when nothing in that family's chains changed
    ipset_after: str
    hooks: Mapping[Family, tuple[Hook, ...]] = field(default_factory=dict)
    counts: Counts = Counts()

    @property
    def empty(self) -> bool:
        return not (self.ipset_before or self.ipset_after or any(self.iptables.values()))

    def payload(self, family: Family, builtin_rules: Mapping[str, Sequence[str]]) -> str:
        """The restore payload for `family` with the hooks re-asserted at position 1.

        `builtin_rules` maps FORWARD/INPUT/OUTPUT to their current `iptables -S CHAIN`
        lines. Returns "" when there is nothing to do.
        """
        fixes = [
            line
            for hook in self.hooks.get(family, ())
            for line in hook_lines(hook, builtin_rules.get(hook.builtin, ()))
        ]
        body = self.iptables.get(family, "")
        if not fixes:
            return body
        if not body:
            return "\n".join(["*filter", *fixes, "COMMIT"]) + "\n"
        head, _, _ = body.rpartition("COMMIT\n")
        tail = [line for line in head.splitlines() if line.startswith("-X ")]
        keep = [line for line in head.splitlines() if not line.startswith("-X ")]
        return "\n".join([*keep, *fixes, *tail, "COMMIT"]) + "\n"


def narrows(the_plan: Plan, gates: Iterable[str]) -> bool:
    """May this plan take away something that was allowed? Conservative: any rule
    written or deleted, any set entry removed, any pod newly isolated (added to a
    gate set `gates`), any full plan. Then the fast path must be revoked."""
    if the_plan.full or any(the_plan.iptables.values()) or the_plan.ipset_after:
        return True
    gate_adds = tuple(f"add {g} " for g in gates)
    for line in the_plan.ipset_before.splitlines():
        if line.startswith(("del ", "swap ", "destroy ")) or line.startswith(gate_adds):
            return True
    return False


def hook_lines(hook: Hook, current: Sequence[str]) -> list[str]:
    """Restore lines that leave exactly one `hook` jump, at position 1 of its chain.

    `current` is `iptables -S <builtin>` output (policy line `-P ...` ignored).
    """
    wanted = hook.rule().render(hook.builtin)
    rules = [line.strip() for line in current if line.startswith(f"-A {hook.builtin} ")]
    ours = [line for line in rules if line.split()[-2:] == ["-j", hook.chain]]
    if rules and rules[0] == wanted and len(ours) == 1:
        return []
    out = ["-D " + line[len("-A ") :] for line in ours]
    out.append(f"-I {hook.builtin} 1 {hook.rule().spec()}")
    return out


def chain_digest(chain: Chain) -> str:
    """A hash of a chain's body, for comparing with what the kernel holds."""
    h = hashlib.sha256()
    for line in chain.render():
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def plan(
    previous: Ruleset | None,
    desired: Ruleset,
    *,
    kernel_chains: Mapping[Family, Iterable[str]] | None = None,
    kernel_sets: Iterable[str] | None = None,
    patch_chains: bool = False,
) -> Plan:
    """The plan from `previous` to `desired`; `patch_chains` lets a chain that changed
    a little be patched in place (`agent.core.patch`) rather than rewritten."""
    counts: dict[str, int] = dict.fromkeys(Counts.__dataclass_fields__, 0)
    before, after = _plan_sets(previous, desired, kernel_sets, counts)
    iptables: dict[Family, str] = {}
    for family, table in desired.tables.items():
        if previous is None:
            old: dict[str, Chain | None] = dict.fromkeys(
                (kernel_chains or {}).get(family, ()), None
            )
        else:
            old = {c.name: c for c in previous.table(family).chains}
        iptables[family] = _plan_chains(
            table.chains, old, counts, full=previous is None, patch=patch_chains
        )
    if previous is not None:  # a family we no longer manage: remove all its chains
        for family, table in previous.tables.items():
            if family not in desired.tables:
                old = dict.fromkeys((c.name for c in table.chains), None)
                iptables[family] = _plan_chains((), old, counts, full=False)
    hooks = {f: t.hooks for f, t in desired.tables.items()}
    return Plan(
        full=previous is None,
        ipset_before=before,
        iptables=iptables,
        ipset_after=after,
        hooks=hooks,
        counts=Counts(**counts),
    )


def _plan_chains(
    chains: Sequence[Chain],
    old: Mapping[str, Chain | None],
    counts: dict[str, int],
    *,
    full: bool,
    patch: bool = False,
) -> str:
    wanted = {c.name: c for c in chains}
    write = sorted((c for c in chains if full or old.get(c.name) != c), key=lambda c: c.name)
    stale = sorted(n for n in old if n not in wanted and naming.owned_chain(n))
    patches: list[str] = []
    if patch and not full:
        rewrite = []
        for c in write:
            prev = old.get(c.name)
            lines_for_c = chain_patch(prev, c) if prev is not None else None
            if lines_for_c is None:
                rewrite.append(c)
                continue
            patches += lines_for_c
            counts["chains_written"] += 1
            counts["rules_written"] += sum(1 for line in lines_for_c if line.startswith("-I "))
        write = rewrite
    if not write and not stale and not patches:
        return ""
    lines = ["*filter"]
    lines += [f":{c.name} - [0:0]" for c in write]
    lines += [f":{n} - [0:0]" for n in stale]
    for c in write:
        lines += c.render()
    lines += patches  # after the new chains exist, before stale ones are deleted
    lines += [f"-X {n}" for n in stale]
    lines.append("COMMIT")
    counts["chains_written"] += len(write)
    counts["rules_written"] += sum(len(c.rules) for c in write)
    counts["chains_deleted"] += len(stale)
    return "\n".join(lines) + "\n"


def _plan_sets(
    previous: Ruleset | None,
    desired: Ruleset,
    kernel_sets: Iterable[str] | None,
    counts: dict[str, int],
) -> tuple[str, str]:
    before: list[str] = []
    in_kernel = {n for n in (kernel_sets or ()) if naming.owned_set(n)}
    old: Mapping[str, IPSet] = previous.sets if previous is not None else {}
    for name in sorted(desired.sets):
        new = desired.sets[name]
        prev = old.get(name)
        if prev is new:
            continue  # the incremental compiler hands unchanged sets back as the same object
        if prev is not None:
            delta = _delta(prev, new, counts)
            if delta:
                before += delta
                counts["sets_updated"] += 1
            continue
        counts["sets_created"] += 1
        counts["set_entries_added"] += len(new.members) + len(new.nomatch)
        if name not in in_kernel:
            before.append(new.create_line())  # brand new: create, then fill
            before += new.add_lines()
            continue
        tmp = naming.temp_set_name(name)  # already there: fill a scratch copy, swap it in
        if tmp in in_kernel:
            before.append(f"destroy {tmp}")
            in_kernel.discard(tmp)
        before.append(new.create_line(tmp))
        before += new.add_lines(tmp)
        before += [f"swap {tmp} {name}", f"destroy {tmp}"]
    stale = (set(old) | in_kernel) - set(desired.sets)
    counts["sets_destroyed"] += len(stale)
    after = [f"destroy {n}" for n in sorted(stale)]
    return _text(before), _text(after)


def _delta(prev: IPSet, new: IPSet, counts: dict[str, int]) -> list[str]:
    """del/add lines turning prev's members into new's (dels first: a flag change is both)."""
    if prev.members == new.members and prev.nomatch == new.nomatch:
        return []
    gone = [(m, False) for m in prev.members - new.members]
    gone += [(m, True) for m in prev.nomatch - new.nomatch]
    came = [(m, False) for m in new.members - prev.members]
    came += [(m, True) for m in new.nomatch - prev.nomatch]
    gone.sort(key=_entry_key)
    came.sort(key=_entry_key)
    counts["set_entries_removed"] += len(gone)
    counts["set_entries_added"] += len(came)
    out = [f"del {new.name} {entry_key(e)}" for e, _ in gone]
    out += [f"add {new.name} {e}{' nomatch' if nm else ''}" for e, nm in came]
    return out


def _entry_key(entry: tuple[str, bool]) -> tuple[tuple[int, ...], bool]:
    return (entry_sort_key(entry[0]), entry[1])


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""

"""chain_patch: turn one chain into another with a few `-D`/`-I` lines instead of a rewrite.

Declaring a chain in an `iptables-restore --noflush` payload flushes it, so a
changed chain is normally written out whole. The top chains and the drop
chains hold a rule per isolated local pod: when one local pod gains or loses
isolation, rewriting them means hundreds of rules (and the drop counters of
every other pod start from zero) for a change of two or three. A patch
deletes the rules that went (by their full spec: `-D CHAIN spec`) and inserts
the new ones at their final positions (`-I CHAIN n spec`, in increasing n),
keeping everything else in place. Both iptables-restore and the
python-iptables executor understand these lines. If the kernel's chain is
not what we applied, a `-D` finds no rule and the restore fails: the Applier
then forces a full apply, as after any failure.
"""

from __future__ import annotations

from difflib import SequenceMatcher

from agent.core.ruleset import Chain

MAX_FRACTION = 0.25  # patch only when at most this share of the new chain changes


def chain_patch(old: Chain, new: Chain) -> list[str] | None:
    """Restore lines turning `old` into `new` in place; None when a rewrite is better.

    Needs the old chain's rules to be distinct (`-D` removes the first rule
    matching a spec, which must be the one meant).
    """
    before = [r.spec() for r in old.rules]
    after = [r.spec() for r in new.rules]
    if not after or len(set(before)) != len(before):
        return None
    ops = SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    gone = [
        before[i]
        for tag, i1, i2, _, _ in ops
        if tag in ("delete", "replace")
        for i in range(i1, i2)
    ]
    came = [
        (j, after[j])
        for tag, _, _, j1, j2 in ops
        if tag in ("insert", "replace")
        for j in range(j1, j2)
    ]
    if len(gone) + len(came) > MAX_FRACTION * len(after):
        return None
    return [f"-D {new.name} {spec}" for spec in gone] + [
        f"-I {new.name} {j + 1} {spec}" for j, spec in came
    ]

"""chain_patch: the -D/-I lines, run the way iptables runs them, give exactly the new chain.

A tiny model of a kernel chain (a list of rule specs; `-D` removes the first
equal rule, `-I n` inserts before position n, failing like iptables when the
rule or position does not exist) replays the patch; hypothesis generates
chains. Also: plan(..., patch_chains=True) patches a big top chain and still
rewrites small or mostly-changed ones.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.model import Family
from agent.core.patch import chain_patch
from agent.core.render import plan
from agent.core.ruleset import ACCEPT, Chain, Rule, Ruleset, Table, jump


def _rule(n: int) -> Rule:
    return Rule(jump(f"NPA-I-{n}"), comment=f"pod {n}", dst=f"10.244.0.{n}/32")


def replay(chain: list[str], name: str, lines: list[str]) -> list[str]:
    out = list(chain)
    for line in lines:
        op, target, rest = line.split(" ", 2)
        assert target == name
        if op == "-D":
            out.remove(rest)  # ValueError, like iptables' "Bad rule", if it is not there
        else:
            pos, _, spec = rest.partition(" ")
            assert op == "-I" and 1 <= int(pos) <= len(out) + 1
            out.insert(int(pos) - 1, spec)
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 60), unique=True, max_size=40),
    st.lists(st.integers(0, 60), max_size=40),
)
def test_patch_replayed_gives_the_new_chain(old: list[int], new: list[int]) -> None:
    before = Chain("NPA-FORWARD", tuple(_rule(n) for n in old))
    after = Chain("NPA-FORWARD", tuple(_rule(n) for n in new))
    lines = chain_patch(before, after)
    if lines is None:
        return
    got = replay([r.spec() for r in before.rules], "NPA-FORWARD", lines)
    assert got == [r.spec() for r in after.rules]


def test_small_change_is_a_patch_big_change_or_duplicates_are_not() -> None:
    old = Chain("C", tuple(_rule(n) for n in range(40)))
    new = Chain("C", tuple(_rule(n) for n in range(40) if n != 7))
    assert chain_patch(old, new) == [f"-D C {_rule(7).spec()}"]
    assert chain_patch(old, Chain("C", tuple(_rule(n) for n in range(20, 60)))) is None
    dup = Chain("C", (*old.rules, old.rules[0]))
    assert chain_patch(dup, new) is None
    assert chain_patch(old, Chain("C")) is None


def test_plan_patches_big_chains_and_rewrites_the_rest() -> None:
    top = Chain("NPA-FORWARD", (*(_rule(n) for n in range(40)), Rule(ACCEPT, comment="allowed")))
    small = Chain("NPA-I-1", (Rule(ACCEPT, comment="one"),))
    before = Ruleset(tables={Family.V4: Table(Family.V4, chains=(top, small))})
    top2 = replace(top, rules=tuple(r for r in top.rules if r != _rule(3)))
    small2 = replace(small, rules=(Rule(ACCEPT, comment="two"),))
    after = Ruleset(tables={Family.V4: Table(Family.V4, chains=(top2, small2))})
    patched = plan(before, after, patch_chains=True).iptables[Family.V4].splitlines()
    assert patched == [
        "*filter",
        ":NPA-I-1 - [0:0]",
        "-A NPA-I-1 -m comment --comment two -j ACCEPT",
        f"-D NPA-FORWARD {_rule(3).spec()}",
        "COMMIT",
    ]
    plain = plan(before, after).iptables[Family.V4]
    assert ":NPA-FORWARD - [0:0]" in plain  # without the option: rewritten, as before

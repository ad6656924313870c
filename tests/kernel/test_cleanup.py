"""`cleanup` removes exactly what we own: the ruleset is as it was before the agent came."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.core.model import Family
from agent.dataplane.backend import Backend
from agent.dataplane.cleanup import cleanup, owned_in_save
from agent.sandbox import netns
from agent.sandbox.setns import inside
from tests.kernel.kit import BACKEND_NAMES, FAMILIES, executor, foreign_rules, ipset_names, saved

pytestmark = pytest.mark.kernel


def ours(family: Family) -> tuple[str, str]:
    v = "4" if family is Family.V4 else "6"
    fam = "inet" if family is Family.V4 else "inet6"
    sets = f"create npa-set-{v} hash:ip family {fam}\ncreate npa-net-{v} hash:net family {fam}\n"
    payload = f"""*filter
:NPA-FORWARD - [0:0]
:NPA-INPUT - [0:0]
:NPA-POD-X - [0:0]
-I FORWARD 1 -m comment --comment "netpol-agent" -j NPA-FORWARD
-I INPUT 1 -j NPA-INPUT
-A KUBE-FORWARD -m set --match-set npa-net-{v} src -j ACCEPT
-A NPA-FORWARD -m set --match-set npa-set-{v} dst -g NPA-POD-X
-A NPA-INPUT -j NPA-POD-X
-A NPA-POD-X -j DROP
COMMIT
*mangle
:NPA-MARK - [0:0]
-A PREROUTING -j NPA-MARK
COMMIT
"""
    return sets, payload


def test_owned_in_save_finds_chains_and_references() -> None:
    save = """*filter
:FORWARD ACCEPT [0:0]
:NPA-FORWARD - [0:0]
:KUBE-X - [0:0]
-A FORWARD -m comment --comment "a b" -j NPA-FORWARD
-A FORWARD -j KUBE-X
-A KUBE-X -m set --match-set npa-s src -j ACCEPT
-A KUBE-X -m set --match-set KUBE-S src -j ACCEPT
-A NPA-FORWARD -j ACCEPT
COMMIT
"""
    owned = owned_in_save(save)
    assert owned["filter"].chains == ["NPA-FORWARD"]
    assert owned["filter"].references == [
        '-A FORWARD -m comment --comment "a b" -j NPA-FORWARD',
        "-A KUBE-X -m set --match-set npa-s src -j ACCEPT",
    ]


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_cleanup_restores_the_ruleset_exactly(agent_ns: str, name: str) -> None:
    with inside(agent_ns):
        ex = executor(name)
        foreign_rules(ex.backend.mode)
        before = {f: saved(ex.backend.mode, f) for f in FAMILIES}
        sets_before = ipset_names()
        for family in FAMILIES:
            sets, payload = ours(family)
            ex.ipset(sets)
            ex.iptables(family, payload)
        assert saved(ex.backend.mode, Family.V6) != before[Family.V6]
        report = cleanup([ex.backend])
        assert (report.chains, report.rules, report.sets) == (8, 8, 4)
        assert {f: saved(ex.backend.mode, f) for f in FAMILIES} == before
        assert ipset_names() == sets_before == ["KUBE-foreign"]
        assert cleanup([ex.backend]) == type(report)(0, 0, 0, ())  # idempotent


def test_cleanup_command_cleans_both_variants(agent_ns: str) -> None:
    with inside(agent_ns):
        for mode in ("legacy", "nft"):
            foreign_rules(mode)
            ex = executor(mode)
            for family in FAMILIES:
                sets, payload = ours(family)
                ex.ipset(sets.replace("npa-", f"npa-{mode}-"))
                ex.iptables(family, payload.replace("npa-", f"npa-{mode}-"))
    netpol_agent = str(Path(sys.executable).with_name("netpol-agent"))
    out = netns.run(agent_ns, netpol_agent, "cleanup").stdout
    assert out.strip() == "removed 16 chains, 16 rules in other chains and 8 ipsets"
    with inside(agent_ns):
        for family in FAMILIES:
            for mode in ("legacy", "nft"):
                assert "NPA-" not in saved(mode, family)
        assert ipset_names() == ["KUBE-foreign"]


def test_cleanup_with_explicit_backend_leaves_the_other_variant(agent_ns: str) -> None:
    with inside(agent_ns):
        foreign_rules("legacy")
        sets, payload = ours(Family.V4)
        executor("legacy").ipset(sets)
        executor("legacy").iptables(Family.V4, payload)
        report = cleanup([Backend(name="nft", mode="nft")])
        assert report.chains == 0
        assert report.kept_sets == ("npa-net-4", "npa-set-4")
        assert "NPA-FORWARD" in saved("legacy", Family.V4)

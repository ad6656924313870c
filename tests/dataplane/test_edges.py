"""Edge cases of naming, options, sets and fail-closed compilation."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest

from agent.core import naming
from agent.core.compile import CompileOptions
from agent.core.errors import ConfigError, FieldError
from agent.core.flatten import block_cidrs
from agent.core.model import (
    Family,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Peer,
    PodPhase,
    Protocol,
    Rule,
)
from agent.core.render import plan
from agent.core.rulelint import lint
from agent.core.ruleset import IPSet, Ruleset, SetType
from agent.core.trace import Packet, trace
from tests.builders import sel
from tests.dataplane.cluster import PODS, compiled, policy, state

V4, V6 = Family.V4, Family.V6


def test_names_are_owned_short_and_stable() -> None:
    chain = naming.pod_chain("ingress", "uid-" + "x" * 300)
    assert chain.startswith("NPA-I-") and len(chain) <= naming.MAX_CHAIN
    assert naming.policy_chain("egress", "ns/p") == naming.policy_chain("egress", "ns/p")
    s = naming.set_name(naming.SET_SELECTOR, V6, "key")
    assert s.startswith("npa-s6-") and len(s) <= naming.MAX_SET
    assert len(naming.temp_set_name(s)) <= naming.MAX_SET and naming.temp_set_name(s) != s


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("x/allow-web", "x/allow-web"),
        ('evil" -j ACCEPT', "evil_ -j ACCEPT"),
        ("new\nline\ttab", "new line tab"),
        ("back\\slash 'quote' `tick` $x é", "back_slash _quote_ _tick_ _x _"),
        ("a" * 400, "a" * 255),
    ],
)
def test_comments_are_sanitised(raw: str, clean: str) -> None:
    assert naming.comment(raw) == clean


def test_selector_keys_ignore_order() -> None:
    a = LabelSelector((("a", "1"), ("b", "2")))
    b = LabelSelector((("b", "2"), ("a", "1")))
    assert naming.selector_key(a) == naming.selector_key(b)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (CompileOptions(mark_bit=14), "kube-proxy"),
        (CompileOptions(mark_bit=15), "kube-proxy"),
        (CompileOptions(mark_bit=32), "0..31"),
        (CompileOptions(drop_action="log"), "drop or reject"),
        (CompileOptions(allow_cidrs=("10.0.0.0/33",)), "not a CIDR"),
        (CompileOptions(families=()), "families"),
    ],
)
def test_bad_options_are_reported(options: CompileOptions, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        options.validate()


def test_all_problems_reported_at_once() -> None:
    assert len(CompileOptions(mark_bit=14, drop_action="x").problems()) == 2


def _block_policy(cidr: str, *excepts: str) -> NetworkPolicy:
    return policy(
        "x/block",
        {
            "podSelector": sel("pod=a"),
            "ingress": [{"from": [{"ipBlock": {"cidr": cidr, "except": list(excepts)}}]}],
        },
    )


def test_a_block_minus_its_excepts_is_cut_exactly_and_slash_zero_split() -> None:
    rs = compiled(state(_block_policy("0.0.0.0/0", "0.0.0.0/1", "192.0.2.0/24")))
    # no ports: a pair rule with the block's own set (its excepts as nomatch)
    (block,) = [s for s in rs.sets.values() if s.description.startswith("ipBlock")]
    assert block.members == {"128.0.0.0/1"}
    assert block.nomatch == {"0.0.0.0/1", "192.0.2.0/24"}
    assert lint(rs) == []
    assert block_cidrs("0.0.0.0/0", (), V4) == ("0.0.0.0/1", "128.0.0.0/1")
    cut = [ip_network(c) for c in block_cidrs("10.0.0.0/8", ("10.0.0.0/9", "10.200.0.1"), V4)]
    assert sum(n.num_addresses for n in cut) == 2**23 - 1
    assert not any(n.overlaps(ip_network("10.0.0.0/9")) for n in cut)
    assert not any(ip_address("10.200.0.1") in n for n in cut)
    for src, verdict in (("10.0.0.1", "DROP"), ("192.0.2.1", "DROP"), ("198.51.100.1", "ACCEPT")):
        got = trace(rs, Packet(src, "10.244.0.10", Protocol.TCP, 80))
        assert got.verdict == verdict, got


def test_an_except_covering_the_whole_block_matches_nothing() -> None:
    swallowed = NetworkPolicy(
        "x",
        "swallow",
        pod_selector=sel_model("a"),
        ingress=(Rule(peers=(Peer(ip_block=IPBlock("10.1.0.0/16", ("10.0.0.0/8",))),)),),
    )
    rs = compiled(state(swallowed))
    assert not any(c.name.startswith("NPA-PI-") for c in rs.table(V4).chains)
    assert lint(rs) == []


def sel_model(value: str) -> LabelSelector:
    return LabelSelector((("pod", value),))


def test_invalid_policy_isolates_and_allows_nothing() -> None:
    bad = replace(
        policy("x/bad", {"podSelector": sel("pod=a"), "ingress": [{}]}),
        errors=(FieldError("x/bad", "spec.ingress[0]", "made up"),),
    )
    rs = compiled(state(bad))
    assert lint(rs) == []
    result = trace(rs, Packet("10.244.0.11", "10.244.0.10", Protocol.TCP, 80))
    assert result.verdict == "DROP", str(result)
    assert not any(c.name.startswith("NPA-PI-") for c in rs.table(V4).chains)


def test_pods_that_are_not_networked_are_neither_targets_nor_peers() -> None:
    pods = dict(PODS)
    pods["x/b"] = replace(pods["x/b"], phase=PodPhase.SUCCEEDED)
    pods["x/c"] = replace(pods["x/c"], host_network=True)
    pods["x/a"] = replace(pods["x/a"], ips=())
    deny = policy("x/deny", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    rs = compiled(state(deny, pod_list=pods))
    members = {m for s in rs.sets.values() if s.type is SetType.HASH_IP for m in s.members}
    assert members == set()  # x has no networked pod left on any node
    assert not any(c.name.startswith("NPA-I-") for c in rs.table(V4).chains)


def test_delta_of_a_nomatch_flip_deletes_before_adding() -> None:
    old = IPSet(
        "npa-b4-x", SetType.HASH_NET, V4, frozenset({"10.0.0.0/8"}), frozenset({"10.1.0.0/16"})
    )
    new = replace(old, members=frozenset({"10.0.0.0/8", "10.1.0.0/16"}), nomatch=frozenset())
    p = plan(Ruleset(sets={old.name: old}), Ruleset(sets={new.name: new}))
    assert p.ipset_before == "del npa-b4-x 10.1.0.0/16\nadd npa-b4-x 10.1.0.0/16\n"


def test_a_family_no_longer_managed_is_removed() -> None:
    both = compiled(state(policy("x/deny", {"podSelector": {}})), families=(V4, V6))
    only4 = compiled(state(policy("x/deny", {"podSelector": {}})), families=(V4,))
    p = plan(both, only4)
    assert p.iptables[V4] == ""
    assert "-X NPA-FORWARD" in p.iptables[V6]
    assert all(name[5] == "6" for name in p.ipset_after.split()[1::2])


def test_named_port_entries_hold_every_number_the_peers_use() -> None:
    pods = dict(PODS)
    pods["y/c"] = replace(pods["y/c"], ports=(replace(pods["y/c"].ports[0], port=8080),))
    named = policy(
        "x/named",
        {
            "podSelector": sel("pod=a"),
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "serve-80-tcp"}]}],
        },
    )
    rs = compiled(state(named, pod_list=pods))
    (ports,) = [s for s in rs.sets.values() if s.description.startswith("egress allowed on a p")]
    assert "10.244.0.10,tcp:8080,10.244.1.11" in ports.members
    assert "10.244.0.10,tcp:80,10.244.1.12" in ports.members
    assert ports.lookup(("10.244.0.10", "tcp:8080", "10.244.1.11"))
    assert not ports.lookup(("10.244.0.10", "tcp:80", "10.244.1.11"))
    ok = trace(rs, Packet("10.244.0.10", "10.244.1.11", Protocol.TCP, 8080))
    no = trace(rs, Packet("10.244.0.10", "10.244.1.11", Protocol.TCP, 80))
    assert (ok.verdict, no.verdict) == ("ACCEPT", "DROP"), f"{ok}\n{no}"

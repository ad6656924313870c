"""Exact incremental payloads after each kind of change, and the full-plan mechanics.

Base cluster: tests/dataplane/cluster.py with one policy, x/allow: pods pod=a in x
accept TCP 80 from pod=b in x and from every pod of namespaces labelled team=blue.
Payloads are compared with hashed names replaced by readable symbols
(`NPA-I[x/a]`, `npa-s4[pods pod=b in namespace x]`, see symbols.py).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.core.model import ClusterState, Family, PolicyPort, Protocol
from agent.core.render import hook_lines, plan
from agent.core.ruleset import Hook
from tests.builders import labels, make_ns, sel
from tests.dataplane.cluster import PODS, compiled, policy, state
from tests.dataplane.symbols import assert_text, symbol_table, symbolize

V4 = Family.V4
ALLOW = policy(
    "x/allow",
    {
        "podSelector": sel("pod=a"),
        "ingress": [
            {
                "from": [{"podSelector": sel("pod=b")}, {"namespaceSelector": sel("team=blue")}],
                "ports": [{"port": 80}],
            }
        ],
    },
)
BASE = state(ALLOW)
SET_B = "npa-s4[pods pod=b in namespace x]"
SET_BLUE = "npa-s4[pods <all> in namespaces team=blue]"


def _plan_text(new: ClusterState, old: ClusterState = BASE) -> tuple[str, str, str]:
    a, b = compiled(old), compiled(new)
    p = plan(a, b)
    sym = symbol_table(old, a) | symbol_table(new, b)
    return (
        symbolize(p.ipset_before, sym),
        symbolize(p.iptables[V4], sym),
        symbolize(p.ipset_after, sym),
    )


def _with_pods(**changed: object) -> ClusterState:
    pods = dict(PODS)
    for key, pod in changed.items():
        key = key.replace("_", "/")
        if pod is None:
            del pods[key]
        else:
            pods[key] = pod  # type: ignore[assignment]
    return state(ALLOW, pod_list=pods)


SET_ONLY_CHANGES = {
    "remote pod relabelled into a peer set": (
        _with_pods(x_c=replace(PODS["x/c"], labels=labels("pod=b"))),
        f"add {SET_B} 10.244.1.10",
    ),
    "peer pod deleted": (_with_pods(x_b=None), f"del {SET_B} 10.244.0.11"),
    "peer pod re-addressed": (
        _with_pods(x_b=replace(PODS["x/b"], ips=("10.244.0.99",))),
        f"del {SET_B} 10.244.0.11\nadd {SET_B} 10.244.0.99",
    ),
    "peer pod added": (
        _with_pods(x_d=replace(PODS["x/b"], name="d", uid="uid-x-d", ips=("10.244.1.20",))),
        f"add {SET_B} 10.244.1.20",
    ),
    "namespace labelled": (
        replace(BASE, namespaces={**BASE.namespaces, "y": make_ns("y", "ns=y", "team=blue")}),
        f"add {SET_BLUE} 10.244.0.12\nadd {SET_BLUE} 10.244.0.13\nadd {SET_BLUE} 10.244.1.11",
    ),
}


@pytest.mark.parametrize("name", sorted(SET_ONLY_CHANGES))
def test_pod_and_namespace_churn_touches_sets_not_rules(name: str) -> None:
    new, expected = SET_ONLY_CHANGES[name]
    before, iptables, after = _plan_text(new)
    assert_text(expected, before, "ipset before")
    assert iptables == "", f"rules changed:\n{iptables}"
    assert after == ""


def test_policy_update_rewrites_only_its_chain() -> None:
    rule = replace(ALLOW.ingress[0], ports=(PolicyPort(Protocol.TCP, 81),))
    before, iptables, after = _plan_text(state(replace(ALLOW, ingress=(rule,))))
    mark = "-j MARK --set-xmark 0x200000/0x200000"
    assert_text(
        f"""
*filter
:NPA-PI[x/allow] - [0:0]
-A NPA-PI[x/allow] -p tcp -m comment --comment "x/allow ingress[0]" -m set --match-set {SET_B} src -m tcp --dport 81 {mark}
-A NPA-PI[x/allow] -p tcp -m comment --comment "x/allow ingress[0]" -m set --match-set {SET_BLUE} src -m tcp --dport 81 {mark}
COMMIT
""",
        iptables,
    )
    assert before == after == ""


def test_policy_add_declares_new_chains_and_rewrites_the_dispatch() -> None:
    deny = policy("x/deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    before, iptables, after = _plan_text(state(ALLOW, deny))
    unmarked = "-m mark ! --mark 0x200000/0x200000"
    assert_text(
        f"""
*filter
:NPA-DROP-EGRESS - [0:0]
:NPA-E[x/b] - [0:0]
:NPA-E[x/a] - [0:0]
:NPA-FORWARD - [0:0]
-A NPA-DROP-EGRESS -s 10.244.0.10/32 -m comment --comment "x/a" -j DROP
-A NPA-DROP-EGRESS -s 10.244.0.11/32 -m comment --comment "x/b" -j DROP
-A NPA-DROP-EGRESS -m comment --comment "no policy allows" -j DROP
-A NPA-E[x/b] -m comment --comment "x/b: no policy allows" {unmarked} -j NPA-DROP-EGRESS
-A NPA-E[x/a] -m comment --comment "x/a: no policy allows" {unmarked} -j NPA-DROP-EGRESS
-A NPA-FORWARD -m comment --comment "drop invalid" -m conntrack --ctstate INVALID -j DROP
-A NPA-FORWARD -m comment --comment established -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A NPA-FORWARD -m comment --comment "clear the netpol-agent mark" -j MARK --set-xmark 0x0/0x200000
-A NPA-FORWARD -s 10.244.0.10/32 -m comment --comment "x/a egress" -j NPA-E[x/a]
-A NPA-FORWARD -s 10.244.0.11/32 -m comment --comment "x/b egress" -j NPA-E[x/b]
-A NPA-FORWARD -d 10.244.0.10/32 -m comment --comment "x/a ingress" -j NPA-I[x/a]
-A NPA-FORWARD -m comment --comment "allowed by policy" -m mark --mark 0x200000/0x200000 -j ACCEPT
COMMIT
""",
        iptables,
    )
    assert before == after == ""


def test_policy_delete_unhooks_flushes_deletes_then_destroys_sets() -> None:
    before, iptables, after = _plan_text(state())
    assert_text(
        """
*filter
:NPA-FORWARD - [0:0]
:NPA-OUTPUT - [0:0]
:NPA-DROP-INGRESS - [0:0]
:NPA-I[x/a] - [0:0]
:NPA-PI[x/allow] - [0:0]
-A NPA-FORWARD -m comment --comment "drop invalid" -m conntrack --ctstate INVALID -j DROP
-A NPA-FORWARD -m comment --comment established -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A NPA-OUTPUT -m comment --comment established -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
-X NPA-DROP-INGRESS
-X NPA-I[x/a]
-X NPA-PI[x/allow]
COMMIT
""",
        iptables,
    )
    assert before == ""
    assert_text(
        f"""
destroy npa-n4[addresses of node node-0 (always allowed to its pods)]
destroy {SET_BLUE}
destroy {SET_B}
""",
        after,
    )


def test_a_local_pod_gaining_a_chain_changes_rules() -> None:
    _, iptables, _ = _plan_text(_with_pods(x_b=replace(PODS["x/b"], labels=labels("pod=a"))))
    assert ":NPA-I[x/b] - [0:0]" in iptables
    assert "-A NPA-FORWARD -d 10.244.0.11/32" in iptables


def test_new_sets_are_created_and_filled_before_any_rule_uses_them() -> None:
    p = plan(compiled(state()), compiled(BASE))
    lines = p.ipset_before.splitlines()
    for name in compiled(BASE).sets:
        create = lines.index(next(line for line in lines if line.startswith(f"create {name} ")))
        adds = [i for i, line in enumerate(lines) if line.startswith(f"add {name} ")]
        assert all(i > create for i in adds)
    assert p.ipset_after == ""


def test_full_plan_swaps_sets_the_kernel_already_has_and_collects_leftovers() -> None:
    rs = compiled(BASE)
    existing = sorted(rs.sets)[0]
    leftover_set = "npa-s4-leftoverfromanoldrun"
    p = plan(
        None,
        rs,
        kernel_chains={V4: ["NPA-FORWARD", "NPA-I-OLDPODCHAIN", "KUBE-FORWARD"]},
        kernel_sets=[existing, leftover_set, "kube-something"],
    )
    tmp = "npa-t" + existing[4:]
    lines = p.ipset_before.splitlines()
    assert lines.index(f"swap {tmp} {existing}") < lines.index(f"destroy {tmp}")
    assert f"create {existing} " not in p.ipset_before  # filled under the scratch name
    assert p.ipset_after == f"destroy {leftover_set}\n"
    payload = p.iptables[V4]
    assert ":NPA-I-OLDPODCHAIN - [0:0]" in payload and "-X NPA-I-OLDPODCHAIN" in payload
    assert "KUBE-FORWARD" not in payload
    assert p.counts.chains_deleted == 1


HOOK = Hook("FORWARD", "NPA-FORWARD")
JUMP = "-A FORWARD -m comment --comment netpol-agent -j NPA-FORWARD"


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (["-P FORWARD DROP", JUMP, "-A FORWARD -j KUBE-FORWARD"], []),
        (
            ["-P FORWARD ACCEPT"],
            ["-I FORWARD 1 -m comment --comment netpol-agent -j NPA-FORWARD"],
        ),
        (
            ["-P FORWARD ACCEPT", "-A FORWARD -j DOCKER-USER", JUMP],
            [
                "-D FORWARD -m comment --comment netpol-agent -j NPA-FORWARD",
                "-I FORWARD 1 -m comment --comment netpol-agent -j NPA-FORWARD",
            ],
        ),
        (
            [JUMP, JUMP],
            [
                "-D FORWARD -m comment --comment netpol-agent -j NPA-FORWARD",
                "-D FORWARD -m comment --comment netpol-agent -j NPA-FORWARD",
                "-I FORWARD 1 -m comment --comment netpol-agent -j NPA-FORWARD",
            ],
        ),
    ],
    ids=["in-place", "missing", "displaced", "duplicated"],
)
def test_hook_lines_leave_exactly_one_jump_at_position_1(
    current: list[str], expected: list[str]
) -> None:
    assert hook_lines(HOOK, current) == expected


def test_payload_merges_hook_fixes_before_chain_deletion() -> None:
    p = plan(compiled(BASE), compiled(state()))
    text = p.payload(V4, {"FORWARD": [], "INPUT": [], "OUTPUT": []}).splitlines()
    inserts = [i for i, line in enumerate(text) if line.startswith("-I ")]
    deletes = [i for i, line in enumerate(text) if line.startswith("-X ")]
    assert len(inserts) == 3 and max(inserts) < min(deletes)
    assert text[-1] == "COMMIT"
    # nothing changed and the hooks are in place: nothing to run
    in_place = {
        h: [f"-A {h} -m comment --comment netpol-agent -j NPA-{h}"]
        for h in ("FORWARD", "INPUT", "OUTPUT")
    }
    assert plan(compiled(BASE), compiled(BASE)).payload(V4, in_place) == ""
    only_hooks = plan(compiled(BASE), compiled(BASE)).payload(V4, {})
    assert only_hooks.splitlines()[0] == "*filter" and len(only_hooks.splitlines()) == 5

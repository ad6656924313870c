"""Exact incremental payloads after each kind of change, and the full-plan mechanics.

Base cluster: tests/dataplane/cluster.py with one policy, x/allow: pods pod=a in x
accept TCP 80 from pod=b in x and from every pod of namespaces labelled team=blue.
Payloads are compared with hashed names replaced by readable symbols
(`npa-q4[ingress allowed on a port: ...]`, see symbols.py). Rules never name
pods or policies: every change below is set members only.
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
PORTS_IN = "npa-q4[ingress allowed on a port: local pod,proto:port,peer]"
GATE_E = "npa-g4[local pods a policy isolates for egress (the gate to the verdict)]"
COUNT_E = "npa-c4[local pods a policy isolates for egress: drop counters, comment ns/pod]"
GATE_I = "npa-g4[local pods a policy isolates for ingress (the gate to the verdict)]"
COUNT_I = "npa-c4[local pods a policy isolates for ingress: drop counters, comment ns/pod]"
A80 = f"{PORTS_IN} 10.244.0.10,tcp:80"


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
        f"add {A80},10.244.1.10",
    ),
    "peer pod deleted": (_with_pods(x_b=None), f"del {A80},10.244.0.11"),
    "peer pod re-addressed": (
        _with_pods(x_b=replace(PODS["x/b"], ips=("10.244.0.99",))),
        f"del {A80},10.244.0.11\nadd {A80},10.244.0.99",
    ),
    "peer pod added": (
        _with_pods(x_d=replace(PODS["x/b"], name="d", uid="uid-x-d", ips=("10.244.1.20",))),
        f"add {A80},10.244.1.20",
    ),
    "namespace labelled": (
        replace(BASE, namespaces={**BASE.namespaces, "y": make_ns("y", "ns=y", "team=blue")}),
        f"add {A80},10.244.0.12\nadd {A80},10.244.0.13\nadd {A80},10.244.1.11",
    ),
    "local pod isolated (relabelled into the policy)": (
        _with_pods(x_b=replace(PODS["x/b"], labels=labels("pod=a"))),
        f'add {COUNT_I} 10.244.0.11 comment "x/b"\nadd {GATE_I} 10.244.0.11\n'
        f"del {A80},10.244.0.11",  # no longer pod=b: not a peer of x/a any more
    ),
    "policy port changed": (
        state(
            replace(
                ALLOW, ingress=(replace(ALLOW.ingress[0], ports=(PolicyPort(Protocol.TCP, 81),)),)
            )
        ),
        f"del {A80},10.244.0.11\nadd {PORTS_IN} 10.244.0.10,tcp:81,10.244.0.11",
    ),
    "policy added": (
        state(ALLOW, policy("x/deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})),
        f'add {COUNT_E} 10.244.0.10 comment "x/a"\n'
        f'add {COUNT_E} 10.244.0.11 comment "x/b"\n'
        f"add {GATE_E} 10.244.0.10\nadd {GATE_E} 10.244.0.11",
    ),
    "policy deleted": (
        state(),
        f"del {COUNT_I} 10.244.0.10\ndel {GATE_I} 10.244.0.10\ndel {A80},10.244.0.11",
    ),
}


@pytest.mark.parametrize("name", sorted(SET_ONLY_CHANGES))
def test_pod_and_namespace_churn_touches_sets_not_rules(name: str) -> None:
    new, expected = SET_ONLY_CHANGES[name]
    before, iptables, after = _plan_text(new)
    assert_text(expected, before, "ipset before")
    assert iptables == "", f"rules changed:\n{iptables}"
    assert after == ""


def test_a_new_wide_port_range_adds_its_fallback_rule() -> None:
    rule = replace(ALLOW.ingress[0], ports=(PolicyPort(Protocol.TCP, 8000, 9000),))
    before, iptables, after = _plan_text(state(replace(ALLOW, ingress=(rule,))))
    assert ":NPA-INGRESS - [0:0]" in iptables
    assert '-p tcp -m comment --comment "a policy allows TCP ports 8000-9000"' in iptables
    assert "create npa-l4[" in before and after == ""


def test_new_sets_are_created_and_filled_before_any_rule_uses_them() -> None:
    p = plan(None, compiled(BASE))
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
    p = plan(None, compiled(BASE), kernel_chains={V4: ["NPA-I-OLDPODCHAIN"]})
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


def test_narrows_when_anything_allowed_may_go() -> None:
    from agent.core import flatten
    from agent.core.model import Direction
    from agent.core.render import narrows

    gates = [flatten.gate_set(d, V4).name for d in Direction]
    widen, _ = SET_ONLY_CHANGES["peer pod added"]
    shrink, _ = SET_ONLY_CHANGES["peer pod deleted"]
    isolate, _ = SET_ONLY_CHANGES["local pod isolated (relabelled into the policy)"]
    assert not narrows(plan(compiled(BASE), compiled(widen)), gates)
    assert narrows(plan(compiled(BASE), compiled(shrink)), gates)
    assert narrows(plan(compiled(BASE), compiled(isolate)), gates)
    assert narrows(plan(None, compiled(BASE)), gates)
    assert not narrows(plan(compiled(BASE), compiled(BASE)), gates)

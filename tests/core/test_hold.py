"""The new-pod hold's pure half: when it is on, what NPA-HOLD drops, the programmed set.

node-0 has podCIDR 10.244.0.0/24 (gateway .1); x/a 10.244.0.10 is programmed, a
new pod whose IP the agent does not know yet comes up at 10.244.0.20.
"""

from __future__ import annotations

from dataclasses import replace

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.hold import (
    HOLD_CHAIN,
    NewPodHold,
    held_pods,
    hold_active,
    local_pods,
    pending_pods,
    programmed_set_name,
    with_programmed,
)
from agent.core.model import ClusterState, Family, NetworkPolicy, Node, PodPhase, Protocol
from agent.core.ruleset import Ruleset
from agent.core.trace import Packet, trace
from tests.builders import make_ns, make_pod, make_policy, make_state, sel

NODE0 = Node("node-0", ("172.18.0.2",), ("10.244.0.0/24",))
NODE1 = Node("node-1", ("172.18.0.3",), ("10.244.1.0/24",))
XA, NEW, REMOTE = "10.244.0.10", "10.244.0.20", "10.244.1.10"
DENY_X = make_policy("x/deny", {"podSelector": {}})
DENY_WEB = make_policy("x/deny-web", {"podSelector": sel("app=web")})
HOLD = NewPodHold("node-0")


def state(*policies: NetworkPolicy, pending_labels: str = "app=web") -> ClusterState:
    return make_state(
        make_ns("x"),
        make_ns("y"),
        NODE0,
        NODE1,
        make_pod("x/a", "app=a", ip=XA),
        make_pod("y/c", "app=c", ip=REMOTE, node="node-1"),
        make_pod("x/new", pending_labels),  # scheduled here, no IP yet
        make_pod("x/elsewhere", "app=web", node="node-1"),
        *policies,
    )


def compiled(st: ClusterState, *, hold: bool = True) -> Ruleset:
    options = CompileOptions(families=(Family.V4,), extensions=(HOLD,) if hold else ())
    return compile_ruleset(st, node="node-0", options=options)


def verdict(ruleset: Ruleset, src: str, dst: str) -> str:
    return trace(ruleset, Packet(src, dst, Protocol.TCP, 80)).verdict


def test_pending_pods_and_which_need_the_hold() -> None:
    st = state(DENY_WEB)
    assert [p.key for p in pending_pods(st, "node-0")] == ["x/new"]
    assert held_pods(st, "node-0") == ("x/new",)
    assert held_pods(state(DENY_WEB, pending_labels="app=db"), "node-0") == ()
    assert held_pods(state(), "node-0") == ()
    done = replace(st.pods["uid-x-new"], phase=PodPhase.SUCCEEDED)
    assert held_pods(replace(st, pods={**st.pods, "uid-x-new": done}), "node-0") == ()


def test_nothing_changes_while_no_pending_pod_needs_the_hold() -> None:
    st = state(DENY_WEB, pending_labels="app=db")
    assert compiled(st) == compiled(st, hold=False)
    assert not hold_active(compiled(st), "node-0")


def test_unprogrammed_addresses_of_the_pod_cidr_are_dropped_both_ways() -> None:
    rs = compiled(state(DENY_X))
    assert hold_active(rs, "node-0") and HOLD_CHAIN in rs.table(Family.V4).by_name()
    rs = with_programmed(rs, "node-0", frozenset({XA, "10.244.0.1"}))
    assert verdict(rs, REMOTE, NEW) == "DROP"  # to the new pod
    assert verdict(rs, NEW, REMOTE) == "DROP"  # from it
    assert verdict(rs, REMOTE, "10.244.0.10") == "DROP"  # x/a: isolated by DENY_X itself
    assert verdict(rs, XA, REMOTE) in ("ACCEPT", "PASS")  # programmed, egress free
    assert verdict(rs, REMOTE, "10.244.1.11") in ("ACCEPT", "PASS")  # other podCIDRs
    released = with_programmed(rs, "node-0", frozenset({XA, NEW}))
    hold = trace(released, Packet(REMOTE, NEW, Protocol.TCP, 80))
    assert not any(s.chain == HOLD_CHAIN and s.rule.target.kind.value == "DROP" for s in hold.steps)


def test_the_programmed_set_is_filled_by_the_node_and_only_when_the_hold_is_on() -> None:
    rs = compiled(state(DENY_X))
    name = programmed_set_name("node-0", Family.V4)
    assert rs.sets[name].members == frozenset()
    filled = with_programmed(rs, "node-0", frozenset({XA, "fd00::1"}))
    assert filled.sets[name].members == {XA}
    assert with_programmed(filled, "node-0", frozenset({XA})) is filled
    off = compiled(state())
    assert with_programmed(off, "node-0", frozenset({XA})) is off


def test_reachability_compiles_without_the_hold() -> None:
    st = state(DENY_X)
    plain = compile_ruleset(st, node="node-0", options=CompileOptions(families=(Family.V4,)))
    assert not hold_active(plain, "node-0")
    assert local_pods(st, "node-0") == {("uid-x-a", XA)}

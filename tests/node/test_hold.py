"""The node's side of the new-pod hold: an address joins the programmed set only after
the apply that committed its pod's rules (a fake dataplane records the applies)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from agent.core.compile import CompileOptions
from agent.core.hold import NewPodHold, programmed_set_name
from agent.core.model import ClusterState, Family, Pod
from agent.core.ruleset import Ruleset
from agent.node.engine import NodeCompiler
from agent.node.hold import Hold, HoldingCompiler, HoldMetrics
from agent.node.reconcile import Reapplied
from tests.builders import make_ns, make_pod, make_state
from tests.core.test_hold import DENY_X, NODE0
from tests.node.fakes import FakeDataplane

XA, XB, XC = "10.244.0.10", "10.244.0.11", "10.244.0.12"
SET = programmed_set_name("node-0", Family.V4)
GATEWAY = "10.244.0.1"


def st(*pods: Pod) -> ClusterState:
    return make_state(make_ns("x"), NODE0, DENY_X, *pods)


class Rig:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.dataplane = FakeDataplane()
        self.hold = Hold(
            node="node-0", dataplane=self.dataplane, metrics=HoldMetrics(self.registry)
        )
        options = CompileOptions(families=(Family.V4,), extensions=(NewPodHold("node-0"),))
        self.compiler = HoldingCompiler(NodeCompiler(node="node-0", options=options), self.hold)

    def sync(self, state: ClusterState) -> tuple[Ruleset, Any]:
        ruleset = self.compiler.compile(state)
        self.dataplane.apply(ruleset, full=False)
        return ruleset, self.hold.after_apply(state, ruleset)

    def sample(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0


def members(ruleset: Any) -> frozenset[str]:
    assert isinstance(ruleset, Ruleset)
    return ruleset.sets[SET].members if SET in ruleset.sets else frozenset({"<no hold>"})


def test_an_address_joins_the_set_only_after_the_apply_that_programmed_it() -> None:
    rig = Rig()
    a, b, c = make_pod("x/a", ip=XA), make_pod("x/b"), make_pod("x/c")
    first, out = rig.sync(st(a, b, c))
    assert members(first) == {XA, GATEWAY}  # the first sync trusts what it programs
    assert out is None and len(rig.dataplane.applied) == 1
    assert rig.sample("netpol_new_pod_hold_active") == 1
    assert rig.sample("netpol_new_pods_held") == 2
    b_up = make_pod("x/b", ip=XB)
    second, out = rig.sync(st(a, b_up, c))
    assert members(second) == {XA, GATEWAY}  # x/b's rules are in this very apply
    assert isinstance(out, Reapplied) and members(out.ruleset) == {XA, XB, GATEWAY}
    assert rig.dataplane.current is out.ruleset
    assert rig.sample("netpol_new_pod_hold_released_addresses_total") == 1
    c_up = make_pod("x/c", ip=XC)
    last, out = rig.sync(st(a, b_up, c_up))
    assert members(last) == {"<no hold>"} and out is None  # nobody pending: the hold is gone
    assert rig.sample("netpol_new_pod_hold_active") == 0
    assert rig.sample("netpol_new_pod_hold_engaged_total") == 1


def test_a_reused_address_is_not_trusted_for_its_new_pod() -> None:
    rig = Rig()
    a, pending = make_pod("x/a", ip=XA), make_pod("x/p")
    rig.sync(st(a, pending))
    successor = make_pod("x/b", ip=XA)  # x/a deleted, its address handed to x/b
    ruleset, out = rig.sync(st(successor, pending))
    assert members(ruleset) == {GATEWAY}
    assert isinstance(out, Reapplied) and members(out.ruleset) == {XA, GATEWAY}

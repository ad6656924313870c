"""The layout contract (agent.core.layout): extensions land at their stage, in order,
can drop the NetworkPolicy way or allow for good, and the tracer follows them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.core import naming
from agent.core.compile import CompileOptions
from agent.core.errors import ConfigError
from agent.core.incremental import IncrementalCompiler
from agent.core.layout import Contribution, LayoutContext, Stage
from agent.core.model import ClusterState, Direction, Family, Protocol
from agent.core.rulelint import lint
from agent.core.ruleset import ACCEPT, Chain, Rule, jump
from agent.core.trace import Packet, trace
from tests.builders import sel
from tests.dataplane.cluster import compiled, policy, state


@dataclass(frozen=True)
class _Probe:
    """An extension that allows 10.244.0.99 for good and sends 10.244.0.98 to the drop path."""

    stage: Stage
    tag: str = "probe"

    def contribute(self, ctx: LayoutContext) -> Contribution:
        chain = f"NPA-T-{self.tag.upper()}"
        rules = (
            Rule(jump(ctx.accept_chain(naming.TOP_FORWARD)), src="10.244.0.99/32"),
            Rule(jump(ctx.drop_chain(Direction.INGRESS)), src="10.244.0.98/32"),
        )
        out = (Rule(jump(ctx.accept_chain(naming.TOP_OUTPUT)), src="10.244.0.97/32"),)
        drop = {Direction.INGRESS: (Rule(ACCEPT, comment=f"{self.tag} audit", src="1.1.1.1/32"),)}
        return Contribution(
            forward=(Rule(jump(chain), comment=self.tag),),
            output=out,
            chains=(Chain(chain, rules),),
            drop=drop,
        )

    def inputs(self, state: ClusterState) -> object:
        return len(state.policies)


DENY_A = policy("x/deny", {"podSelector": sel("pod=a")})


def test_an_extension_lands_at_its_stage_in_contract_order() -> None:
    ext = (_Probe(Stage.BASELINE, "base"), _Probe(Stage.HOLD, "hold"))
    rs = compiled(state(DENY_A), extensions=ext)
    assert lint(rs) == []
    fwd = rs.table(Family.V4).chain(naming.TOP_FORWARD)
    assert fwd is not None
    comments = [r.comment for r in fwd.rules]
    # head, hold, (admin), verdict, baseline, allowed
    assert comments.index("established") < comments.index("hold")
    assert comments.index("hold") < comments.index("clear the netpol-agent mark")
    assert comments.index("destination isolated for ingress") < comments.index("base")
    assert comments.index("base") < comments.index("allowed by policy")
    drop = rs.table(Family.V4).chain(naming.DROP_INGRESS)
    assert drop is not None and [r.comment for r in drop.rules[:2]] == ["hold audit", "base audit"]
    assert rs.table(Family.V4).chain(naming.ACCEPT_FORWARD) is not None
    assert rs.table(Family.V4).chain(naming.ACCEPT_OUTPUT) is not None


def test_accept_chain_sets_the_fast_path_bit_and_the_drop_path_counts() -> None:
    rs = compiled(state(DENY_A), extensions=(_Probe(Stage.ADMIN),))
    ok = trace(rs, Packet("10.244.0.99", "10.244.0.10", Protocol.TCP, 80))
    assert ok.verdict == "ACCEPT" and ok.ctmark == 1 << 22
    assert ok.evaluated > 0
    bad = trace(rs, Packet("10.244.0.98", "10.244.0.20", Protocol.TCP, 80))
    assert bad.verdict == "DROP"
    fast = trace(rs, Packet("10.244.0.98", "10.244.0.10", Protocol.UDP, 53, ctmark=1 << 22))
    assert fast.ctmark == 1 << 22


def test_incremental_rebuilds_when_an_extension_input_changes() -> None:
    options = CompileOptions(families=(Family.V4,), extensions=(_Probe(Stage.HOLD),))
    inc = IncrementalCompiler(node="node-0", options=options)
    inc.compile(state())
    again = inc.compile(state(DENY_A))
    full = IncrementalCompiler(node="node-0", options=options).compile(state(DENY_A))
    assert again == full


@pytest.mark.parametrize("bit", [14, 15, 21, 32])
def test_connmark_bit_refuses_kube_proxy_and_the_mark_bit(bit: int) -> None:
    with pytest.raises(ConfigError, match="connmark bit"):
        CompileOptions(connmark_bit=bit).validate()

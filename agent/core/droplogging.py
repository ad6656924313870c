"""The drop path's NFLOG rule: every dropped packet also goes to the agent, rate-limited.

One rule at the head of each drop chain (agent.core.layout's drop path), per
direction and family:

    -A NPA-DROP-INGRESS -m comment --comment "log drops"
       -m hashlimit --hashlimit-upto 10/sec --hashlimit-mode srcip,dstip
       --hashlimit-name npa-drop-i -j NFLOG --nflog-prefix npa:DI --nflog-group 100

NFLOG does not end the walk: the packet goes on to the counting and the
terminal DROP/REJECT whatever happens to the log message, so logging never
changes a verdict. `hashlimit` keeps a bucket per source/destination pair, so
a flood between two addresses logs `rate` packets a second (after a burst) and
costs one hash lookup a packet, while every other blocked pair still gets
logged. The prefix names action and direction (agent.core.dropevents); the
rule is the same for every pod, so pods coming and going never rewrite it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.dropevents import ACTION_DROP, log_prefix
from agent.core.layout import Contribution, LayoutContext, Stage
from agent.core.model import ClusterState, Direction
from agent.core.ruleset import HashLimit, Rule, Target, TargetKind

DEFAULT_RATE = 10  # logged packets per second per source/destination pair
DEFAULT_BURST = 5


def log_rule(*, action: str, direction: Direction, group: int, rate: int, burst: int) -> Rule:
    """The NFLOG rule of one action (drop, audit) and direction."""
    letter = "i" if direction is Direction.INGRESS else "e"
    return Rule(
        Target(TargetKind.NFLOG, nflog_group=group, nflog_prefix=log_prefix(action, direction)),
        comment=f"log {action}s",
        hashlimit=HashLimit(name=f"npa-{action}-{letter}", rate=rate, burst=burst),
    )


@dataclass(frozen=True, slots=True)
class DropLogging:
    """The layout Extension putting the NFLOG rule at the head of both drop chains."""

    group: int
    rate: int = DEFAULT_RATE
    burst: int = DEFAULT_BURST

    @property
    def stage(self) -> Stage:
        return Stage.VERDICT  # it only adds drop-path rules; the stage places nothing

    def contribute(self, ctx: LayoutContext) -> Contribution:
        drop = {
            d: (
                log_rule(
                    action=ACTION_DROP,
                    direction=d,
                    group=self.group,
                    rate=self.rate,
                    burst=self.burst,
                ),
            )
            for d in Direction
        }
        return Contribution(drop=drop)

    def inputs(self, state: ClusterState) -> object:
        return None  # the same rules whatever the cluster holds

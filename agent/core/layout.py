"""The kernel layout contract: the ordered stages of our top chains, and how features plug in.

Several features put rules in the same two places a packet walks first,
NPA-FORWARD (pod to pod, pod to elsewhere) and NPA-OUTPUT (the node to its
pods). Their order is the contract (docs/rules.md, "The shape"):

    HEAD       ND (IPv6), INVALID drop, RELATED,ESTABLISHED accept      [16]
    FAST_PATH  flows already allowed (connmark bit) accept               [16]
    HOLD       new-pod hold: -j NPA-HOLD while a pending pod needs it    [14]
    ADMIN      ClusterNetworkPolicy Admin tier                           [15]
    AUDIT      audited policies log what they would drop, decide nothing  [13]
    VERDICT    NetworkPolicy: isolation gate, set lookups                [16]
    BASELINE   ClusterNetworkPolicy Baseline tier                        [15]
    ALLOWED    allowed packets: set the connmark bit, ACCEPT             [16]

The compiler builds each top chain as the concatenation of the stages in this
order. A feature is an `Extension`: it names its stage and, per family,
returns a `Contribution` (rules for NPA-FORWARD and NPA-OUTPUT at that stage,
the chains those rules jump to, and rules for the drop path). The compiler
takes extensions from `CompileOptions.extensions` plus `BUILTIN_EXTENSIONS`
(state-driven features that must also show in `reachability --engine
ruleset`, e.g. cluster policy tiers, register themselves there).

The drop path is one chain per direction (`naming.DROP_INGRESS`,
`naming.DROP_EGRESS`): extension drop rules first (NFLOG, hashlimit'ed), then
our per-pod counting and the terminal DROP/REJECT (`drop_action`). Jump to
`LayoutContext.drop_chain(direction)` to drop "the NetworkPolicy way"
(counted, logged). Jump to `LayoutContext.accept_chain(top)` to allow for
good (it sets the fast-path connmark bit, then ACCEPTs in FORWARD and RETURNs
in OUTPUT, which carries host traffic too).

Incremental compilation rebuilds the layout when `Extension.inputs(state)`
changes between two states (compared with ==), so an extension whose rules
depend on cluster objects must return them (or a digest) there. An extension
whose contribution also follows this node's pods in ways `inputs` does not
return sets the class attribute `follows_local_pods = True`: the layout is
then rebuilt on every local pod change while its `inputs` are non-empty
(a local pod change rebuilds nothing otherwise: rules never name pods).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.core import naming
from agent.core.model import ClusterState, Direction, Family, NetworkPolicy, Pod
from agent.core.ruleset import Chain, Rule

if TYPE_CHECKING:
    from agent.core.ipsets import SetBuilder


class Stage(enum.Enum):
    """Where in the top chains a stage's rules go; members are in packet order."""

    HEAD = "head"
    FAST_PATH = "fast-path"
    HOLD = "hold"
    ADMIN = "admin"
    AUDIT = "audit"  # audited policies: log what they would drop, decide nothing [13]
    VERDICT = "verdict"
    BASELINE = "baseline"
    ALLOWED = "allowed"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)
TOP_CHAINS = (naming.TOP_FORWARD, naming.TOP_INPUT, naming.TOP_OUTPUT)


def _no_policy_chain(policy: NetworkPolicy, direction: Direction) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class LayoutContext:
    """What an extension may use to build its rules for one family of one node."""

    state: ClusterState
    node: str
    family: Family
    local: Sequence[Pod]  # this node's networked pods
    sets: SetBuilder  # creates ipsets on first use (named by what selects, never members)
    mark: int  # the packet mark bit (one bit, always used with its mask)
    connmark: int  # the fast-path connmark bit
    # The chain that sets `mark` on what a policy allows in a direction (None: nothing).
    policy_chain: Callable[[NetworkPolicy, Direction], str | None] = _no_policy_chain

    def drop_chain(self, direction: Direction) -> str:
        """The drop path of a direction: extension drop rules, counting, DROP/REJECT."""
        return naming.DROP_INGRESS if direction is Direction.INGRESS else naming.DROP_EGRESS

    def accept_chain(self, top: str) -> str:
        """Allow for good from top chain `top`: connmark bit set, then ACCEPT (or RETURN)."""
        return naming.ACCEPT_OUTPUT if top == naming.TOP_OUTPUT else naming.ACCEPT_FORWARD


@dataclass(frozen=True, slots=True)
class Contribution:
    """An extension's part of one family's table."""

    forward: tuple[Rule, ...] = ()  # into NPA-FORWARD at the extension's stage
    output: tuple[Rule, ...] = ()  # into NPA-OUTPUT at the extension's stage
    chains: tuple[Chain, ...] = ()  # chains the rules above jump to (names NPA-...)
    drop: Mapping[Direction, tuple[Rule, ...]] = field(default_factory=dict)  # drop path head


class Extension(Protocol):
    """A feature with rules at one stage of the top chains (and maybe in the drop path)."""

    @property
    def stage(self) -> Stage: ...

    def contribute(self, ctx: LayoutContext) -> Contribution: ...

    def inputs(self, state: ClusterState) -> object:
        """What the contribution depends on in `state`; a change rebuilds the layout."""
        ...


# State-driven extensions every compile includes (reachability --engine ruleset too).
BUILTIN_EXTENSIONS: list[Extension] = []


def extensions(extra: Sequence[Extension]) -> list[Extension]:
    """The extensions of one compile: the built-in ones, then `extra`, in stage order."""
    found = [*BUILTIN_EXTENSIONS, *extra]
    return sorted(found, key=lambda e: STAGE_ORDER.index(e.stage))


def extension_inputs(extra: Sequence[Extension], state: ClusterState) -> tuple[object, ...]:
    return tuple(e.inputs(state) for e in extensions(extra))


def follow_local_pods(extra: Sequence[Extension], state: ClusterState) -> bool:
    """Must a local pod change rebuild the layout (see the module docstring)?"""
    return any(
        getattr(e, "follows_local_pods", False) and bool(e.inputs(state)) for e in extensions(extra)
    )

"""The full compiler's layout and flattening, reused by the incremental compiler.

`ChainBuilder` is `agent.core.compile._Compiler` run over this node's local
pods only, with its sets named by `RecordingSets`: selector and named-port
sets (the sources of flattened terms, and any set an extension's rules use)
are left empty and what each selects is recorded (`livesets.Spec`), so that
`agent.core.livesets` keeps their members change by change. Subclassing the
full compiler (rather than copying it) keeps the layout and the terms
identical by construction; the property test in tests/core/test_incremental.py
checks the result.
"""

from __future__ import annotations

from agent.core.compile import CompileOptions, _Compiler
from agent.core.ipsets import SetBuilder
from agent.core.livesets import PortSpec, SelectorSpec, Spec
from agent.core.model import (
    MATCH_ALL,
    ClusterState,
    Family,
    NetworkPolicy,
    Peer,
    Protocol,
)
from agent.core.podindex import PodIndex


class RecordingSets(SetBuilder):
    """Names sets like SetBuilder but leaves selector and named-port members to the live sets."""

    def __init__(
        self,
        state: ClusterState,
        node: str,
        allow_cidrs: tuple[str, ...],
        specs: dict[str, Spec],
    ) -> None:
        super().__init__(state, node, allow_cidrs, PodIndex(ClusterState()))
        self.specs = specs
        self._node_memo: dict[Family, str | None] = {}

    def peer_set(self, policy: NetworkPolicy, peer: Peer, family: Family) -> str | None:
        name = super().peer_set(policy, peer, family)
        if name is not None and peer.ip_block is None and name not in self.specs:
            ns_sel = peer.namespace_selector
            self.specs[name] = SelectorSpec(
                family=family,
                selector=peer.pod_selector or MATCH_ALL,
                namespace=policy.namespace if ns_sel is None else None,
                namespace_selector=ns_sel,
            )
        return name

    def named_port_set(self, port: str, protocol: Protocol, family: Family) -> str:
        name = super().named_port_set(port, protocol, family)
        self.specs.setdefault(name, PortSpec(family, port, protocol))
        return name

    def node_set(self, family: Family) -> str | None:
        if family not in self._node_memo:
            self._node_memo[family] = super().node_set(family)
        return self._node_memo[family]


class ChainBuilder(_Compiler):
    """The full compiler over the local pods, with selector sets left to the live sets."""

    def __init__(
        self,
        state: ClusterState,
        node: str,
        options: CompileOptions,
        local: PodIndex,
        *,
        specs: dict[str, Spec],
    ) -> None:
        super().__init__(state, node, options, local)
        self.setb = RecordingSets(state, node, options.allow_cidrs, specs)

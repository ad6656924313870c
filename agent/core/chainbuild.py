"""The full compiler's chain building, reused by the incremental compiler with caches.

`ChainBuilder` is `agent.core.compile._Compiler` run over this node's local
pods only, with two differences: a policy chain or pod chain whose inputs are
the same objects as at the previous build is handed back as the same Chain
(no rules rebuilt, nothing to compare in `render.plan`), and the sets are
named by `RecordingSets`, which leaves selector and named-port members empty
and records what each set selects (`livesets.Spec`) so that
`agent.core.livesets` can keep the members. Subclassing the full compiler
(rather than copying it) keeps the layout identical by construction; the
property test in tests/core/test_incremental.py checks the result.
"""

from __future__ import annotations

from agent.core.compile import CompileOptions, _Compiler
from agent.core.ipsets import SetBuilder
from agent.core.livesets import PortSpec, SelectorSpec, Spec
from agent.core.model import (
    MATCH_ALL,
    ClusterState,
    Direction,
    Family,
    NetworkPolicy,
    Peer,
    Pod,
    Protocol,
)
from agent.core.podindex import PodIndex
from agent.core.ruleset import Chain, IPSet

# (policy key, direction, family) -> (the policy, its chain's name or None, the chain)
PolicyCache = dict[tuple[str, Direction, Family], tuple[NetworkPolicy, str | None, Chain | None]]
# (pod uid, direction, family) -> (the pod, what else its chain depends on, the chain)
PodCache = dict[tuple[str, Direction, Family], tuple[Pod, tuple[object, ...], Chain]]


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
    """The full compiler's chain building over the local pods, with policy chains reused."""

    def __init__(
        self,
        state: ClusterState,
        node: str,
        options: CompileOptions,
        local: PodIndex,
        *,
        cache: PolicyCache,
        pod_cache: PodCache,
        specs: dict[str, Spec],
        templates: dict[str, IPSet],
    ) -> None:
        super().__init__(state, node, options, local)
        self.setb = RecordingSets(state, node, options.allow_cidrs, specs)
        self.cache = cache
        self.pod_cache = pod_cache
        self.cache_templates = templates  # set name -> IPSet as SetBuilder made it

    def policy_chain(self, policy: NetworkPolicy, d: Direction, family: Family) -> str | None:
        memo_key = (policy.key, d)
        if memo_key in self.policy_memo:
            return self.policy_memo[memo_key]
        hit = self.cache.get((policy.key, d, family))
        if hit is not None and hit[0] is policy:
            _, name, chain = hit
            templates = self.cache_templates
            if chain is not None and all(m.name in templates for r in chain.rules for m in r.sets):
                for rule in chain.rules:
                    for m in rule.sets:
                        self.setb.sets.setdefault(m.name, templates[m.name])
                assert name is not None
                self.chains[name] = chain
                self.policy_memo[memo_key] = name
                return name
            if chain is None:
                self.policy_memo[memo_key] = None
                return None
        name = super().policy_chain(policy, d, family)
        chain = self.chains.get(name) if name is not None else None
        self.cache[(policy.key, d, family)] = (policy, name, chain)
        if chain is not None:
            for rule in chain.rules:
                for m in rule.sets:
                    self.cache_templates[m.name] = self.setb.sets[m.name]
        return name

    def pod_chain(
        self, pod: Pod, d: Direction, policies: list[NetworkPolicy], family: Family
    ) -> str:
        """A pod chain depends on the pod, its policies' chains and the node set: reuse it."""
        deps: tuple[object, ...] = (
            tuple(self.policy_chain(p, d, family) for p in policies),
            self.setb.node_set(family) if d is Direction.INGRESS else None,
            self.state.nodes.get(self.node),
        )
        key = (pod.uid, d, family)
        hit = self.pod_cache.get(key)
        if hit is not None and hit[0] is pod and hit[1] == deps:
            chain = hit[2]
            self.chains[chain.name] = chain
            return chain.name
        name = super().pod_chain(pod, d, policies, family)
        self.pod_cache[key] = (pod, deps, self.chains[name])
        return name

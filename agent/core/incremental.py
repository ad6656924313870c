"""IncrementalCompiler: the node's ruleset after a change, without recompiling the cluster.

`compile_ruleset` stays the reference (STYLE rule 6): a full sync always runs
it, and this is only a speed-up on top. Between full syncs the compiler keeps
the previous ClusterState, the live set members (`agent.core.livesets`) and
the previous Ruleset, finds what changed (by identity first, then equality:
the agent's store hands over the very same frozen objects for what did not
change) and redoes only what that affects:

- pods (added, removed, relabelled, re-addressed): the entries of the sets
  whose scope and selector match the old or the new version;
- namespace labels: the namespace-selector sets they start or stop matching;
- chains only when a policy changed, a local pod changed (it may gain or lose
  isolation, a policy, an address) or this node's Node object changed. They
  are then built by the full compiler's own code (`agent.core.chainbuild`,
  reusing policy and pod chains whose inputs are the same objects, set
  members left to the live sets), so the layout cannot drift from the reference;
- everything else is reused by reference, which also keeps `render.plan` cheap.

Full syncs double as a check: the incremental result for the same state must
equal the reference; if it ever does not, `divergences` counts it and the
compiler rebuilds its baseline from scratch (and gives up on incremental work
if even that disagrees).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from agent.core.chainbuild import ChainBuilder, PodCache, PolicyCache
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.layout import extension_inputs
from agent.core.livesets import LiveSets, Spec
from agent.core.model import ClusterState, Direction, Family, Pod
from agent.core.podindex import PodIndex
from agent.core.ruleset import IPSet, Ruleset, Table

V = TypeVar("V")


class IncrementalCompiler:
    """compile(state, full=...) -> the Ruleset compile_ruleset(state) would give."""

    def __init__(self, *, node: str, options: CompileOptions) -> None:
        options.validate()
        self.node, self.options = node, options
        self.divergences = 0  # full syncs where the incremental result was wrong
        self.disabled = False  # even a fresh baseline disagreed: always compile in full
        self.last_incremental = False  # whether the last compile() was incremental
        self.reset()

    def reset(self) -> None:
        """Forget the baseline: the next compile() is a full one."""
        self._state: ClusterState | None = None
        self._live = LiveSets()
        self._local: dict[str, Pod] = {}
        self._policy_cache: PolicyCache = {}
        self._pod_cache: PodCache = {}
        self._specs: dict[str, Spec] = {}
        self._templates: dict[str, IPSet] = {}
        self._tables: Mapping[Family, Table] = {}
        self._sets: dict[str, IPSet] = {}

    @property
    def has_baseline(self) -> bool:
        """True when the next compile() can be incremental."""
        return self._state is not None and not self.disabled

    def compile(self, state: ClusterState, *, full: bool = False) -> Ruleset:
        if full or self._state is None or self.disabled:
            self.last_incremental = False
            return self._full(state)
        try:
            ruleset = self._update(state)
        except BaseException:
            self.reset()
            raise
        self.last_incremental = True
        return ruleset

    __call__ = compile

    # -- full ------------------------------------------------------------------------------

    def _full(self, state: ClusterState) -> Ruleset:
        reference = compile_ruleset(state, node=self.node, options=self.options)
        if self.disabled:
            return reference
        if self._state is not None:
            try:
                mine: Ruleset | None = self._update(state)
            except Exception:
                mine = None
            if mine == reference:
                return reference
            self.divergences += 1
        self.reset()
        try:
            mine = self._rebuild(state)
        except Exception:
            mine = None
        if mine != reference:
            self.disabled = True
            self.reset()
        return reference

    def _rebuild(self, state: ClusterState) -> Ruleset:
        for pod in state.pods.values():
            if pod.is_networked:
                self._live.table.add(pod)
                if pod.node == self.node:
                    self._local[pod.uid] = pod
        return self._finish(state, chains_dirty=True)

    # -- incremental -----------------------------------------------------------------------

    def _update(self, state: ClusterState) -> Ruleset:
        prev = self._state
        assert prev is not None
        dirty = False
        changed_pods: list[str] = []
        for uid in _changed(prev.pods, state.pods):
            old, new = _networked(prev.pods.get(uid)), _networked(state.pods.get(uid))
            if old is None and new is None:
                continue
            changed_pods.append(uid)
            if (old is not None and old.node == self.node) or (
                new is not None and new.node == self.node
            ):
                dirty = True
                self._local.pop(uid, None)
                if new is not None and new.node == self.node:
                    self._local[uid] = new
            self._live.pod_changed(old, new, prev.namespace_labels, state.namespace_labels)
        skip = frozenset(changed_pods)
        for ns in _changed(prev.namespaces, state.namespaces):
            old_labels, new_labels = prev.namespace_labels(ns), state.namespace_labels(ns)
            if old_labels != new_labels:
                self._live.namespace_changed(ns, old_labels, new_labels, skip=skip)
        for key in _changed(prev.policies, state.policies):
            dirty = True
            for d in Direction:
                for f in Family:
                    self._policy_cache.pop((key, d, f), None)
        if prev.nodes.get(self.node) != state.nodes.get(self.node):
            dirty = True
        extra = self.options.extensions
        if extension_inputs(extra, prev) != extension_inputs(extra, state):
            dirty = True  # a feature at a stage of the layout depends on what changed
        return self._finish(state, chains_dirty=dirty)

    def _finish(self, state: ClusterState, *, chains_dirty: bool) -> Ruleset:
        if chains_dirty:
            self._build_chains(state)
        sets: dict[str, IPSet] = {}
        for name, template in self._sets.items():
            live = self._live.sets.get(name)
            sets[name] = live.ipset() if live is not None else template
        self._sets = sets
        self._state = state
        return Ruleset(tables=self._tables, sets=sets, mark=self.options.mark)

    def _build_chains(self, state: ClusterState) -> None:
        local = PodIndex(ClusterState(pods=self._local))
        builder = ChainBuilder(
            state,
            self.node,
            self.options,
            local,
            cache=self._policy_cache,
            pod_cache=self._pod_cache,
            specs=self._specs,
            templates=self._templates,
        )
        built = builder.run()
        self._tables = built.tables
        for key in [k for k in self._pod_cache if k[0] not in self._local]:
            del self._pod_cache[key]
        wanted = builder.setb.sets
        for name in [n for n in self._live.sets if n not in wanted]:
            self._live.untrack(name)
        for name in sorted(wanted):
            spec = self._specs.get(name)
            if spec is not None and name not in self._live.sets:
                self._live.track(name, spec, wanted[name], state.namespace_labels)
        old = self._sets
        self._sets = {
            n: old[n] if n in old and old[n] == s else s for n, s in sorted(wanted.items())
        }


def _networked(pod: Pod | None) -> Pod | None:
    return pod if pod is not None and pod.is_networked else None


def _changed(old: Mapping[str, V], new: Mapping[str, V]) -> list[str]:
    """Keys whose value differs (identity first, then equality), added or removed."""
    out = [k for k, v in new.items() if old.get(k) is not v]
    added = sum(1 for k in out if k not in old)
    if len(old) != len(new) - added:
        out += [k for k in old if k not in new]
    return [k for k in out if old.get(k) != new.get(k)]

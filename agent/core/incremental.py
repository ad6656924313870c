"""IncrementalCompiler: the node's ruleset after a change, without recompiling the cluster.

`compile_ruleset` stays the reference (STYLE rule 6): a full sync always runs
it, and this is only a speed-up on top. Between full syncs the compiler keeps
the previous ClusterState, the live members of the selector and named-port
sets (`agent.core.livesets`), each local pod's flattened terms
(`agent.core.flatten`) with the entries they contribute (reference counted
per kernel set), and the previous Ruleset. It finds what changed (by
identity first, then equality: the agent's store hands over the very same
frozen objects for what did not change) and redoes only what that affects:

- pods (added, removed, relabelled, re-addressed) and namespace labels: the
  members of the selector sets they start or stop matching; each member that
  appears or goes is carried into the flattened entries of the terms built on
  that set (a named-port term is recomputed);
- a local pod: its gate and counter entries and its terms;
- a policy: the terms of every local pod (rules only change when the layout
  does: a new wide port range, the node's addresses, an extension's inputs).

Rules are built by the full compiler's own code (`agent.core.chainbuild`), so
the layout cannot drift from the reference. Full syncs double as a check: the
incremental result for the same state must equal the reference; if it ever
does not, `divergences` counts it and the compiler rebuilds its baseline from
scratch (and gives up on incremental work if even that disagrees).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import TypeVar

from agent.core import flatten
from agent.core.chainbuild import ChainBuilder
from agent.core.compile import CompileOptions, compile_ruleset, counter_entry
from agent.core.layout import extension_inputs, follow_local_pods
from agent.core.livesets import LiveSets, Spec
from agent.core.model import ClusterState, Direction, Family, NetworkPolicy, Pod
from agent.core.podindex import PodIndex
from agent.core.ruleset import IPSet, Ruleset, Table

V = TypeVar("V")
TermKey = tuple[str, Direction, Family]  # (local pod uid, direction, family)


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
        self._specs: dict[str, Spec] = {}
        self._builder: ChainBuilder | None = None
        self._tables: Mapping[Family, Table] = {}
        self._templates: dict[str, IPSet] = {}  # every set the rules use, as built
        self._sets: dict[str, IPSet] = {}
        self._isolating: dict[tuple[str, Direction], list[NetworkPolicy]] = {}
        self._terms: dict[TermKey, tuple[flatten.Term, ...]] = {}
        self._term_refs: dict[flatten.Term, int] = {}
        self._term_entries: dict[flatten.Term, frozenset[str]] = {}
        self._by_source: dict[str, set[flatten.Term]] = defaultdict(set)
        self._counts: dict[str, dict[str, int]] = defaultdict(dict)  # target -> entry -> n
        self._dirty: set[str] = set()  # flattened sets whose entries changed
        self._seen: dict[str, IPSet] = {}  # live sets' values the terms were last fed

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
        self._relayout(state)
        self._retarget(state, set(self._local))
        return self._finish(state)

    # -- incremental -----------------------------------------------------------------------

    def _update(self, state: ClusterState) -> Ruleset:
        prev = self._state
        assert prev is not None
        local_changed: set[str] = set()
        changed_pods: list[str] = []
        for uid in _changed(prev.pods, state.pods):
            old, new = _networked(prev.pods.get(uid)), _networked(state.pods.get(uid))
            if old is None and new is None:
                continue
            changed_pods.append(uid)
            if (old is not None and old.node == self.node) or (
                new is not None and new.node == self.node
            ):
                local_changed.add(uid)
                self._local.pop(uid, None)
                if new is not None and new.node == self.node:
                    self._local[uid] = new
            self._live.pod_changed(old, new, prev.namespace_labels, state.namespace_labels)
        skip = frozenset(changed_pods)
        for ns in _changed(prev.namespaces, state.namespaces):
            old_labels, new_labels = prev.namespace_labels(ns), state.namespace_labels(ns)
            if old_labels != new_labels:
                self._live.namespace_changed(ns, old_labels, new_labels, skip=skip)
        self._propagate()
        changed_policies = _changed(prev.policies, state.policies)
        policies = bool(changed_policies)
        extra = self.options.extensions
        if (
            policies
            or prev.nodes.get(self.node) != state.nodes.get(self.node)
            or extension_inputs(extra, prev) != extension_inputs(extra, state)
            or (local_changed and follow_local_pods(extra, state))
        ):
            self._relayout(state)
        if policies:  # a policy isolates and allows for pods of its own namespace only
            spaces = {
                p.namespace
                for key in changed_policies
                for p in (prev.policies.get(key), state.policies.get(key))
                if p is not None
            }
            local_changed |= {uid for uid, pod in self._local.items() if pod.namespace in spaces}
        elif local_changed and self._builder is None:
            self._builder_for(state)  # else reuse it: policies and node did not change
        if local_changed:
            self._retarget(state, local_changed)
        return self._finish(state)

    def _builder_for(self, state: ClusterState) -> ChainBuilder:
        local = PodIndex(ClusterState(pods=self._local))
        self._builder = ChainBuilder(state, self.node, self.options, local, specs=self._specs)
        return self._builder

    def _relayout(self, state: ClusterState) -> None:
        """The tables (rules) and the templates of the sets they use."""
        builder = self._builder_for(state)
        tables = {f: builder.table(f) for f in self.options.families}
        templates = builder.kernel_sets(tables)
        old = self._tables
        self._tables = {f: old[f] if old.get(f) == t else t for f, t in tables.items()}
        self._templates = templates
        for name in sorted(templates):
            spec = self._specs.get(name)
            if spec is not None and name not in self._live.sets:
                self._live.track(name, spec, templates[name], state.namespace_labels)

    # -- flattened terms -------------------------------------------------------------------

    def _retarget(self, state: ClusterState, uids: set[str]) -> None:
        """Recompute isolation and terms of some local pods (present or gone)."""
        builder = self._builder
        assert builder is not None
        for uid in sorted(uids):
            for d in Direction:
                self._isolating.pop((uid, d), None)
            pod = self._local.get(uid)
            if pod is not None:
                self._isolating.update(builder.isolation_of(pod))
            for d in Direction:
                policies = self._isolating.get((uid, d))
                for family in self.options.families:
                    key = (uid, d, family)
                    new: tuple[flatten.Term, ...] = ()
                    if pod is not None and policies is not None:
                        new = tuple(builder.pod_terms(pod, d, family, policies))
                    old = self._terms.get(key, ())
                    if new == old:
                        continue
                    for term in new:
                        self._acquire(term, state)
                    for term in old:
                        self._release(term)
                    if new:
                        self._terms[key] = new
                    else:
                        self._terms.pop(key, None)
        for name in [n for n, terms in self._by_source.items() if not terms]:
            del self._by_source[name]
            if name in self._live.sets and name not in self._templates:
                self._live.untrack(name)
                self._seen.pop(name, None)

    def _members(self, name: str) -> frozenset[str]:
        value = self._live.sets[name].ipset()
        self._seen[name] = value
        return value.members

    def _acquire(self, term: flatten.Term, state: ClusterState) -> None:
        refs = self._term_refs.get(term, 0)
        self._term_refs[term] = refs + 1
        if refs:
            return
        for name in (term.source, term.named):
            if name is None:
                continue
            if name not in self._live.sets:
                template = self._builder.setb.sets[name] if self._builder else None
                assert template is not None
                self._live.track(name, self._specs[name], template, state.namespace_labels)
            self._by_source[name].add(term)
        found = flatten.entries(term, self._members)
        self._term_entries[term] = found
        self._count(term.target, found, +1)

    def _release(self, term: flatten.Term) -> None:
        refs = self._term_refs[term] - 1
        if refs:
            self._term_refs[term] = refs
            return
        del self._term_refs[term]
        self._count(term.target, self._term_entries.pop(term), -1)
        for name in (term.source, term.named):
            if name is not None:
                self._by_source[name].discard(term)

    def _count(self, target: str, found: frozenset[str] | list[str], step: int) -> None:
        counts = self._counts[target]
        for entry in found:
            n = counts.get(entry, 0) + step
            if n:
                counts[entry] = n
            else:
                del counts[entry]
        if found:
            self._dirty.add(target)

    def _propagate(self) -> None:
        """Carry member changes of the selector and named-port sets into the terms' entries."""
        for name, terms in self._by_source.items():
            if not terms:
                continue
            before = self._seen.get(name)
            after = self._live.sets[name].ipset()
            if after is before:
                continue
            self._seen[name] = after
            old = before.members if before is not None else frozenset()
            gone, came = old - after.members, after.members - old
            for term in list(terms):
                if term.named is not None:
                    found = flatten.entries(term, self._members)
                    was = self._term_entries[term]
                    self._count(term.target, was - found, -1)
                    self._count(term.target, found - was, +1)
                    self._term_entries[term] = found
                    continue
                minus = flatten.peer_entries(term, gone)
                plus = flatten.peer_entries(term, came)
                self._term_entries[term] = (self._term_entries[term] - set(minus)) | set(plus)
                self._count(term.target, minus, -1)
                self._count(term.target, plus, +1)

    # -- the sets --------------------------------------------------------------------------

    def _finish(self, state: ClusterState) -> Ruleset:
        own = self._own_members()
        sets: dict[str, IPSet] = {}
        for name, template in sorted(self._templates.items()):
            prev = self._sets.get(name)
            members: frozenset[str] | None = None
            if name in own:
                members = own[name]
            elif flatten.is_flattened(name):
                if prev is not None and name not in self._dirty and _same_kind(prev, template):
                    sets[name] = prev
                    continue
                members = frozenset(self._counts.get(name, {}))
            elif name in self._live.sets:
                sets[name] = self._live.sets[name].ipset()
                continue
            value = template if members is None else replace(template, members=members)
            sets[name] = prev if prev is not None and prev == value else value
        self._dirty.clear()
        self._sets = sets
        self._state = state
        return Ruleset(
            tables=self._tables, sets=sets, mark=self.options.mark, connmark=self.options.connmark
        )

    def _own_members(self) -> dict[str, frozenset[str]]:
        """Gate and counter set members, from the local pods' isolation."""
        out: dict[str, set[str]] = {}
        for family in self.options.families:
            for d in Direction:
                gate = flatten.gate_set(d, family).name
                counters = flatten.counter_set(d, family).name
                out[gate], out[counters] = set(), set()
                counted: set[str] = set()
                for pod in sorted(self._local.values(), key=lambda p: (p.namespace, p.name, p.uid)):
                    if (pod.uid, d) not in self._isolating:
                        continue
                    for ip in pod.ips_of(family):
                        address = flatten.canon(ip)
                        out[gate].add(address)
                        if address not in counted:
                            counted.add(address)
                            out[counters].add(counter_entry(address, pod))
        return {k: frozenset(v) for k, v in out.items()}


def _same_kind(a: IPSet, b: IPSet) -> bool:
    return replace(a, members=b.members) == b


def _networked(pod: Pod | None) -> Pod | None:
    return pod if pod is not None and pod.is_networked else None


def _changed(old: Mapping[str, V], new: Mapping[str, V]) -> list[str]:
    """Keys whose value differs (identity first, then equality), added or removed."""
    out = [k for k, v in new.items() if old.get(k) is not v]
    added = sum(1 for k in out if k not in old)
    if len(old) != len(new) - added:
        out += [k for k in old if k not in new]
    return [k for k in out if old.get(k) != new.get(k)]

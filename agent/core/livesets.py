"""Set members kept up to date change by change, for the incremental compiler.

`compile_ruleset` recomputes every set from the whole cluster at every sync.
At 10,000 pods that costs tens of milliseconds although one pod changed. Here
each selector or named-port set the rules use is tracked with a reference
count per entry (`LiveSet`): a changed pod removes what its old version
contributed and adds what its new version contributes, only to the sets whose
namespace scope holds it; a relabelled namespace moves its pods in or out of
the sets whose namespace selector it starts or stops matching. Counts (not
plain membership) keep two pods sharing an address correct. Sets are only
materialised again (`LiveSet.ipset`) when an entry appeared or disappeared,
so unchanged sets stay the very same objects and `render.plan` skips them.

The membership rules mirror `agent.core.ipsets.SetBuilder` exactly; the
property test in tests/core/test_incremental.py holds them together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from agent.core.ipsets import _canon
from agent.core.model import Family, Labels, LabelSelector, Pod, Protocol
from agent.core.ruleset import IPSet
from agent.core.selectors import selector_matches

NamespaceLabels = Callable[[str], Labels]
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SelectorSpec:
    """Pods matching `selector` in one namespace, or in those `namespace_selector` picks."""

    family: Family
    selector: LabelSelector
    namespace: str | None = None
    namespace_selector: LabelSelector | None = None


@dataclass(frozen=True, slots=True)
class PortSpec:
    """`IP,proto:number` of every pod with a containerPort named `port` on `protocol`."""

    family: Family
    port: str
    protocol: Protocol


Spec = SelectorSpec | PortSpec


def in_scope(spec: SelectorSpec, pod: Pod, ns_labels: NamespaceLabels) -> bool:
    if spec.namespace is not None:
        return pod.namespace == spec.namespace
    assert spec.namespace_selector is not None
    return selector_matches(spec.namespace_selector, ns_labels(pod.namespace))


def entries(spec: Spec, pod: Pod | None, ns_labels: NamespaceLabels) -> frozenset[str]:
    """What `pod` (a networked pod, or None) puts in the set described by `spec`."""
    if pod is None:
        return _NONE
    if isinstance(spec, SelectorSpec):
        if not in_scope(spec, pod, ns_labels) or not selector_matches(spec.selector, pod.labels):
            return _NONE
        return frozenset(_canon(ip) for ip in pod.ips_of(spec.family))
    return _port_entries(spec, pod)


def _port_entries(spec: PortSpec, pod: Pod) -> frozenset[str]:
    ports = [cp.port for cp in pod.ports if cp.name == spec.port and cp.protocol is spec.protocol]
    if not ports:
        return _NONE
    proto = spec.protocol.value.lower()
    return frozenset(f"{_canon(ip)},{proto}:{n}" for n in ports for ip in pod.ips_of(spec.family))


class LiveSet:
    """One set: a count per entry, and the IPSet value last handed out."""

    __slots__ = ("counts", "dirty", "spec", "value")

    def __init__(self, spec: Spec, template: IPSet) -> None:
        self.spec = spec
        self.counts: dict[str, int] = {}
        self.value = template
        self.dirty = True

    def change(self, gone: Iterable[str], came: Iterable[str]) -> None:
        counts = self.counts
        for entry in gone:
            left = counts[entry] - 1
            if left:
                counts[entry] = left
            else:
                del counts[entry]
                self.dirty = True
        for entry in came:
            had = counts.get(entry, 0)
            counts[entry] = had + 1
            if not had:
                self.dirty = True

    def ipset(self) -> IPSet:
        if self.dirty:
            members = frozenset(self.counts)
            if members != self.value.members:
                self.value = replace(self.value, members=members)
            self.dirty = False
        return self.value


class PodTable:
    """Networked pods by UID, namespace and label; updated in place."""

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.by_ns: dict[str, dict[str, Pod]] = defaultdict(dict)
        self.by_label: dict[tuple[str, str], dict[str, Pod]] = defaultdict(dict)

    def add(self, pod: Pod) -> None:
        self.pods[pod.uid] = pod
        self.by_ns[pod.namespace][pod.uid] = pod
        for item in pod.labels.items():
            self.by_label[item][pod.uid] = pod

    def remove(self, pod: Pod) -> None:
        del self.pods[pod.uid]
        self.by_ns[pod.namespace].pop(pod.uid, None)
        for item in pod.labels.items():
            self.by_label[item].pop(pod.uid, None)

    def candidates(self, spec: Spec) -> Iterable[Pod]:
        """A superset of the pods that can contribute to `spec` (usually far smaller than all)."""
        if isinstance(spec, PortSpec):
            return self.pods.values()
        buckets: list[Iterable[Pod]] = []
        if spec.namespace is not None:
            buckets.append(self.by_ns.get(spec.namespace, {}).values())
        buckets += [self.by_label.get(item, {}).values() for item in spec.selector.match_labels]
        if not buckets:
            return self.pods.values()
        return min(buckets, key=lambda b: len(b))  # type: ignore[arg-type]


class LiveSets:
    """Every tracked set, and which sets a pod of a given namespace or port can touch."""

    def __init__(self) -> None:
        self.table = PodTable()
        self.sets: dict[str, LiveSet] = {}
        self._by_ns: dict[str, set[str]] = defaultdict(set)  # single-namespace selector sets
        self._nssel: set[str] = set()  # namespace-selector sets
        self._by_port: dict[tuple[str, Protocol], set[str]] = defaultdict(set)

    def track(self, name: str, spec: Spec, template: IPSet, ns_labels: NamespaceLabels) -> None:
        """Start keeping set `name` up to date, filling it from the current pods."""
        live = LiveSet(spec, template)
        for pod in self.table.candidates(spec):
            live.change((), entries(spec, pod, ns_labels))
        self.sets[name] = live
        self._group(name, spec).add(name)

    def untrack(self, name: str) -> None:
        live = self.sets.pop(name)
        self._group(name, live.spec).discard(name)

    def _group(self, name: str, spec: Spec) -> set[str]:
        if isinstance(spec, PortSpec):
            return self._by_port[(spec.port, spec.protocol)]
        if spec.namespace is not None:
            return self._by_ns[spec.namespace]
        return self._nssel

    def _touched_by(self, pod: Pod) -> list[str]:
        names = [*self._by_ns.get(pod.namespace, ()), *self._nssel]
        for cp in pod.ports:
            if cp.name:
                names += self._by_port.get((cp.name, cp.protocol), ())
        return names

    def pod_changed(
        self, old: Pod | None, new: Pod | None, old_ns: NamespaceLabels, new_ns: NamespaceLabels
    ) -> None:
        """Replace `old` with `new` (networked pods; None for absent or not networked)."""
        names: set[str] = set()
        for pod in (old, new):
            if pod is not None:
                names.update(self._touched_by(pod))
        for name in names:
            live = self.sets[name]
            was = entries(live.spec, old, old_ns)
            now = entries(live.spec, new, new_ns)
            if was != now:
                live.change(was - now, now - was)
        if old is not None:
            self.table.remove(old)
        if new is not None:
            self.table.add(new)

    def namespace_changed(
        self, namespace: str, old: Labels, new: Labels, *, skip: frozenset[str]
    ) -> None:
        """Namespace labels went from `old` to `new`; pods in `skip` were handled already."""
        for name in self._nssel:
            live = self.sets[name]
            spec = live.spec
            assert isinstance(spec, SelectorSpec) and spec.namespace_selector is not None
            was = selector_matches(spec.namespace_selector, old)
            now = selector_matches(spec.namespace_selector, new)
            if was == now:
                continue
            for uid, pod in self.table.by_ns.get(namespace, {}).items():
                if uid in skip or not selector_matches(spec.selector, pod.labels):
                    continue
                found = frozenset(_canon(ip) for ip in pod.ips_of(spec.family))
                live.change(found if was else (), () if was else found)

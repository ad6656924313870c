"""Fast selector membership over a whole cluster: which pods does a peer select?

The compiler asks the same questions many times (1,000 policies, a few
thousand peers, 10,000 pods), so pods are indexed once by namespace and by
label, selectors are answered from the smallest matching label bucket, and
every answer is memoised under the selector's canonical key.
"""

from __future__ import annotations

from collections import defaultdict

from agent.core.model import ClusterState, LabelSelector, Pod, Protocol
from agent.core.naming import selector_key
from agent.core.selectors import selector_matches


class PodIndex:
    """Networked pods of one ClusterState, indexed for selector queries."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.pods: list[Pod] = [p for p in state.pods.values() if p.is_networked]
        self.by_ns: dict[str, list[Pod]] = defaultdict(list)
        self.by_label: dict[tuple[str, str], list[Pod]] = defaultdict(list)
        self.by_named_port: dict[tuple[str, Protocol], dict[int, list[Pod]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for pod in self.pods:
            self.by_ns[pod.namespace].append(pod)
            for item in pod.labels.items():
                self.by_label[item].append(pod)
            for cp in pod.ports:
                if cp.name:
                    self.by_named_port[(cp.name, cp.protocol)][cp.port].append(pod)
        self.namespaces = sorted(set(state.namespaces) | set(self.by_ns))
        self._ns_memo: dict[str, frozenset[str]] = {}
        self._memo: dict[tuple[str, str], tuple[Pod, ...]] = {}

    def namespaces_matching(self, selector: LabelSelector) -> frozenset[str]:
        key = selector_key(selector)
        hit = self._ns_memo.get(key)
        if hit is None:
            hit = frozenset(
                ns
                for ns in self.namespaces
                if selector_matches(selector, self.state.namespace_labels(ns))
            )
            self._ns_memo[key] = hit
        return hit

    def select(
        self, scope_key: str, namespaces: frozenset[str], selector: LabelSelector
    ) -> tuple[Pod, ...]:
        """Pods in `namespaces` matching `selector`; memoised under (scope_key, selector)."""
        memo_key = (scope_key, selector_key(selector))
        hit = self._memo.get(memo_key)
        if hit is not None:
            return hit
        if selector.match_labels:
            buckets = [self.by_label.get(item, []) for item in selector.match_labels]
            candidates: list[Pod] = min(buckets, key=len)
            found = [
                p
                for p in candidates
                if p.namespace in namespaces and selector_matches(selector, p.labels)
            ]
        else:
            found = [
                p
                for ns in sorted(namespaces)
                for p in self.by_ns.get(ns, ())
                if selector_matches(selector, p.labels)
            ]
        result = tuple(found)
        self._memo[memo_key] = result
        return result

    def named_port(self, name: str, protocol: Protocol) -> dict[int, list[Pod]]:
        """number -> pods, for every pod with a containerPort called `name` on `protocol`."""
        return self.by_named_port.get((name, protocol), {})

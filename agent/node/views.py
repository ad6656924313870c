"""What the agent reports about a synced state: the gauges' view and the warnings.

`state_view` derives the numbers behind the state gauges (policies, invalid
policies, local pods and how many are isolated per direction, owned kernel
objects) from the snapshot a sync applied. `Diagnostics` logs, once per
distinct problem, each invalid policy with its field path and a missing Node.
Both run once per successful sync, in a few milliseconds at 10,000 pods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from agent.core.errors import FieldError
from agent.core.model import ClusterState, Direction, NetworkPolicy
from agent.core.selectors import selector_matches
from agent.node.metrics import StateView

log = logging.getLogger(__name__)


def state_view(state: ClusterState, *, node: str, ruleset_stats: Mapping[str, int]) -> StateView:
    local = [p for p in state.pods.values() if p.node == node and p.is_networked]
    by_ns: dict[str, list[NetworkPolicy]] = {}
    for pol in state.policies.values():
        by_ns.setdefault(pol.namespace, []).append(pol)
    selected = {"ingress": 0, "egress": 0}
    for pod in local:
        for direction in (Direction.INGRESS, Direction.EGRESS):
            if any(
                direction in pol.policy_types and selector_matches(pol.pod_selector, pod.labels)
                for pol in by_ns.get(pod.namespace, ())
            ):
                selected[direction.name.lower()] += 1
    return StateView(
        policies=len(state.policies),
        invalid_policies=sum(1 for p in state.policies.values() if not p.valid),
        local_pods=len(local),
        selected_local_pods=selected,
        owned_chains=ruleset_stats.get("chains", 0),
        owned_rules=ruleset_stats.get("rules", 0),
        owned_ipsets=ruleset_stats.get("ipsets", 0),
        owned_ipset_entries=ruleset_stats.get("ipset_entries", 0),
    )


class Diagnostics:
    """Logs problems with the cluster state once each (not at every sync)."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._logged_invalid: dict[str, tuple[FieldError, ...]] = {}
        self._node_missing = False

    def check(self, state: ClusterState) -> None:
        self._check_node(state)
        self._log_invalid(state)

    def _check_node(self, state: ClusterState) -> None:
        missing = self.node_name not in state.nodes
        if missing and not self._node_missing:
            log.warning(
                "Node %s not found in the API: no pod is local and the node's addresses are "
                "not allowed in; check --node-name",
                self.node_name,
                extra={"node": self.node_name},
            )
        self._node_missing = missing

    def _log_invalid(self, state: ClusterState) -> None:
        seen: dict[str, tuple[FieldError, ...]] = {}
        for key, pol in state.policies.items():
            if pol.valid:
                continue
            seen[key] = pol.errors
            if self._logged_invalid.get(key) == pol.errors:
                continue
            for err in pol.errors:
                log.error(
                    "invalid NetworkPolicy %s: %s: %s (it isolates the pods it selects and "
                    "allows nothing)",
                    key,
                    err.path,
                    err.message,
                    extra={"policy": key, "field": err.path},
                )
        self._logged_invalid = seen

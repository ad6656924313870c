"""The cluster changes the incremental benchmark makes, each with a test for "the agent saw it".

An `Event` writes one object through the lab API server's store and carries a
predicate over the agent's ClusterState that is true once the change is in the
state the agent compiled. Kinds (each a row of the results):

    pod-label remote / local   a pod's `tier` label rotates (set membership /
                               the local pod's policies change)
    pod-add / pod-delete remote / local   a pod appears on another node / this
                               node, then goes again (pairs keep the cluster size)
    policy-add / -update / -delete   a policy selecting every pod of a namespace
                               holding a local pod; the update changes its port

Deterministic: the n-th event of a kind always touches the same object.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.bench import labapi
from agent.bench.cluster import NODE, TIERS, Manifests, pod, policy
from agent.core.model import ClusterState
from agent.lab.apiserver import ApiServer

Obj = dict[str, Any]
Check = Callable[[ClusterState], bool]

KINDS = (
    "pod-label remote",
    "pod-label local",
    "pod-add remote",
    "pod-delete remote",
    "pod-add local",
    "pod-delete local",
    "policy-add",
    "policy-update",
    "policy-delete",
)
POD_KINDS = tuple(k for k in KINDS if k.startswith("pod-"))
ADDED_REMOTE_BASE = ipaddress.IPv4Address("10.63.0.0")


Write = Callable[[], object]


@dataclass(frozen=True, slots=True)
class Event:
    """`prepare()` reads what it needs and returns (predicate, write); the caller arms its
    tap with the predicate, then calls write(), so the agent cannot see the change first."""

    kind: str
    prepare: Callable[[], tuple[Check, Write]]


def _tier_change(api: ApiServer, ns: str, name: str) -> tuple[Check, Write]:
    current = api.store.get(labapi.KINDS["Pod"], ns, name)
    uid = str(current["metadata"]["uid"])
    tier = current["metadata"]["labels"]["tier"]
    new = TIERS[(TIERS.index(tier) + 1) % len(TIERS)]

    def change(obj: Obj) -> None:
        obj["metadata"]["labels"]["tier"] = new

    def seen(state: ClusterState) -> bool:
        p = state.pods.get(uid)
        return p is not None and p.labels.get("tier") == new

    return seen, lambda: labapi.update(api, "Pod", ns, name, change)


class EventSource:
    """Builds the events for one run against `api`, holding the cluster `manifests`."""

    def __init__(self, api: ApiServer, manifests: Manifests) -> None:
        self.api = api
        apps = [p for p in manifests.pods if "tier" in p["metadata"]["labels"]]
        self.remote = [p for p in apps if p["spec"]["nodeName"] != NODE]
        self.local = [p for p in apps if p["spec"]["nodeName"] == NODE]
        local_ns = sorted({p["metadata"]["namespace"] for p in self.local})
        self.policy_ns = local_ns or manifests.app_namespaces or ["default"]
        self.app_ns = manifests.app_namespaces or ["default"]
        self._added: dict[str, tuple[str, str, str]] = {}  # where -> (ns, name, uid)
        self._policy: tuple[str, str, int] | None = None

    def round(self, n: int) -> Iterator[Event]:
        """One event of every kind (in KINDS order), the n-th of each."""
        yield Event("pod-label remote", lambda: self._label(self.remote, n))
        yield Event("pod-label local", lambda: self._label(self.local, n))
        yield Event("pod-add remote", lambda: self._add("remote", n))
        yield Event("pod-delete remote", lambda: self._delete("remote"))
        yield Event("pod-add local", lambda: self._add("local", n))
        yield Event("pod-delete local", lambda: self._delete("local"))
        yield Event("policy-add", lambda: self._policy_add(n))
        yield Event("policy-update", lambda: self._policy_update(n))
        yield Event("policy-delete", self._policy_delete)

    def _label(self, pods: list[Obj], n: int) -> tuple[Check, Write]:
        if not pods:
            pods = self.remote or self.local
        p = pods[(n * 7919) % len(pods)]["metadata"]
        return _tier_change(self.api, p["namespace"], p["name"])

    def _add(self, where: str, n: int) -> tuple[Check, Write]:
        ns = self.app_ns[(n * 31) % len(self.app_ns)]
        tier = TIERS[n % len(TIERS)]
        if where == "local":
            node, ip = NODE, "10.244.0.250"
        else:
            node, ip = f"node-{1 + n % 97}", str(ADDED_REMOTE_BASE + n)
        name = f"bench-{where}-{n}"
        labels = {"app": f"{ns.split('-')[0]}-{tier}", "tier": tier, "version": "v1"}
        prepared = labapi.prepare(
            self.api, pod(ns, name, labels=labels, node=node, ips=[ip], ports=[])
        )
        uid = str(prepared["metadata"]["uid"])
        self._added[where] = (ns, name, uid)
        return (lambda state: uid in state.pods), lambda: labapi.commit(self.api, prepared)

    def _delete(self, where: str) -> tuple[Check, Write]:
        ns, name, uid = self._added.pop(where)
        return (lambda state: uid not in state.pods), lambda: labapi.delete(
            self.api, "Pod", ns, name
        )

    def _policy_add(self, n: int) -> tuple[Check, Write]:
        ns = self.policy_ns[n % len(self.policy_ns)]
        name = f"bench-extra-{n}"
        port = 7000 + n % 1000
        spec = {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"env": "prod"}},
                            "podSelector": {"matchLabels": {"tier": "frontend"}},
                        }
                    ],
                    "ports": [{"port": port}],
                }
            ],
        }
        self._policy = (ns, name, port)
        key = f"{ns}/{name}"
        body = policy(ns, name, spec)
        return (lambda state: key in state.policies), lambda: labapi.create(self.api, body)

    def _policy_update(self, n: int) -> tuple[Check, Write]:
        assert self._policy is not None
        ns, name, old = self._policy
        new = 8000 + n % 1000 if old < 8000 else 7000 + n % 1000

        def change(obj: Obj) -> None:
            obj["spec"]["ingress"][0]["ports"][0]["port"] = new

        self._policy = (ns, name, new)
        key = f"{ns}/{name}"

        def seen(state: ClusterState) -> bool:
            pol = state.policies.get(key)
            return pol is not None and any(
                port.port == new for rule in pol.ingress for port in rule.ports
            )

        return seen, lambda: labapi.update(self.api, "NetworkPolicy", ns, name, change)

    def _policy_delete(self) -> tuple[Check, Write]:
        assert self._policy is not None
        ns, name, _ = self._policy
        self._policy = None
        key = f"{ns}/{name}"
        return (lambda state: key not in state.policies), lambda: labapi.delete(
            self.api, "NetworkPolicy", ns, name
        )

"""ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) as frozen values.

Cluster-wide policy in two tiers around NetworkPolicy: Admin rules decide before
any NetworkPolicy, Baseline rules only for traffic no NetworkPolicy isolates.
Unlike NetworkPolicy, rules carry an action (Accept, Deny, Pass), are ordered
(priority, then position) and isolate nothing by themselves. Conversion from
dicts is `cnpconvert`; what the values mean is `tiers`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.core.errors import FieldError
from agent.core.model import MATCH_ALL, Direction, LabelSelector, Protocol


class Tier(enum.Enum):
    ADMIN = "Admin"
    BASELINE = "Baseline"


class Action(enum.Enum):
    ACCEPT = "Accept"
    DENY = "Deny"
    PASS = "Pass"


class PeerKind(enum.Enum):
    """Which peer field was set; ALL is the fail-closed stand-in for a rule we cannot read."""

    NAMESPACES = "namespaces"
    PODS = "pods"
    NODES = "nodes"
    NETWORKS = "networks"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Subject:
    """The pods a policy applies to: pods matching pod_selector in matching namespaces.

    `subject.namespaces` is a namespace selector with pod_selector MATCH_ALL;
    `subject.pods` sets both. hostNetwork pods are never subjects.
    """

    namespace_selector: LabelSelector = MATCH_ALL
    pod_selector: LabelSelector = MATCH_ALL
    by_pods: bool = False


@dataclass(frozen=True, slots=True)
class ClusterPeer:
    """One `from`/`to` entry: exactly one kind, with the fields that kind uses."""

    kind: PeerKind
    namespace_selector: LabelSelector = MATCH_ALL
    pod_selector: LabelSelector = MATCH_ALL
    node_selector: LabelSelector = MATCH_ALL
    networks: tuple[str, ...] = ()


ALL_PEERS = ClusterPeer(PeerKind.ALL)


@dataclass(frozen=True, slots=True)
class ClusterPort:
    """One `protocols` entry.

    protocol set: that protocol, on `port` (through `end_port`, inclusive) or on
    every port when port is None. name set (protocol None): a destinationNamedPort,
    resolved on the destination pod's containerPorts (name, and the number and
    protocol of the connection).
    """

    protocol: Protocol | None = None
    port: int | None = None
    end_port: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterRule:
    """One ingress or egress rule. ports () means every port of every protocol.

    `failed` marks a rule converted fail-closed (the object had an error there).
    """

    name: str
    action: Action
    peers: tuple[ClusterPeer, ...]
    ports: tuple[ClusterPort, ...] = ()
    failed: bool = False


@dataclass(frozen=True, slots=True)
class ClusterNetworkPolicy:
    """A ClusterNetworkPolicy after conversion and validation (cluster-scoped: keyed by name).

    With `errors`, the value is already the fail-closed reading (see cnpconvert).
    """

    name: str
    tier: Tier
    priority: int
    subject: Subject
    ingress: tuple[ClusterRule, ...] = ()
    egress: tuple[ClusterRule, ...] = ()
    uid: str = ""
    errors: tuple[FieldError, ...] = ()

    @property
    def key(self) -> str:
        return self.name

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def order(self) -> tuple[int, str]:
        """Evaluation order within a tier: priority, then name.

        The API leaves equal priorities to the implementation ("can apply any of the
        matching policies"); the name makes our choice stable and visible.
        """
        return (self.priority, self.name)

    def rules(self, direction: Direction) -> tuple[ClusterRule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

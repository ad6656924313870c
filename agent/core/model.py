"""The domain model: frozen values holding only what NetworkPolicy semantics need.

Kubernetes objects are converted into these types once, at the edge
(`agent.core.convert` for plain dicts, `agent.kube` for the official client's
objects). Everything downstream (semantics, compile, render, trace) works on
these values only. They are immutable and hashable so that they can be shared
between threads, cached and compared cheaply.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from agent.core.errors import FieldError

if TYPE_CHECKING:
    from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy


class Protocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Direction(enum.Enum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class Family(enum.IntEnum):
    V4 = 4
    V6 = 6


class Operator(enum.Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


def family_of(address: str) -> Family:
    """The address family of an IP address or CIDR string."""
    return Family.V6 if ":" in address else Family.V4


class Labels(Mapping[str, str]):
    """An immutable, hashable label map."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(items or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"

    def with_label(self, key: str, value: str) -> Labels:
        return Labels({**self._items, key: value})

    def without(self, key: str) -> Labels:
        return Labels({k: v for k, v in self._items.items() if k != key})


EMPTY_LABELS = Labels()


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A label selector; the empty selector (no labels, no expressions) matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


MATCH_ALL = LabelSelector()


@dataclass(frozen=True, slots=True)
class ContainerPort:
    port: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels = EMPTY_LABELS


class PodPhase(enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    uid: str
    labels: Labels = EMPTY_LABELS
    ips: tuple[str, ...] = ()
    node: str | None = None
    host_network: bool = False
    phase: PodPhase = PodPhase.RUNNING
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_networked(self) -> bool:
        """True if the pod takes part in NetworkPolicy at all (as target or peer).

        hostNetwork pods, pods without an IP and finished pods are neither
        targets nor peers.
        """
        return (
            not self.host_network
            and bool(self.ips)
            and self.phase not in (PodPhase.SUCCEEDED, PodPhase.FAILED)
        )

    def ips_of(self, family: Family) -> tuple[str, ...]:
        return tuple(ip for ip in self.ips if family_of(ip) is family)


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    excepts: tuple[str, ...] = ()

    @property
    def family(self) -> Family:
        return family_of(self.cidr)

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        net = ipaddress.ip_network(self.cidr, strict=False)
        if addr.version != net.version or addr not in net:
            return False
        return not any(addr in ipaddress.ip_network(e, strict=False) for e in self.excepts)


@dataclass(frozen=True, slots=True)
class Peer:
    """One `from`/`to` entry: selectors (ANDed when both set) or an ipBlock.

    pod_selector None with namespace_selector set means "all pods in the
    selected namespaces"; namespace_selector None with pod_selector set means
    "pods in the policy's own namespace".
    """

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """A ports entry. port None means all ports of the protocol; str is a named port."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One ingress or egress rule. Empty peers: all sources/destinations. Empty ports: all."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """A NetworkPolicy after conversion and validation.

    When `errors` is non-empty the policy is invalid: it still isolates the
    pods it selects for its policy types, but contributes no allow rules
    (fail closed). If even its podSelector is unusable, it selects every pod
    of its namespace.

    `audit` (annotation `netpol-agent.io/enforcement: audit`, or the agent's
    `--enforcement audit`): evaluated as if enforced, enforcing nothing. It does
    not isolate on its own; what it would drop flows and is reported as `audit`.
    """

    namespace: str
    name: str
    pod_selector: LabelSelector = MATCH_ALL
    policy_types: frozenset[Direction] = frozenset({Direction.INGRESS})
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    uid: str = ""
    errors: tuple[FieldError, ...] = ()
    audit: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def enforced(self) -> bool:
        return not self.audit

    @property
    def valid(self) -> bool:
        return not self.errors

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        if self.errors:
            return ()
        return self.ingress if direction is Direction.INGRESS else self.egress


ENFORCEMENT_ANNOTATION = "netpol-agent.io/enforcement"
ENFORCEMENT_MODES = ("enforce", "audit")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    addresses: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    labels: Labels = EMPTY_LABELS


@dataclass(frozen=True, slots=True)
class ClusterState:
    """Everything the engine needs to know about the cluster, as one value.

    pods are keyed by UID (IPs and names get reused); policies by "ns/name";
    cluster_policies (ClusterNetworkPolicy, cluster-scoped) by name.
    """

    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    pods: Mapping[str, Pod] = field(default_factory=dict)
    policies: Mapping[str, NetworkPolicy] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    cluster_policies: Mapping[str, ClusterNetworkPolicy] = field(default_factory=dict)

    def enforced_only(self) -> ClusterState:
        """This state without its audited policies: what the kernel enforces."""
        if not any(p.audit for p in self.policies.values()):
            return self
        kept = {k: p for k, p in self.policies.items() if not p.audit}
        return replace(self, policies=kept)

    def audit_enforced(self) -> ClusterState:
        """This state with every audited policy enforced: what audit mode evaluates."""
        if not any(p.audit for p in self.policies.values()):
            return self
        policies = {k: replace(p, audit=False) for k, p in self.policies.items()}
        return replace(self, policies=policies)

    def all_audited(self) -> ClusterState:
        """`--enforcement audit`: every policy audited."""
        policies = {k: replace(p, audit=True) for k, p in self.policies.items()}
        return replace(self, policies=policies)

    def namespace_labels(self, name: str) -> Labels:
        ns = self.namespaces.get(name)
        if ns is None:
            return Labels({"kubernetes.io/metadata.name": name})
        return ns.labels

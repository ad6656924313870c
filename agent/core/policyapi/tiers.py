"""The tier steps of the reference evaluator: which ClusterNetworkPolicy rule decides.

The v1alpha2 API orders evaluation in tiers: "Admin tier, NetworkPolicy tier,
Baseline tier ... If a given connection wasn't allowed or denied by any of the
tiers, the default kubernetes policy is applied" (all pods communicate). Within
a tier, policies go by priority ("lower priority values have higher
precedence"), then rules by position ("a rule that appears at the top ...
would take the highest precedence"); the first rule whose peers and protocols
match decides: Accept and Deny are final for the direction, Pass "skips all
further ClusterNetworkPolicy rules in the current tier". Equal priorities are
left to implementations; we take the policy name as the tie-break.

`ClusterTiers.match` answers one side (the source's egress or the destination's
ingress) for one tier; `agent.core.semantics` strings the steps together. Each
predicate quotes the API's field documentation.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from agent.core.explain import TierDecision
from agent.core.model import ClusterState, Direction, LabelSelector, Pod, Protocol
from agent.core.policyapi.cnpmodel import (
    Action,
    ClusterNetworkPolicy,
    ClusterPeer,
    ClusterPort,
    ClusterRule,
    PeerKind,
    Tier,
)
from agent.core.selectors import format_selector, selector_matches

# (policy name, direction, rule index, peer index)
CnpPeerKey = tuple[str, Direction, int, int]


@dataclass(frozen=True, slots=True)
class TierHit:
    """The rule that decided one side in one tier, and the peer and port that matched."""

    policy: ClusterNetworkPolicy
    direction: Direction
    rule_index: int
    peer_index: int
    port: ClusterPort | None

    @property
    def rule(self) -> ClusterRule:
        return self.policy.rules(self.direction)[self.rule_index]

    @property
    def action(self) -> Action:
        return self.rule.action


def subject_selects(policy: ClusterNetworkPolicy, pod: Pod, ns_labels: Mapping[str, str]) -> bool:
    """subject: "namespaces is used to select pods via namespace selectors", "pods ... via
    namespace AND pod selectors"; "host-networked pods are not included in subject
    selection" (the evaluator only hands us networked pods)."""
    sub = policy.subject
    return selector_matches(sub.namespace_selector, ns_labels) and selector_matches(
        sub.pod_selector, pod.labels
    )


def peer_selects_pod(peer: ClusterPeer, pod: Pod, ns_labels: Mapping[str, str]) -> bool:
    """namespaces: "select all pods within a set of Namespaces"; pods: "a set of pods in a
    set of namespaces"; neither includes host-networked pods."""
    if peer.kind is PeerKind.NAMESPACES:
        return selector_matches(peer.namespace_selector, ns_labels)
    if peer.kind is PeerKind.PODS:
        return selector_matches(peer.namespace_selector, ns_labels) and selector_matches(
            peer.pod_selector, pod.labels
        )
    return False


@functools.lru_cache(maxsize=4096)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@functools.lru_cache(maxsize=65536)
def ip_in_networks(cidrs: tuple[str, ...], ip: str) -> bool:
    """networks: "select peers via CIDR blocks ... cluster-internal traffic will be checked
    against the rule as well" (pod addresses too). Families never mix."""
    addr = ipaddress.ip_address(ip)
    return any(addr.version == n.version and addr in n for n in _networks(cidrs))


def cluster_port_matches(cp: ClusterPort, port: int, protocol: Protocol, dst: Pod | None) -> bool:
    """protocols: tcp/udp/sctp "destinationPort" is a "number" or an inclusive "range";
    destinationNamedPort "selects a destination port on a pod based on the ContainerPort
    name" (the destination pod's containerPort with that name, number and protocol)."""
    if cp.name is not None:
        return dst is not None and any(
            c.name == cp.name and c.port == port and c.protocol is protocol for c in dst.ports
        )
    if cp.protocol is not protocol:
        return False
    if cp.port is None:
        return True
    if cp.end_port is None:
        return port == cp.port
    return cp.port <= port <= cp.end_port


class ClusterTiers:
    """The ClusterNetworkPolicies of one ClusterState, indexed for `match`."""

    def __init__(self, state: ClusterState, pods: Mapping[str, Pod]) -> None:
        self._ns_labels = {
            ns: state.namespace_labels(ns) for ns in {p.namespace for p in pods.values()}
        }
        ordered = sorted(state.cluster_policies.values(), key=lambda p: p.order)
        self._subjects: dict[tuple[Tier, str], tuple[ClusterNetworkPolicy, ...]] = {}
        for tier in Tier:
            in_tier = [p for p in ordered if p.tier is tier]
            for uid, pod in pods.items():
                labels = self._ns_labels[pod.namespace]
                chosen = tuple(p for p in in_tier if subject_selects(p, pod, labels))
                if chosen:
                    self._subjects[(tier, uid)] = chosen
        self._peer_pods: dict[CnpPeerKey, frozenset[str]] = {}
        self._peer_ips: dict[CnpPeerKey, frozenset[str]] = {}
        for policy in ordered:
            for direction in Direction:
                for ri, rule in enumerate(policy.rules(direction)):
                    for pi, peer in enumerate(rule.peers):
                        key = (policy.name, direction, ri, pi)
                        if peer.kind is PeerKind.NODES:
                            self._peer_ips[key] = _node_addresses(state, peer.node_selector)
                        elif peer.kind in (PeerKind.NAMESPACES, PeerKind.PODS):
                            self._peer_pods[key] = frozenset(
                                uid
                                for uid, pod in pods.items()
                                if peer_selects_pod(peer, pod, self._ns_labels[pod.namespace])
                            )

    def selecting(self, tier: Tier, pod: Pod) -> tuple[ClusterNetworkPolicy, ...]:
        """The policies of `tier` whose subject holds `pod`, in evaluation order."""
        return self._subjects.get((tier, pod.uid), ())

    def match(
        self,
        tier: Tier,
        direction: Direction,
        target: Pod,
        other_pod: Pod | None,
        other_ip: str,
        port: int,
        protocol: Protocol,
        dst: Pod | None,
    ) -> TierHit | None:
        """The first rule of `tier` (policy order, then rule order) that matches, if any.

        target is the subject side (the source for egress, the destination for
        ingress); other_pod is the other end when it is a networked pod.
        """
        for policy in self._subjects.get((tier, target.uid), ()):
            for ri, rule in enumerate(policy.rules(direction)):
                if rule.ports:
                    hit_port = next(
                        (p for p in rule.ports if cluster_port_matches(p, port, protocol, dst)),
                        None,
                    )
                    if hit_port is None:
                        continue
                else:
                    hit_port = None
                for pi, peer in enumerate(rule.peers):
                    if self._peer_matches(
                        peer, (policy.name, direction, ri, pi), other_pod, other_ip
                    ):
                        return TierHit(policy, direction, ri, pi, hit_port)
        return None

    def _peer_matches(
        self, peer: ClusterPeer, key: CnpPeerKey, other_pod: Pod | None, other_ip: str
    ) -> bool:
        kind = peer.kind
        if kind is PeerKind.ALL:
            return True
        if kind is PeerKind.NETWORKS:
            return ip_in_networks(peer.networks, other_ip)
        if kind is PeerKind.NODES:
            return other_ip in self._peer_ips[key]
        return other_pod is not None and other_pod.uid in self._peer_pods[key]


def _node_addresses(state: ClusterState, selector: LabelSelector) -> frozenset[str]:
    """nodes: "selects the nodeIPs ... present in the node.Status.Addresses field";
    "if present but empty, it selects all Nodes"."""
    return frozenset(
        addr
        for node in state.nodes.values()
        if selector_matches(selector, node.labels)
        for addr in node.addresses
    )


def describe_cluster_peer(peer: ClusterPeer) -> str:
    if peer.kind is PeerKind.NAMESPACES:
        return f"namespaces {format_selector(peer.namespace_selector)}"
    if peer.kind is PeerKind.PODS:
        return (
            f"pods {format_selector(peer.pod_selector)} in namespaces "
            f"{format_selector(peer.namespace_selector)}"
        )
    if peer.kind is PeerKind.NODES:
        return f"nodes {format_selector(peer.node_selector)}"
    if peer.kind is PeerKind.NETWORKS:
        return f"networks {', '.join(peer.networks)}"
    return "everything (the rule failed closed)"


def describe_cluster_port(
    cp: ClusterPort | None, port: int, protocol: Protocol, dst: Pod | None
) -> str:
    if cp is None:
        return "any port (the rule has no protocols)"
    if cp.name is not None:
        on = f" on {dst.key}" if dst is not None else ""
        return f"named port {cp.name} (= {port}/{protocol.value}{on})"
    assert cp.protocol is not None
    if cp.port is None:
        return f"all {cp.protocol.value} ports"
    if cp.end_port is not None:
        return f"ports {cp.port}-{cp.end_port}/{cp.protocol.value}"
    return f"port {cp.port}/{cp.protocol.value}"


def decision(hit: TierHit, port: int, protocol: Protocol, dst: Pod | None) -> TierDecision:
    """The explanation value of a hit."""
    rule = hit.rule
    peer = (
        f"peer {hit.peer_index}: {describe_cluster_peer(rule.peers[hit.peer_index])}"
        if rule.peers
        else "no peer"
    )
    return TierDecision(
        tier=hit.policy.tier.value,
        policy=hit.policy.name,
        priority=hit.policy.priority,
        direction=hit.direction,
        rule_index=hit.rule_index,
        rule_name=rule.name,
        action=rule.action.value,
        peer=peer,
        port=describe_cluster_port(hit.port, port, protocol, dst),
        invalid=not hit.policy.valid,
    )

"""Turn a packet the drop path logged into an event naming pods and policies.

The drop path logs each dropped (or audited) packet with a short prefix,
`log_prefix()`: `npa:` + action letter (D drop, A audit) + direction letter
(I ingress, E egress), then optionally a space and the local pod's `ns/name`,
cut to the kernel's 63 bytes. The drop path is shared by every pod (one rule
per direction and action, constant cost, no rule rewritten when pods come and
go), so its prefix is `npa:DI`: the packet's addresses name the pods. The event
names what a person fixing a policy needs:

    node, action, direction, pod (the local pod, ns/name), peer (a pod's
    ns/name when the address is a pod's, else the address), protocol, port
    (destination port; null for ICMP), policies (the policies isolating the
    pod in that direction: the enforced ones for `drop`, the audited ones for
    `audit`; for a drop a ClusterNetworkPolicy Deny decided, that rule alone:
    `guard (Admin Deny, ingress rule 1 "deny-rest")`), time

Names come from the cluster state the agent holds (`EventNamer`): the packet's
addresses say which pods; the prefix says action and direction, and names the
pod if its address is no longer known (the pod was deleted since). Pure: bytes
and state in, an event out.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.matching import policy_selects
from agent.core.model import ClusterState, Direction, Pod, Protocol
from agent.core.packets import PacketInfo, decode_packet
from agent.core.policyapi.cnpmodel import Action, Tier
from agent.core.policyapi.tiers import ClusterTiers

ACTION_DROP = "drop"
ACTION_AUDIT = "audit"
PREFIX_TAG = "npa:"
MAX_PREFIX = 63  # NFLOG prefix: 64 bytes with the terminating NUL
_ACTIONS = {ACTION_DROP: "D", ACTION_AUDIT: "A"}
_DIRECTIONS = {Direction.INGRESS: "I", Direction.EGRESS: "E"}


def log_prefix(action: str, direction: Direction, pod_key: str = "") -> str:
    """The NFLOG prefix of a drop (or audit) rule, at most 63 bytes; `npa:DI [ns/name]`."""
    text = f"{PREFIX_TAG}{_ACTIONS[action]}{_DIRECTIONS[direction]}"
    if pod_key:
        text += " " + pod_key.encode("ascii", "replace").decode("ascii")
    return text[:MAX_PREFIX]


@dataclass(frozen=True, slots=True)
class Prefix:
    action: str
    direction: Direction
    pod: str  # possibly cut short; "" when the rule is shared by every pod


def parse_prefix(prefix: str) -> Prefix | None:
    """The action, direction and pod of one of our prefixes; None if it is not ours."""
    if not prefix.startswith(PREFIX_TAG) or len(prefix) < len(PREFIX_TAG) + 2:
        return None
    if len(prefix) > len(PREFIX_TAG) + 2 and prefix[len(PREFIX_TAG) + 2] != " ":
        return None
    a, d = prefix[len(PREFIX_TAG)], prefix[len(PREFIX_TAG) + 1]
    actions = {v: k for k, v in _ACTIONS.items()}
    directions = {v: k for k, v in _DIRECTIONS.items()}
    if a not in actions or d not in directions:
        return None
    return Prefix(actions[a], directions[d], prefix[len(PREFIX_TAG) + 3 :])


EventKey = tuple[str, str, str, str, str, str, int | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class DropEvent:
    node: str
    action: str  # drop | audit
    direction: str  # ingress | egress
    pod: str  # ns/name of the local pod
    peer: str  # ns/name of the peer pod, else its address
    protocol: str  # TCP UDP SCTP ICMP ICMPv6 or the protocol number
    port: int | None  # destination port (TCP/UDP/SCTP)
    policies: tuple[str, ...]  # ns/name of the policies isolating pod in direction
    time: float

    @property
    def key(self) -> EventKey:
        """What aggregation groups by: everything but the time."""
        return (
            self.node,
            self.action,
            self.direction,
            self.pod,
            self.peer,
            self.protocol,
            self.port,
            self.policies,
        )


class EventNamer:
    """Names the pods and policies of logged packets, for one node and one cluster state."""

    def __init__(self, state: ClusterState, node: str) -> None:
        self.state = state
        self.node = node
        self._by_ip: dict[str, Pod] = {}
        for pod in sorted(state.pods.values(), key=lambda p: (p.namespace, p.name, p.uid)):
            if pod.is_networked:
                for ip in pod.ips:
                    # A local pod wins an address shared with a stale pod elsewhere.
                    if ip not in self._by_ip or pod.node == node:
                        self._by_ip[ip] = pod
        self._memo: dict[tuple[str, Direction, bool], tuple[str, ...]] = {}
        networked = {uid: p for uid, p in state.pods.items() if p.is_networked}
        self._tiers = ClusterTiers(state, networked) if state.cluster_policies else None

    def event(self, *, prefix: str, family: int, payload: bytes, time: float) -> DropEvent | None:
        """The event of one logged packet; None when the prefix is not ours."""
        tag = parse_prefix(prefix)
        if tag is None:
            return None
        info = decode_packet(family, payload)
        direction = tag.direction.value.lower()
        if info is None:
            return DropEvent(
                self.node, tag.action, direction, tag.pod, "", "unknown", None, (), time
            )
        local_ip, peer_ip = (
            (info.dst, info.src) if tag.direction is Direction.INGRESS else (info.src, info.dst)
        )
        local = self._by_ip.get(local_ip)
        peer = self._by_ip.get(peer_ip)
        pod = local.key if local is not None else tag.pod
        policies = (
            self.policies(local, tag.direction, audit=tag.action == ACTION_AUDIT)
            if local is not None
            else ()
        )
        if local is not None and tag.action == ACTION_DROP:
            policies = self.cluster_policy(local, peer, peer_ip, tag.direction, info) or policies
        return DropEvent(
            node=self.node,
            action=tag.action,
            direction=direction,
            pod=pod,
            peer=peer.key if peer is not None else peer_ip,
            protocol=info.protocol,
            port=_port(info),
            policies=policies,
            time=time,
        )

    def policies(self, pod: Pod, direction: Direction, *, audit: bool) -> tuple[str, ...]:
        """The enforced (or audited) policies isolating `pod` in `direction`, sorted."""
        memo_key = (pod.uid, direction, audit)
        found = self._memo.get(memo_key)
        if found is None:
            found = tuple(
                sorted(
                    p.key
                    for p in self.state.policies.values()
                    if p.namespace == pod.namespace
                    and p.audit == audit
                    and direction in p.policy_types
                    and policy_selects(p, pod)
                )
            )
            self._memo[memo_key] = found
        return found

    def cluster_policy(
        self,
        local: Pod,
        peer: Pod | None,
        peer_ip: str,
        direction: Direction,
        info: PacketInfo,
    ) -> tuple[str, ...]:
        """The ClusterNetworkPolicy rule that denied the packet, if one did: `name (Admin
        Deny, ingress rule 1 "deny-rest")`. An Admin Deny decides before any NetworkPolicy;
        a Baseline Deny only for a pod no enforced NetworkPolicy isolates."""
        if self._tiers is None or info.dport is None or info.protocol not in _PROTOCOLS:
            return ()
        protocol = Protocol(info.protocol)
        dst = local if direction is Direction.INGRESS else peer
        peer = peer if peer is not None and peer.is_networked else None
        for tier in (Tier.ADMIN, Tier.BASELINE):
            if tier is Tier.BASELINE and self.policies(local, direction, audit=False):
                return ()
            hit = self._tiers.match(
                tier, direction, local, peer, peer_ip, info.dport, protocol, dst
            )
            if hit is not None and hit.action is not Action.PASS:
                if hit.action is not Action.DENY:
                    return ()
                name = f' "{hit.rule.name}"' if hit.rule.name else ""
                side = direction.value.lower()
                return (
                    f"{hit.policy.name} ({tier.value} Deny, {side} rule {hit.rule_index}{name})",
                )
        return ()


_PROTOCOLS = frozenset(p.value for p in Protocol)


def _port(info: PacketInfo) -> int | None:
    return info.dport

"""The reference evaluator: NetworkPolicy semantics written the way the API docs say them.

This is the oracle. The kernel dataplane, the compiler and the packet tracer
are all checked against it, so it is deliberately plain: each rule of the API
documentation (networking.k8s.io/v1, quoted in the comments) is one small
function (`agent.core.matching`). The only cleverness is that selectors are
evaluated once per policy and peer in `__init__` (sets of pod UIDs), and that
`allowed()` for pod pairs answers from per-(port, pod) memos
(`agent.core.admission`); `explain()` walks every rule the plain way, and tests
hold the two paths to the same answers.

ClusterNetworkPolicy tiers (policy.networking.k8s.io/v1alpha2) wrap each side:
Admin rules first (an Accept or Deny decides, a Pass goes on), then the
NetworkPolicies, then, only for a pod no NetworkPolicy isolates for the
direction, the Baseline rules, then allow (`agent.core.policyapi.tiers`).

Choices the API leaves to implementations (see docs/limitations.md):
- an ipBlock matches any address, pod IPs included;
- "traffic to and from the node where a Pod is running is always allowed":
  from the destination's own node addresses (status.addresses and the bridge
  gateway, the first address of each podCIDR) in (kubelet probes), and from a
  pod out to its own node's addresses and to the hostNetwork pods on its node;
  other nodes (and hostNetwork pods there, which are addresses, not targets or
  peers) get no special pass: only ipBlocks can admit them;
- a pod to itself is always allowed (the packet never leaves its namespace);
- pod to pod uses the destination's primary (first) family the source also has.
"""

from __future__ import annotations

import ipaddress

from agent.core.admission import Admission, PeerKey, build_admission
from agent.core.errors import InputError
from agent.core.explain import (
    DirectionVerdict,
    Explanation,
    RuleMatch,
    describe_peer,
    describe_port,
)
from agent.core.matching import ip_in_block, peer_selects_pod, policy_selects, port_matches
from agent.core.model import (
    ClusterState,
    Direction,
    Family,
    NetworkPolicy,
    Pod,
    Protocol,
    Rule,
    family_of,
)
from agent.core.policyapi.cnpmodel import Action, Tier
from agent.core.policyapi.tiers import ClusterTiers, decision

Endpoint = Pod | str
__all__ = [
    "Endpoint",
    "ReferenceEvaluator",
    "ip_in_block",
    "peer_selects_pod",
    "policy_selects",
    "port_matches",
]


class ReferenceEvaluator:
    """Answers "may src reach dst on port/protocol?" for one ClusterState."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        # "Pods with hostNetwork, without an IP, or in phase Succeeded/Failed are
        # neither targets nor peers."
        self.pods = {uid: p for uid, p in state.pods.items() if p.is_networked}
        # Audited policies enforce nothing (agent.core.audit evaluates them apart).
        self.policies = sorted(
            (p for p in state.policies.values() if p.enforced), key=lambda p: p.key
        )
        self._isolating: dict[tuple[str, Direction], list[NetworkPolicy]] = {}
        self._peer_pods: dict[PeerKey, frozenset[str]] = {}
        ns_labels = {
            ns: state.namespace_labels(ns) for ns in {p.namespace for p in self.pods.values()}
        }
        for policy in self.policies:
            for pod in self.pods.values():
                if not policy_selects(policy, pod):
                    continue
                # "A pod is isolated for a direction only when a policy with that
                # type selects it." (policyTypes; invalid policies isolate too.)
                for direction in policy.policy_types:
                    self._isolating.setdefault((pod.uid, direction), []).append(policy)
            for direction in Direction:
                for ri, rule in enumerate(policy.rules(direction)):
                    for pi, peer in enumerate(rule.peers):
                        self._peer_pods[(policy.key, direction, ri, pi)] = frozenset(
                            uid
                            for uid, pod in self.pods.items()
                            if peer_selects_pod(policy, peer, pod, ns_labels[pod.namespace])
                        )
        # Each pod's first address per family, primary family first.
        self._ips: dict[str, dict[Family, str]] = {}
        for uid, p in self.pods.items():
            firsts: dict[Family, str] = {}
            for ip in p.ips:
                firsts.setdefault(family_of(ip), ip)
            self._ips[uid] = firsts
        self._memos: dict[
            tuple[int, Protocol], tuple[dict[str, Admission | None], dict[str, Admission | None]]
        ] = {}
        self._tiers = ClusterTiers(state, self.pods) if state.cluster_policies else None
        self._node_addresses: dict[str, frozenset[str]] = {}
        for node in state.nodes.values():
            addrs = set(node.addresses)
            for cidr in node.pod_cidrs:  # the bridge gateway: first address of the pod CIDR
                net = ipaddress.ip_network(cidr, strict=False)
                addrs.add(str(net.network_address + 1))
            self._node_addresses[node.name] = frozenset(addrs)

    # -- public API -----------------------------------------------------------------

    def allowed(
        self,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: Protocol,
        *,
        family: Family | None = None,
    ) -> bool:
        pods = self.pods
        if type(src) is Pod and type(dst) is Pod and src.uid in pods and dst.uid in pods:
            # The common case (every cell of a truth table), answered from memos per
            # (port, protocol) and pod. Same answers as _evaluate: tests hold them to it.
            if src.uid == dst.uid:
                return True
            src_ips, dst_ips = self._ips[src.uid], self._ips[dst.uid]
            picked = None
            if family is None:
                for f in dst_ips:
                    if f in src_ips:
                        picked = f
                        break
            elif family in src_ips and family in dst_ips:
                picked = family
            if picked is None:
                return False
            memo = self._memos.get((port, protocol))
            if memo is None:
                memo = self._memos[(port, protocol)] = ({}, {})
            return self._admits(
                memo[0], Direction.EGRESS, src, dst, dst_ips[picked], port, protocol, dst
            ) and self._admits(
                memo[1], Direction.INGRESS, dst, src, src_ips[picked], port, protocol, dst
            )
        return self._evaluate(src, dst, port, protocol, family, explain=False).allowed

    def explain(
        self,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: Protocol,
        *,
        family: Family | None = None,
    ) -> Explanation:
        return self._evaluate(src, dst, port, protocol, family, explain=True)

    def isolating(self, pod: Pod, direction: Direction) -> tuple[NetworkPolicy, ...]:
        """The policies that isolate `pod` for `direction` (valid or not)."""
        return tuple(self._isolating.get((pod.uid, direction), ()))

    def node_addresses(self, node: str | None) -> frozenset[str]:
        return self._node_addresses.get(node or "", frozenset())

    # -- the evaluation ---------------------------------------------------------------

    def _admits(
        self,
        memo: dict[str, Admission | None],
        direction: Direction,
        target: Pod,
        other: Pod,
        other_ip: str,
        port: int,
        protocol: Protocol,
        dst: Pod,
    ) -> bool:
        """_side(...).allowed for two networked pods, through `memo` (target uid -> admission)."""
        tiers = self._tiers
        if tiers is not None:
            hit = tiers.match(Tier.ADMIN, direction, target, other, other_ip, port, protocol, dst)
            if hit is not None and hit.action is not Action.PASS:
                return hit.action is Action.ACCEPT
        try:
            adm = memo[target.uid]
        except KeyError:
            adm = memo[target.uid] = build_admission(
                self._isolating.get((target.uid, direction), ()),
                direction,
                target,
                port,
                protocol,
                self._peer_pods,
            )
        if adm is None:
            if tiers is None:
                return True
            hit = tiers.match(
                Tier.BASELINE, direction, target, other, other_ip, port, protocol, dst
            )
            return hit is None or hit.action is not Action.DENY
        if adm.anyone or other.uid in adm.pods:
            return True
        if adm.blocks and any(ip_in_block(b, other_ip) for b in adm.blocks):
            return True
        return bool(adm.per_peer) and any(
            self._rule_match(
                p, direction, ri, p.rules(direction)[ri], other, other_ip, port, protocol, dst
            )
            is not None
            for p, ri in adm.per_peer
        )

    def _evaluate(
        self,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: Protocol,
        family: Family | None,
        *,
        explain: bool,
    ) -> Explanation:
        src, dst = _canonical(src), _canonical(dst)
        s_name = src.key if isinstance(src, Pod) else src
        d_name = dst.key if isinstance(dst, Pod) else dst

        def verdict(ok: bool, summary: str, **sides: DirectionVerdict | None) -> Explanation:
            return Explanation(s_name, d_name, port, protocol, ok, summary, **sides)

        if isinstance(src, Pod) and isinstance(dst, Pod) and src.uid == dst.uid:
            return verdict(True, "same pod: the traffic never leaves its network namespace")
        if isinstance(dst, Pod) and not dst.is_networked and not (dst.host_network and dst.ips):
            return verdict(False, f"the destination {_why_not_networked(dst)}")
        src_pod: Pod | None = None
        if isinstance(src, Pod):
            if src.is_networked:
                src_pod = src
            elif not (src.host_network and src.ips):
                return verdict(False, f"the source {_why_not_networked(src)}")
        # A hostNetwork pod is not a target or a peer: it is its node's address, and
        # the other end's policies see it as that (only ipBlocks can match it).
        dst_pod = dst if isinstance(dst, Pod) and dst.is_networked else None
        picked = _pick_family(src, dst, family)
        if picked is None:
            return verdict(False, "the source and destination share no address family")
        src_ip = src if isinstance(src, str) else src.ips_of(picked)[0]
        # "IP blocks (exception: traffic to and from the node where a Pod is running is
        # always allowed, regardless of the IP address of the Pod or the node)"
        # (concepts/services-networking/network-policies). From: the node -> its pods.
        if dst_pod is not None and src_pod is None:
            node_addrs = self.node_addresses(dst_pod.node)
            if src_ip in node_addrs:
                return verdict(
                    True,
                    f"{src_ip} is an address of {dst_pod.node}, the destination's own node: "
                    "always allowed (kubelet probes)",
                )
        # To: a pod -> its own node (its addresses, its gateway, its hostNetwork pods).
        if src_pod is not None and dst_pod is None:
            node, dst_ip = src_pod.node, _ip_of(dst, picked)
            if isinstance(dst, Pod) and node is not None and dst.node == node:
                return verdict(
                    True,
                    f"{d_name} uses the host network of {node}, the source's own node: "
                    "always allowed (traffic to the pod's node)",
                )
            if dst_ip in self.node_addresses(node):
                return verdict(
                    True,
                    f"{dst_ip} is an address of {node}, the source's own node: "
                    "always allowed (traffic to the pod's node)",
                )
        # "a connection needs the source's egress and the destination's ingress"
        egress = None
        if src_pod is not None:
            egress = self._side(
                Direction.EGRESS,
                src_pod,
                dst_pod,
                _ip_of(dst, picked),
                port,
                protocol,
                dst_pod,
                explain,
            )
        ingress = None
        if dst_pod is not None:
            ingress = self._side(
                Direction.INGRESS, dst_pod, src_pod, src_ip, port, protocol, dst_pod, explain
            )
        ok = (egress is None or egress.allowed) and (ingress is None or ingress.allowed)
        summary = ""
        if src_pod is None:
            summary = f"the source {s_name} {_not_a_pod(src)}: only ipBlocks can match it"
        elif dst_pod is None:
            summary = f"the destination {d_name} {_not_a_pod(dst)}: only ipBlocks can match it"
        return verdict(ok, summary, egress=egress, ingress=ingress)

    def _side(
        self,
        direction: Direction,
        target: Pod,
        other_pod: Pod | None,
        other_ip: str,
        port: int,
        protocol: Protocol,
        dst: Pod | None,
        explain: bool,
    ) -> DirectionVerdict:
        """One side: the Admin tier, then is `target` isolated for `direction` and does a
        rule allow the other end, then (not isolated) the Baseline tier."""
        admin = baseline = None
        tiers = self._tiers
        if tiers is not None:
            hit = tiers.match(
                Tier.ADMIN, direction, target, other_pod, other_ip, port, protocol, dst
            )
            if hit is not None:
                admin = decision(hit, port, protocol, dst)
                if hit.action is not Action.PASS:
                    # "If Admin tier has made a final decision (Accept or Deny) on a
                    # connection, then no further evaluation is done."
                    return DirectionVerdict(
                        direction, target.key, hit.action is Action.ACCEPT, admin=admin
                    )
        policies = self._isolating.get((target.uid, direction), [])
        if not policies:
            # "If no policies select a pod for a direction, all traffic is allowed."
            # ClusterNetworkPolicy: "Further evaluation only happens for Pods not
            # selected by a v1.NetworkPolicy": the Baseline tier, then allow.
            allowed = True
            if tiers is not None:
                hit = tiers.match(
                    Tier.BASELINE, direction, target, other_pod, other_ip, port, protocol, dst
                )
                if hit is not None:
                    baseline = decision(hit, port, protocol, dst)
                    allowed = hit.action is not Action.DENY
            return DirectionVerdict(
                direction,
                target.key,
                allowed,
                note=f"not isolated: no policy with policyType {direction.value} selects it",
                admin=admin,
                baseline=baseline,
            )
        matches: list[RuleMatch] = []
        for policy in policies:
            # policy.rules() is () for an invalid policy: it isolates but allows nothing.
            for ri, rule in enumerate(policy.rules(direction)):
                match = self._rule_match(
                    policy, direction, ri, rule, other_pod, other_ip, port, protocol, dst
                )
                if match is not None:
                    matches.append(match)
                    if not explain:
                        return DirectionVerdict(direction, target.key, True)
        return DirectionVerdict(
            direction,
            target.key,
            bool(matches),
            isolated_by=tuple(p.key for p in policies),
            invalid=tuple(p.key for p in policies if not p.valid),
            allowed_by=tuple(matches),
            admin=admin,
        )

    def _rule_match(
        self,
        policy: NetworkPolicy,
        direction: Direction,
        ri: int,
        rule: Rule,
        other_pod: Pod | None,
        other_ip: str,
        port: int,
        protocol: Protocol,
        dst: Pod | None,
    ) -> RuleMatch | None:
        """A rule allows when one of its peers and one of its ports match.

        from/to: "If this field is empty or missing, this rule matches all sources
        (destinations) ... If this field is present and contains at least one item,
        this rule allows traffic only if the traffic matches at least one item in the
        from (to) list." ports: "If this field is empty or missing, this rule matches
        all ports ... at least one item in this list."
        """
        if rule.ports:
            hit = next((pp for pp in rule.ports if port_matches(pp, port, protocol, dst)), None)
            if hit is None:
                return None
            port_text = describe_port(hit)
            if isinstance(hit.port, str) and dst is not None:
                port_text += f" (= {port} on {dst.key})"
        else:
            port_text = "any port (the rule has no ports)"
        if not rule.peers:
            return RuleMatch(
                policy.key,
                direction,
                ri,
                f"any {'source' if direction is Direction.INGRESS else 'destination'}",
                port_text,
            )
        for pi, peer in enumerate(rule.peers):
            if peer.ip_block is not None:
                hit_peer = ip_in_block(peer.ip_block, other_ip)
            else:
                hit_peer = (
                    other_pod is not None
                    and other_pod.uid in self._peer_pods[(policy.key, direction, ri, pi)]
                )
            if hit_peer:
                return RuleMatch(
                    policy.key,
                    direction,
                    ri,
                    f"peer {pi}: {describe_peer(peer, policy.namespace)}",
                    port_text,
                )
        return None


def _canonical(end: Endpoint) -> Endpoint:
    if isinstance(end, Pod):
        return end
    try:
        return str(ipaddress.ip_address(end.strip()))
    except ValueError:
        raise InputError(f"{end!r} is neither a pod nor an IP address") from None


def _not_a_pod(end: Endpoint) -> str:
    return "uses the host network" if isinstance(end, Pod) else "is not a pod"


def _why_not_networked(pod: Pod) -> str:
    if pod.host_network:
        return f"{pod.key} uses the host network but has no IP"
    if not pod.ips:
        return f"{pod.key} has no IP"
    return f"{pod.key} is {pod.phase.value}"


def _families(end: Endpoint) -> list[Family]:
    if isinstance(end, str):
        return [family_of(end)]
    return list(dict.fromkeys(family_of(ip) for ip in end.ips))


def _pick_family(src: Endpoint, dst: Endpoint, family: Family | None) -> Family | None:
    shared = [f for f in _families(dst) if f in _families(src)]
    if family is not None:
        return family if family in shared else None
    return shared[0] if shared else None


def _ip_of(end: Endpoint, family: Family) -> str:
    return end if isinstance(end, str) else end.ips_of(family)[0]

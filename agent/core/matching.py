"""The predicates of NetworkPolicy v1, each quoting the API documentation.

Which pods a policy selects, which pods a peer selects, whether a ports entry
matches, whether an ipBlock holds an address. The reference evaluator
(`agent.core.semantics`) is built from these and nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from agent.core.model import IPBlock, NetworkPolicy, Peer, Pod, PolicyPort, Protocol
from agent.core.selectors import selector_matches


@functools.lru_cache(maxsize=65536)
def ip_in_block(block: IPBlock, ip: str) -> bool:
    """ipBlock: "a particular CIDR ... that is allowed ... except: a slice of CIDRs that
    should not be included within an IPBlock". Families never mix."""
    return block.contains(ip)


def policy_selects(policy: NetworkPolicy, pod: Pod) -> bool:
    """spec.podSelector "selects the pods to which this NetworkPolicy object applies ...
    An empty podSelector selects all pods in this namespace." (namespace-scoped)"""
    return pod.namespace == policy.namespace and selector_matches(policy.pod_selector, pod.labels)


def peer_selects_pod(
    policy: NetworkPolicy, peer: Peer, pod: Pod, ns_labels: Mapping[str, str]
) -> bool:
    """Does a selector peer select this pod?

    podSelector: "If namespaceSelector is also set, then the NetworkPolicyPeer as a
    whole selects the pods matching podSelector in the Namespaces selected by
    NamespaceSelector. Otherwise it selects the pods matching podSelector in the
    policy's own namespace." namespaceSelector: "If podSelector is also set, ...
    Otherwise it selects all pods in the namespaces selected by namespaceSelector."
    """
    if peer.ip_block is not None:
        return False
    if peer.namespace_selector is None:
        if pod.namespace != policy.namespace:
            return False
    elif not selector_matches(peer.namespace_selector, ns_labels):
        return False
    return peer.pod_selector is None or selector_matches(peer.pod_selector, pod.labels)


def port_matches(pp: PolicyPort, port: int, protocol: Protocol, dst: Pod | None) -> bool:
    """One NetworkPolicyPort.

    protocol: "The protocol (TCP, UDP, or SCTP) which traffic must match. If not
    specified, this field defaults to TCP." port: "The port on the given protocol.
    This can either be a numerical or named port on a pod. If this field is not
    provided, this matches all port names and numbers. If present, only traffic on
    the specified protocol AND port will be matched." endPort: "indicates that the
    range of ports from port to endPort if set, inclusive, should be allowed".
    A named port is resolved on the destination pod: one of its containerPorts must
    have that name, the protocol and the port number.
    """
    if pp.protocol is not protocol:
        return False
    if pp.port is None:
        return True
    if isinstance(pp.port, str):
        return dst is not None and any(
            cp.name == pp.port and cp.protocol is protocol and cp.port == port for cp in dst.ports
        )
    if pp.end_port is None:
        return port == pp.port
    return pp.port <= port <= pp.end_port

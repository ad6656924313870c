"""ClusterNetworkPolicy object dicts -> `cnpmodel` values, failing closed on errors.

Never raises: an object with errors converts to the reading that allows the
least, and keeps its `FieldError`s (reachability reports them and exits 2; the
agent logs them). The API's own rule for a peer it cannot read is "for Accept
rules, treat the rule as matching no traffic; for Deny and Pass rules, treat
the rule as a 'Deny all' rule". We apply it to any problem inside a rule:

- a problem inside one rule: an Accept rule matches nothing; a Deny or Pass rule
  (or one whose action is unreadable) becomes Deny, to and from everything;
- a problem of the policy itself (tier, priority, subject, spec): the policy
  becomes one Deny-all rule per direction, in the Admin tier ahead of every
  other rule (priority -1), for its subject, or every pod if the subject is
  unreadable too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from agent.core.convert import selector_from_dict
from agent.core.model import Direction, Protocol
from agent.core.policyapi.cnpmodel import (
    ALL_PEERS,
    Action,
    ClusterNetworkPolicy,
    ClusterPeer,
    ClusterPort,
    ClusterRule,
    PeerKind,
    Subject,
    Tier,
)
from agent.core.policyapi.cnpvalidate import is_rule_error, validate_cluster_policy

FAIL_CLOSED_PRIORITY = -1
_RULE = re.compile(r"^spec\.((?:ingress|egress)\[\d+\])")
_PROTOCOLS = {"tcp": Protocol.TCP, "udp": Protocol.UDP, "sctp": Protocol.SCTP}


def cluster_policy_from_dict(d: Mapping[str, Any]) -> ClusterNetworkPolicy:
    """A ClusterNetworkPolicy; never raises on an invalid object (errors kept, fail closed)."""
    errors = validate_cluster_policy(d)
    meta = _mapping(d.get("metadata")) if isinstance(d, Mapping) else {}
    spec = _mapping(d.get("spec")) if isinstance(d, Mapping) else {}
    name = str(meta.get("name") or "<unnamed>")
    uid = str(meta.get("uid") or "")
    policy_errors = [e for e in errors if not is_rule_error(e)]
    if policy_errors:
        subject_ok = not any(e.path.startswith("spec.subject") for e in policy_errors)
        subject = _subject(spec["subject"]) if subject_ok and "subject" in spec else Subject()
        deny = (ClusterRule("fail-closed", Action.DENY, (ALL_PEERS,), failed=True),)
        return ClusterNetworkPolicy(
            name, Tier.ADMIN, FAIL_CLOSED_PRIORITY, subject, deny, deny, uid, errors
        )
    broken = {m.group(1) for e in errors if (m := _RULE.match(e.path))}
    rules: dict[Direction, tuple[ClusterRule, ...]] = {}
    for direction, field, peer_field in (
        (Direction.INGRESS, "ingress", "from"),
        (Direction.EGRESS, "egress", "to"),
    ):
        rules[direction] = tuple(
            _failed_rule(raw) if f"{field}[{i}]" in broken else _rule(raw, peer_field)
            for i, raw in enumerate(spec.get(field) or ())
        )
    return ClusterNetworkPolicy(
        name=name,
        tier=Tier(spec["tier"]),
        priority=int(spec["priority"]),
        subject=_subject(spec["subject"]),
        ingress=rules[Direction.INGRESS],
        egress=rules[Direction.EGRESS],
        uid=uid,
        errors=errors,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _subject(raw: Mapping[str, Any]) -> Subject:
    if raw.get("namespaces") is not None:
        return Subject(namespace_selector=selector_from_dict(raw["namespaces"]))
    pods = raw["pods"]
    return Subject(
        namespace_selector=selector_from_dict(pods.get("namespaceSelector")),
        pod_selector=selector_from_dict(pods.get("podSelector")),
        by_pods=True,
    )


def _failed_rule(raw: Any) -> ClusterRule:
    rule = _mapping(raw)
    name = rule.get("name") if isinstance(rule.get("name"), str) else ""
    if rule.get("action") == "Accept":
        return ClusterRule(str(name), Action.ACCEPT, (), failed=True)  # matches nothing
    return ClusterRule(str(name), Action.DENY, (ALL_PEERS,), failed=True)


def _peer(raw: Mapping[str, Any]) -> ClusterPeer:
    if raw.get("namespaces") is not None:
        return ClusterPeer(
            PeerKind.NAMESPACES, namespace_selector=selector_from_dict(raw["namespaces"])
        )
    if raw.get("pods") is not None:
        pods = raw["pods"]
        return ClusterPeer(
            PeerKind.PODS,
            namespace_selector=selector_from_dict(pods.get("namespaceSelector")),
            pod_selector=selector_from_dict(pods.get("podSelector")),
        )
    if raw.get("nodes") is not None:
        return ClusterPeer(PeerKind.NODES, node_selector=selector_from_dict(raw["nodes"]))
    networks = tuple(str(ipaddress.ip_network(c, strict=False)) for c in raw["networks"])
    return ClusterPeer(PeerKind.NETWORKS, networks=networks)


def _port(raw: Mapping[str, Any]) -> ClusterPort:
    if raw.get("destinationNamedPort") is not None:
        return ClusterPort(name=str(raw["destinationNamedPort"]))
    field = next(k for k in _PROTOCOLS if raw.get(k) is not None)
    dest = _mapping(_mapping(raw[field]).get("destinationPort"))
    if dest.get("number") is not None:
        return ClusterPort(_PROTOCOLS[field], int(dest["number"]))
    if dest.get("range") is not None:
        rng = dest["range"]
        return ClusterPort(_PROTOCOLS[field], int(rng["start"]), int(rng["end"]))
    return ClusterPort(_PROTOCOLS[field])


def _rule(raw: Mapping[str, Any], peer_field: str) -> ClusterRule:
    return ClusterRule(
        name=str(raw.get("name") or ""),
        action=Action(raw["action"]),
        peers=tuple(_peer(p) for p in raw[peer_field]),
        ports=tuple(_port(p) for p in raw.get("protocols") or ()),
    )

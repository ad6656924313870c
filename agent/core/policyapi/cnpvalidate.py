"""ClusterNetworkPolicy validation, as strict as the v1alpha2 CRD's schema and rules.

Like `agent.core.validate` for NetworkPolicy: works on the plain dict of one
object, never raises, reports every problem at once with its field path
(`deny-monitoring: spec.ingress[0].from[0]: must set exactly one of ...`),
and treats an unknown field as an error (a misspelt field would otherwise
change what a rule matches). The checks are the CRD's: enums, 0-1000 priority,
exactly-one-of objects (subject, peers, protocols, destinationPort), list
bounds (25 rules, 25 peers, 25 protocols, 25 networks), start < end, CIDRs,
and "no named port next to a networks or nodes peer". The experimental
`domainNames` peer is reported as not supported by netpol-agent.

`cnpconvert` decides what an error means (fail closed); `is_rule_error` tells
a problem inside one rule from one that concerns the whole policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.core.errors import FieldError
from agent.core.validate import Checker, parse_cidr, type_name

TIERS = ("Admin", "Baseline")
ACTIONS = ("Accept", "Deny", "Pass")
MAX_ITEMS = 25
MAX_RULE_NAME = 100
MAX_CIDR_LENGTH = 43

_SPEC_FIELDS = frozenset({"tier", "priority", "subject", "ingress", "egress"})
_SUBJECT_FIELDS = ("namespaces", "pods")
_NAMESPACED_POD_FIELDS = frozenset({"namespaceSelector", "podSelector"})
_INGRESS_PEERS = ("namespaces", "pods")
_EGRESS_PEERS = ("namespaces", "pods", "nodes", "networks", "domainNames")
_PROTOCOL_FIELDS = ("tcp", "udp", "sctp", "destinationNamedPort")
_DEST_PORT_FIELDS = ("number", "range")
_RULE_PATH = re.compile(r"^spec\.(ingress|egress)\[\d+\]")


def is_rule_error(error: FieldError) -> bool:
    """True when the problem lies inside one ingress/egress rule (that rule fails closed)."""
    return bool(_RULE_PATH.match(error.path))


def cnp_name(d: Any) -> str:
    """How errors name the object: its name (cluster-scoped: no namespace)."""
    meta = d.get("metadata") if isinstance(d, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return str(name or "<unnamed>")


class _CnpChecker(Checker):
    """The field checks of NetworkPolicy's checker plus ClusterNetworkPolicy's shapes."""

    def one_of(self, value: Any, path: str, fields: tuple[str, ...]) -> tuple[str, Any] | None:
        """The single set field of an exactly-one-of object (minProperties = maxProperties = 1)."""
        obj = self.mapping(value, path, frozenset(fields))
        if not isinstance(value, Mapping):
            if value is None:
                self.add(path, "Required value")
            return None
        present = [k for k in fields if obj.get(k) is not None]
        if len(present) != 1:
            self.add(path, f"must set exactly one of {', '.join(fields)} (found {len(present)})")
            return None
        return present[0], obj[present[0]]

    def bounded_list(self, value: Any, path: str, *, required: bool) -> list[Any]:
        if value is None and not required:
            return []
        items = self.sequence(value, path)
        if value is None or (not items and isinstance(value, list | tuple)):
            self.add(path, "Required value: must have at least 1 item")
        elif len(items) > MAX_ITEMS:
            self.add(path, f"Too many: {len(items)}: must have at most {MAX_ITEMS} items")
        return items

    def namespaced_pod(self, value: Any, path: str) -> None:
        obj = self.mapping(value, path, _NAMESPACED_POD_FIELDS)
        if obj.get("namespaceSelector") is not None:
            self.selector(obj["namespaceSelector"], f"{path}.namespaceSelector")
        if obj.get("podSelector") is None:
            if isinstance(value, Mapping):
                self.add(f"{path}.podSelector", "Required value")
        else:
            self.selector(obj["podSelector"], f"{path}.podSelector")

    def subject(self, value: Any, path: str) -> None:
        picked = self.one_of(value, path, _SUBJECT_FIELDS)
        if picked is None:
            return
        field, inner = picked
        if field == "namespaces":
            self.selector(inner, f"{path}.namespaces")
        else:
            self.namespaced_pod(inner, f"{path}.pods")

    def cnp_peer(self, value: Any, path: str, fields: tuple[str, ...]) -> str | None:
        picked = self.one_of(value, path, fields)
        if picked is None:
            return None
        field, inner = picked
        where = f"{path}.{field}"
        if field in ("namespaces", "nodes"):
            self.selector(inner, where)
        elif field == "pods":
            self.namespaced_pod(inner, where)
        elif field == "networks":
            seen: set[str] = set()
            for i, text in enumerate(self.bounded_list(inner, where, required=True)):
                if not isinstance(text, str):
                    self.add(f"{where}[{i}]", f"must be a string, not {type_name(text)}")
                elif len(text) > MAX_CIDR_LENGTH:
                    self.add(f"{where}[{i}]", f"must be no more than {MAX_CIDR_LENGTH} characters")
                elif parse_cidr(text) is None:
                    self.add(f"{where}[{i}]", f"{text!r}: Invalid CIDR format provided")
                elif text in seen:
                    self.add(f"{where}[{i}]", f"Duplicate value: {text!r}")
                else:
                    seen.add(text)
        else:
            self.add(
                where,
                "not supported by netpol-agent (no DNS-based peers): the rule fails closed",
            )
        return field

    def destination_port(self, value: Any, path: str) -> None:
        picked = self.one_of(value, path, _DEST_PORT_FIELDS)
        if picked is None:
            return
        field, inner = picked
        if field == "number":
            self.port_number(inner, f"{path}.number")
            return
        rng = self.mapping(inner, f"{path}.range", frozenset({"start", "end"}))
        start = self.port_number(rng.get("start"), f"{path}.range.start")
        end = self.port_number(rng.get("end"), f"{path}.range.end")
        if start is not None and end is not None and not start < end:
            self.add(f"{path}.range", "Start port must be less than End port")

    def port_number(self, value: Any, path: str) -> int | None:
        if value is None:
            self.add(path, "Required value")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be an integer, not {type_name(value)}")
            return None
        if not 1 <= value <= 65535:
            self.add(path, f"{value}: must be between 1 and 65535, inclusive")
            return None
        return value

    def protocol(self, value: Any, path: str) -> str | None:
        picked = self.one_of(value, path, _PROTOCOL_FIELDS)
        if picked is None:
            return None
        field, inner = picked
        if field == "destinationNamedPort":
            if not isinstance(inner, str) or not inner:
                self.add(f"{path}.{field}", "must be a non-empty string")
            return field
        attrs = self.mapping(inner, f"{path}.{field}", frozenset({"destinationPort"}))
        if attrs.get("destinationPort") is None:
            if isinstance(inner, Mapping):
                # The CRD: minProperties 1 on tcp/udp/sctp.
                self.add(f"{path}.{field}", "must set destinationPort (minProperties 1)")
        else:
            self.destination_port(attrs["destinationPort"], f"{path}.{field}.destinationPort")
        return field

    def rule(self, value: Any, path: str, peer_field: str) -> None:
        fields = frozenset({"name", "action", peer_field, "protocols"})
        rule = self.mapping(value, path, fields)
        if not isinstance(value, Mapping):
            return
        name = rule.get("name")
        if name is not None and not isinstance(name, str):
            self.add(f"{path}.name", f"must be a string, not {type_name(name)}")
        elif isinstance(name, str) and len(name) > MAX_RULE_NAME:
            self.add(f"{path}.name", f"must be no more than {MAX_RULE_NAME} characters")
        action = rule.get("action")
        if action is None:
            self.add(f"{path}.action", "Required value")
        elif action not in ACTIONS:
            self.add(
                f"{path}.action",
                f'Unsupported value: {action!r}: supported values: "Accept", "Deny", "Pass"',
            )
        kinds = _INGRESS_PEERS if peer_field == "from" else _EGRESS_PEERS
        peer_kinds = {
            self.cnp_peer(p, f"{path}.{peer_field}[{i}]", kinds)
            for i, p in enumerate(
                self.bounded_list(rule.get(peer_field), f"{path}.{peer_field}", required=True)
            )
        }
        protos = [
            self.protocol(p, f"{path}.protocols[{i}]")
            for i, p in enumerate(
                self.bounded_list(rule.get("protocols"), f"{path}.protocols", required=False)
            )
        ]
        if "destinationNamedPort" in protos and peer_kinds & {"networks", "nodes", "domainNames"}:
            self.add(
                path,
                "networks/nodes/domainNames peer cannot be set with namedPorts since there "
                "are no namedPorts for networks/nodes/domainNames",
            )


def validate_cluster_policy(d: Mapping[str, Any]) -> tuple[FieldError, ...]:
    """Every problem of one ClusterNetworkPolicy object dict, in field order; () when valid."""
    if not isinstance(d, Mapping):
        return (FieldError("<unnamed>", "", f"must be an object, not {type_name(d)}"),)
    check = _CnpChecker(cnp_name(d))
    check.top(d)
    if d.get("spec") is None:
        check.add("spec", "Required value")
        return tuple(check.errors)
    spec = check.mapping(d.get("spec"), "spec", _SPEC_FIELDS)
    tier = spec.get("tier")
    if tier is None:
        check.add("spec.tier", "Required value")
    elif tier not in TIERS:
        check.add(
            "spec.tier", f'Unsupported value: {tier!r}: supported values: "Admin", "Baseline"'
        )
    priority = spec.get("priority")
    if priority is None:
        check.add("spec.priority", "Required value")
    elif isinstance(priority, bool) or not isinstance(priority, int):
        check.add("spec.priority", f"must be an integer, not {type_name(priority)}")
    elif not 0 <= priority <= 1000:
        check.add("spec.priority", f"{priority}: must be between 0 and 1000, inclusive")
    check.subject(spec.get("subject"), "spec.subject")
    for direction, peer_field in (("ingress", "from"), ("egress", "to")):
        raw = spec.get(direction)
        rules = check.sequence(raw, f"spec.{direction}")
        if len(rules) > MAX_ITEMS:
            check.add(f"spec.{direction}", f"Too many: {len(rules)}: must have at most 25 items")
        for i, rule in enumerate(rules):
            check.rule(rule, f"spec.{direction}[{i}]", peer_field)
    return tuple(check.errors)

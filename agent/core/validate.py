"""NetworkPolicy validation, as strict as the API server's.

This mirrors `ValidateNetworkPolicy` of kubernetes/pkg/apis/networking/validation
and `ValidateLabelSelector` of apimachinery, plus strict field checking (an
unknown field such as a misspelt `fromm:` would otherwise silently turn a rule
into "allow from everywhere"). It works on the plain dict of one object (YAML,
JSON, or the official client's sanitized output), never raises, and reports
every problem of a policy at once, each naming the object and the field path:

    x/deny-all: spec.ingress[0].from[1].ipBlock.except[0]: 10.0.0.0/8 is not inside ...

`agent.core.convert.policy_from_dict` uses it; so does the lab API server for
its 422 answers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from agent.core.errors import FieldError

PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_SPEC_FIELDS = frozenset({"podSelector", "ingress", "egress", "policyTypes"})
_INGRESS_FIELDS = frozenset({"from", "ports"})
_EGRESS_FIELDS = frozenset({"to", "ports"})
_PEER_FIELDS = frozenset({"podSelector", "namespaceSelector", "ipBlock"})
_PORT_FIELDS = frozenset({"protocol", "port", "endPort"})
_IPBLOCK_FIELDS = frozenset({"cidr", "except"})
_SELECTOR_FIELDS = frozenset({"matchLabels", "matchExpressions"})
_REQUIREMENT_FIELDS = frozenset({"key", "operator", "values"})
_TOP_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def object_key(d: Mapping[str, Any]) -> str:
    """ "ns/name" of an object dict, tolerating junk (used to name objects in errors)."""
    meta = d.get("metadata") if isinstance(d, Mapping) else None
    if not isinstance(meta, Mapping):
        return "<unnamed>"
    ns = meta.get("namespace") or "default"
    name = meta.get("name") or "<unnamed>"
    return f"{ns}/{name}"


def label_value_problems(value: Any) -> list[str]:
    """IsValidLabelValue: at most 63 characters, alphanumerics, '-', '_', '.' inside."""
    if not isinstance(value, str):
        return [f"{value!r} must be a string"]
    problems = []
    if len(value) > 63:
        problems.append(f"{value!r} must be no more than 63 characters")
    if not _LABEL_NAME.match(value):
        problems.append(
            f"{value!r}: a valid label value must be an empty string or consist of "
            "alphanumeric characters, '-', '_' or '.', and must start and end with "
            "an alphanumeric character"
        )
    return problems


def label_key_problems(key: Any) -> list[str]:
    """IsQualifiedName: optional DNS-1123 subdomain prefix and '/', then a name of <= 63."""
    if not isinstance(key, str):
        return [f"{key!r} must be a string"]
    prefix, slash, name = key.rpartition("/")
    problems = []
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        problems.append(f"{key!r}: prefix part must be a lowercase DNS-1123 subdomain")
    if not name:
        problems.append(f"{key!r}: name part must be non-empty")
    elif len(name) > 63 or not _LABEL_NAME.match(name):
        problems.append(
            f"{key!r}: name part must consist of alphanumeric characters, '-', '_' or '.', "
            "start and end with an alphanumeric character, and be at most 63 characters"
        )
    return problems


def port_name_problems(name: str) -> list[str]:
    """IsValidPortName (IANA_SVC_NAME): 1-15 lowercase alphanumerics or '-', one letter."""
    problems = []
    if not 1 <= len(name) <= 15:
        problems.append(f"{name!r} must be no more than 15 characters")
    if not _PORT_NAME.match(name):
        problems.append(
            f"{name!r} must contain only lowercase alphanumerics or '-' and start and "
            "end with an alphanumeric"
        )
    if "--" in name:
        problems.append(f"{name!r} must not contain consecutive hyphens")
    if not any(c.isalpha() for c in name):
        problems.append(f"{name!r} must contain at least one letter (a-z)")
    return problems


def parse_cidr(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR the way the API server accepts it (host bits may be set); None if invalid."""
    if not isinstance(text, str) or "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


class _Checker:
    """Collects FieldErrors for one object; every check appends, none raises."""

    def __init__(self, obj: str) -> None:
        self.obj = obj
        self.errors: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(self.obj, path, message))

    def mapping(self, value: Any, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
        """The value as a mapping (or {} after an error); unknown fields are errors."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"must be an object, not {_type_name(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else str(key), "unknown field")
        return value

    def top(self, d: Mapping[str, Any]) -> Mapping[str, Any]:
        """The top-level fields and metadata.name of an object; its metadata ({} if unusable)."""
        self.mapping(d, "", _TOP_FIELDS)
        raw_meta = d.get("metadata")
        meta = raw_meta if isinstance(raw_meta, Mapping) else {}
        if raw_meta is not None and not isinstance(raw_meta, Mapping):
            self.add("metadata", f"must be an object, not {_type_name(raw_meta)}")
        name = meta.get("name")
        if not name:
            self.add("metadata.name", "Required value")
        elif not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            self.add("metadata.name", f"{name!r}: must be a lowercase DNS-1123 subdomain")
        return meta

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.add(path, f"must be a list, not {_type_name(value)}")
            return []
        return list(value)

    def selector(self, value: Any, path: str) -> None:
        sel = self.mapping(value, path, _SELECTOR_FIELDS)
        labels = sel.get("matchLabels")
        if labels is not None:
            if not isinstance(labels, Mapping):
                self.add(f"{path}.matchLabels", f"must be an object, not {_type_name(labels)}")
            else:
                for k, v in labels.items():
                    for msg in label_key_problems(k):
                        self.add(f"{path}.matchLabels", msg)
                    for msg in label_value_problems(v):
                        self.add(f"{path}.matchLabels.{k}", msg)
        for i, raw in enumerate(
            self.sequence(sel.get("matchExpressions"), f"{path}.matchExpressions")
        ):
            self.requirement(raw, f"{path}.matchExpressions[{i}]")

    def requirement(self, value: Any, path: str) -> None:
        req = self.mapping(value, path, _REQUIREMENT_FIELDS)
        if not isinstance(value, Mapping):
            return
        op = req.get("operator")
        values = req.get("values")
        if values is not None and not isinstance(values, list | tuple):
            self.add(f"{path}.values", f"must be a list, not {_type_name(values)}")
            values = None
        if op in ("In", "NotIn"):
            if not values:
                self.add(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                self.add(
                    f"{path}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
        elif op is None:
            self.add(f"{path}.operator", "Required value")
        else:
            self.add(f"{path}.operator", f"{op!r}: not a valid selector operator")
        key = req.get("key")
        if key is None:
            self.add(f"{path}.key", "Required value")
        else:
            for msg in label_key_problems(key):
                self.add(f"{path}.key", msg)
        for j, v in enumerate(values or ()):
            for msg in label_value_problems(v):
                self.add(f"{path}.values[{j}]", msg)

    def port(self, value: Any, path: str) -> None:
        port = self.mapping(value, path, _PORT_FIELDS)
        proto = port.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            self.add(
                f"{path}.protocol",
                f'Unsupported value: {proto!r}: supported values: "TCP", "UDP", "SCTP"',
            )
        number = port.get("port")
        end = port.get("endPort")
        if end is not None and (not isinstance(end, int) or isinstance(end, bool)):
            self.add(f"{path}.endPort", f"must be an integer, not {_type_name(end)}")
            end = None
        if number is None:
            if end is not None:
                self.add(f"{path}.endPort", "may not be specified when `port` is not specified")
        elif isinstance(number, bool) or not isinstance(number, int | str):
            self.add(f"{path}.port", f"must be an integer or a port name, not {_type_name(number)}")
        elif isinstance(number, int):
            if not 1 <= number <= 65535:
                self.add(f"{path}.port", f"{number}: must be between 1 and 65535, inclusive")
            if end is not None:
                if end < number:
                    self.add(f"{path}.endPort", f"{end}: must be greater than or equal to `port`")
                if not 1 <= end <= 65535:
                    self.add(f"{path}.endPort", f"{end}: must be between 1 and 65535, inclusive")
        else:
            if end is not None:
                self.add(f"{path}.endPort", "may not be specified when `port` is non-numeric")
            for msg in port_name_problems(number):
                self.add(f"{path}.port", msg)

    def peer(self, value: Any, path: str) -> None:
        peer = self.mapping(value, path, _PEER_FIELDS)
        present = [
            k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None
        ]
        if "podSelector" in present:
            self.selector(peer["podSelector"], f"{path}.podSelector")
        if "namespaceSelector" in present:
            self.selector(peer["namespaceSelector"], f"{path}.namespaceSelector")
        if "ipBlock" in present:
            self.ip_block(peer["ipBlock"], f"{path}.ipBlock")
        if not present:
            self.add(path, "must specify a peer")
        elif len(present) > 1 and "ipBlock" in present:
            self.add(path, "may not specify both ipBlock and another peer")

    def ip_block(self, value: Any, path: str) -> None:
        block = self.mapping(value, path, _IPBLOCK_FIELDS)
        cidr_text = block.get("cidr")
        if not cidr_text:
            self.add(f"{path}.cidr", "Required value")
            return
        cidr = parse_cidr(cidr_text)
        if cidr is None:
            self.add(f"{path}.cidr", f"{cidr_text!r}: must be a valid CIDR (e.g. 10.0.0.0/8)")
            return
        for i, text in enumerate(self.sequence(block.get("except"), f"{path}.except")):
            exc = parse_cidr(text)
            if exc is None:
                self.add(f"{path}.except[{i}]", f"{text!r}: must be a valid CIDR")
            elif (
                exc.version != cidr.version
                or exc.network_address not in cidr
                or exc.prefixlen <= cidr.prefixlen
            ):
                self.add(
                    f"{path}.except[{i}]",
                    f"{text} is not inside {cidr_text} (must be a strict subset of `cidr`)",
                )

    def rules(self, value: Any, path: str, peer_field: str) -> None:
        allowed = _INGRESS_FIELDS if peer_field == "from" else _EGRESS_FIELDS
        for i, raw in enumerate(self.sequence(value, path)):
            rule = self.mapping(raw, f"{path}[{i}]", allowed)
            for j, p in enumerate(self.sequence(rule.get("ports"), f"{path}[{i}].ports")):
                self.port(p, f"{path}[{i}].ports[{j}]")
            for j, p in enumerate(self.sequence(rule.get(peer_field), f"{path}[{i}].{peer_field}")):
                self.peer(p, f"{path}[{i}].{peer_field}[{j}]")


Checker = _Checker
"""Public name of the field checker, for the other kinds' validators (ClusterNetworkPolicy)."""


def type_name(value: Any) -> str:
    """How errors name a value's JSON type ("an object", "a list", ...)."""
    return _type_name(value)


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def validate_policy(d: Mapping[str, Any]) -> tuple[FieldError, ...]:
    """Every problem of one NetworkPolicy object dict, in field order; () when valid."""
    if not isinstance(d, Mapping):
        return (FieldError("<unnamed>", "", f"must be an object, not {_type_name(d)}"),)
    check = _Checker(object_key(d))
    meta = check.top(d)
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not _DNS1123_LABEL.match(ns) or len(ns) > 63):
        check.add("metadata.namespace", f"{ns!r}: must be a lowercase DNS-1123 label")
    spec = check.mapping(d.get("spec"), "spec", _SPEC_FIELDS)
    check.selector(spec.get("podSelector"), "spec.podSelector")
    check.rules(spec.get("ingress"), "spec.ingress", "from")
    check.rules(spec.get("egress"), "spec.egress", "to")
    types = check.sequence(spec.get("policyTypes"), "spec.policyTypes")
    if len(types) > 2:
        check.add("spec.policyTypes", "may not specify more than two policyTypes")
    else:
        for i, t in enumerate(types):
            if t not in POLICY_TYPES:
                check.add(
                    f"spec.policyTypes[{i}]",
                    f'Unsupported value: {t!r}: supported values: "Ingress", "Egress"',
                )
    return tuple(check.errors)

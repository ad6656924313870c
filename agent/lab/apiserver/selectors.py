"""Parsing `labelSelector` and `fieldSelector` query strings, and matching objects against them.

Label selectors use the apimachinery text syntax (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and
match through agent.core.selectors, the same code the engine uses. Field selectors support the
few fields the real server supports for our kinds; others are refused with 400 as upstream does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.model import LabelSelector, Operator, Requirement
from agent.core.selectors import selector_matches
from agent.lab.apiserver.errors import ApiError, bad_request

_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)
_VALUE = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$")

COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "events": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "nodes": frozenset({"spec.unschedulable"}),
    "namespaces": frozenset({"status.phase"}),
}


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return [t.strip() for t in terms]


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise bad_request(f"unable to parse requirement: invalid label value {value!r} in {text!r}")
    return value


_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_TERM = re.compile(r"^(?P<key>[^=!\s<>]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)$")


def _parse_term(term: str, text: str) -> Requirement:
    if match := _SET_TERM.match(term):
        key = _check_key(match["key"], text)
        values = frozenset(
            _check_value(v.strip(), text) for v in match["values"].split(",") if v.strip()
        )
        if not values:
            raise bad_request(f"unable to parse requirement: empty value set in {text!r}")
        op = Operator.IN if match["op"] == "in" else Operator.NOT_IN
        return Requirement(key=key, operator=op, values=values)
    if match := _EQ_TERM.match(term):
        key = _check_key(match["key"], text)
        value = _check_value(match["value"], text)
        op = Operator.NOT_IN if match["op"] == "!=" else Operator.IN
        return Requirement(key=key, operator=op, values=frozenset({value}))
    if term.startswith("!"):
        return Requirement(key=_check_key(term[1:].strip(), text), operator=Operator.DOES_NOT_EXIST)
    return Requirement(key=_check_key(term, text), operator=Operator.EXISTS)


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the `labelSelector` query parameter; raise a 400 ApiError when malformed."""
    if not text.strip():
        return LabelSelector()
    requirements = tuple(_parse_term(t, text) for t in _split_terms(text) if t)
    return LabelSelector(match_expressions=requirements)


@dataclass(frozen=True, slots=True)
class FieldTerm:
    field: str
    equal: bool
    value: str


def parse_field_selector(text: str, resource: str) -> tuple[FieldTerm, ...]:
    """Parse the `fieldSelector` query parameter for `resource` (its plural name)."""
    terms: list[FieldTerm] = []
    allowed = COMMON_FIELDS | FIELDS.get(resource, frozenset())
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        match = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", term)
        if match is None:
            raise bad_request(f"invalid selector: {text!r}; can't understand {term!r}")
        field, op, value = match.group(1), match.group(2), match.group(3)
        if field not in allowed:
            raise ApiError(400, "BadRequest", f'field label not supported: "{field}"')
        terms.append(FieldTerm(field=field, equal=op != "!=", value=value))
    return tuple(terms)


def field_value(obj: Mapping[str, Any], field: str) -> str:
    current: Any = obj
    for part in field.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


Predicate = Callable[[Mapping[str, Any]], bool]


def make_predicate(labels: LabelSelector, fields: tuple[FieldTerm, ...]) -> Predicate:
    """One function deciding whether an object is in the selected set."""

    def predicate(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if not labels.is_empty and not selector_matches(labels, meta.get("labels") or {}):
            return False
        return all((field_value(obj, t.field) == t.value) == t.equal for t in fields)

    return predicate

"""NetworkPolicy validation: as strict as the API server, every error named and pathed."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.validate import label_key_problems, label_value_problems, validate_policy
from tests.builders import policy_dict, sel


def ingress_from(*peers: Any, ports: Any = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return {"podSelector": {}, "ingress": [rule]}


VALID = [
    ("deny all", {"podSelector": {}}),
    ("no podSelector at all", {"ingress": [{}]}),
    ("allow all ingress", {"podSelector": {}, "ingress": [{}]}),
    ("empty egress with types", {"podSelector": {}, "policyTypes": ["Egress"], "egress": []}),
    ("both selectors", ingress_from({"podSelector": sel("a=b"), "namespaceSelector": {}})),
    (
        "ipBlock v4 except",
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}),
    ),
    (
        "ipBlock v6 except",
        ingress_from({"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}),
    ),
    ("ipBlock host bits set", ingress_from({"ipBlock": {"cidr": "10.0.0.1/8"}})),
    ("named port", ingress_from(ports=[{"port": "http", "protocol": "TCP"}])),
    ("port range", ingress_from(ports=[{"port": 80, "endPort": 90}])),
    ("endPort equal", ingress_from(ports=[{"port": 80, "endPort": 80}])),
    ("protocol only", ingress_from(ports=[{"protocol": "SCTP"}])),
    ("prefixed label key", {"podSelector": sel("app.kubernetes.io/name=web")}),
    ("empty label value", {"podSelector": sel("app=")}),
    (
        "every operator",
        {
            "podSelector": {
                "matchExpressions": [
                    {"key": "a", "operator": "In", "values": ["x"]},
                    {"key": "b", "operator": "NotIn", "values": ["x", "y"]},
                    {"key": "c", "operator": "Exists"},
                    {"key": "d", "operator": "DoesNotExist", "values": []},
                ]
            }
        },
    ),
]


@pytest.mark.parametrize(("name", "spec"), VALID, ids=[v[0] for v in VALID])
def test_valid_policies_have_no_errors(name: str, spec: dict[str, Any]) -> None:
    assert validate_policy(policy_dict("x/p", spec)) == ()


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "bad cidr",
        ingress_from({"ipBlock": {"cidr": "10.0.0.300/8"}}),
        "spec.ingress[0].from[0].ipBlock.cidr",
        "must be a valid CIDR",
    ),
    (
        "cidr without prefix",
        ingress_from({"ipBlock": {"cidr": "10.0.0.1"}}),
        "spec.ingress[0].from[0].ipBlock.cidr",
        "must be a valid CIDR",
    ),
    (
        "missing cidr",
        ingress_from({"ipBlock": {"except": ["10.0.0.0/8"]}}),
        "spec.ingress[0].from[0].ipBlock.cidr",
        "Required",
    ),
    (
        "except outside cidr",
        ingress_from(
            {"podSelector": {}}, {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["10.0.0.0/8"]}}
        ),
        "spec.ingress[0].from[1].ipBlock.except[0]",
        "10.0.0.0/8 is not inside 192.168.0.0/16",
    ),
    (
        "except equal to cidr",
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}),
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset",
    ),
    (
        "except other family",
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["2001:db8::/64"]}}),
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "is not inside",
    ),
    (
        "except not a cidr",
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["nope"]}}),
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "valid CIDR",
    ),
    (
        "unknown protocol",
        ingress_from(ports=[{"protocol": "ICMP", "port": 1}]),
        "spec.ingress[0].ports[0].protocol",
        "Unsupported value: 'ICMP'",
    ),
    (
        "lowercase protocol",
        ingress_from(ports=[{"protocol": "tcp"}]),
        "spec.ingress[0].ports[0].protocol",
        "Unsupported value",
    ),
    (
        "port 0",
        ingress_from(ports=[{"port": 0}]),
        "spec.ingress[0].ports[0].port",
        "between 1 and 65535",
    ),
    (
        "port too big",
        ingress_from(ports=[{"port": 65536}]),
        "spec.ingress[0].ports[0].port",
        "between 1 and 65535",
    ),
    (
        "endPort below port",
        ingress_from(ports=[{"port": 90, "endPort": 80}]),
        "spec.ingress[0].ports[0].endPort",
        "greater than or equal to `port`",
    ),
    (
        "endPort with named port",
        ingress_from(ports=[{"port": "http", "endPort": 90}]),
        "spec.ingress[0].ports[0].endPort",
        "non-numeric",
    ),
    (
        "endPort without port",
        ingress_from(ports=[{"endPort": 90}]),
        "spec.ingress[0].ports[0].endPort",
        "not specified",
    ),
    (
        "bad port name",
        ingress_from(ports=[{"port": "HTTP_port"}]),
        "spec.ingress[0].ports[0].port",
        "lowercase alphanumerics",
    ),
    (
        "numeric string port",
        ingress_from(ports=[{"port": "80"}]),
        "spec.ingress[0].ports[0].port",
        "at least one letter",
    ),
    (
        "port name too long",
        ingress_from(ports=[{"port": "a-very-long-port-name"}]),
        "spec.ingress[0].ports[0].port",
        "15 characters",
    ),
    (
        "unknown operator",
        {
            "podSelector": {
                "matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]
            }
        },
        "spec.podSelector.matchExpressions[0].operator",
        "not a valid selector operator",
    ),
    (
        "values with Exists",
        {
            "podSelector": {
                "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]
            }
        },
        "spec.podSelector.matchExpressions[0].values",
        "may not be specified",
    ),
    (
        "values with DoesNotExist",
        ingress_from(
            {
                "podSelector": {
                    "matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["b"]}]
                }
            }
        ),
        "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
        "may not be specified",
    ),
    (
        "no values with In",
        ingress_from({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
        "must be specified",
    ),
    (
        "empty values with NotIn",
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}},
        "spec.podSelector.matchExpressions[0].values",
        "must be specified",
    ),
    (
        "ipBlock with podSelector",
        ingress_from({"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}),
        "spec.ingress[0].from[0]",
        "may not specify both ipBlock and another peer",
    ),
    (
        "ipBlock with namespaceSelector",
        {
            "podSelector": {},
            "egress": [{"to": [{"namespaceSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}],
        },
        "spec.egress[0].to[0]",
        "may not specify both",
    ),
    ("empty peer", ingress_from({}), "spec.ingress[0].from[0]", "must specify a peer"),
    (
        "bad label value",
        {"podSelector": sel("app=not valid")},
        "spec.podSelector.matchLabels.app",
        "valid label value",
    ),
    (
        "bad label key",
        {"podSelector": sel("-app=web")},
        "spec.podSelector.matchLabels",
        "name part",
    ),
    (
        "bad key prefix",
        {"podSelector": sel("Example.COM/app=web")},
        "spec.podSelector.matchLabels",
        "prefix",
    ),
    (
        "label value too long",
        {"podSelector": sel("app=" + "a" * 64)},
        "spec.podSelector.matchLabels.app",
        "63 characters",
    ),
    (
        "bad expression value",
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b c"]}]}},
        "spec.podSelector.matchExpressions[0].values[0]",
        "valid label value",
    ),
    (
        "unknown policyType",
        {"podSelector": {}, "policyTypes": ["Ingres"]},
        "spec.policyTypes[0]",
        "Unsupported value",
    ),
    (
        "three policyTypes",
        {"podSelector": {}, "policyTypes": ["Ingress", "Egress", "Ingress"]},
        "spec.policyTypes",
        "more than two",
    ),
    (
        "misspelt rule field",
        {"podSelector": {}, "ingress": [{"fromm": []}]},
        "spec.ingress[0].fromm",
        "unknown field",
    ),
    (
        "misspelt peer field",
        ingress_from({"podselector": {}}),
        "spec.ingress[0].from[0].podselector",
        "unknown field",
    ),
    (
        "to in an ingress rule",
        {"podSelector": {}, "ingress": [{"to": []}]},
        "spec.ingress[0].to",
        "unknown field",
    ),
    (
        "ingress not a list",
        {"podSelector": {}, "ingress": {"from": []}},
        "spec.ingress",
        "must be a list",
    ),
    ("selector not an object", {"podSelector": "app=web"}, "spec.podSelector", "must be an object"),
    (
        "port a float",
        ingress_from(ports=[{"port": 80.5}]),
        "spec.ingress[0].ports[0].port",
        "integer or a port name",
    ),
]


@pytest.mark.parametrize(("name", "spec", "path", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_policies_name_object_and_path(
    name: str, spec: dict[str, Any], path: str, message: str
) -> None:
    errors = validate_policy(policy_dict("x/bad", spec))
    assert any(e.path == path and message in e.message for e in errors), [str(e) for e in errors]
    assert all(e.obj == "x/bad" for e in errors)


def test_error_text_matches_the_documented_form() -> None:
    spec = ingress_from(
        {"podSelector": {}}, {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["10.0.0.0/8"]}}
    )
    (error,) = validate_policy(policy_dict("x/deny-all", spec))
    assert str(error).startswith(
        "x/deny-all: spec.ingress[0].from[1].ipBlock.except[0]: 10.0.0.0/8 is not inside 192.168.0.0/16"
    )


def test_all_errors_of_a_policy_are_reported_at_once() -> None:
    spec = {
        "podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]},
        "ingress": [{"ports": [{"port": 0}, {"protocol": "ICMP"}]}],
        "egress": [{"to": [{}]}],
        "policyTypes": ["Both"],
    }
    paths = [e.path for e in validate_policy(policy_dict("x/bad", spec))]
    assert paths == [
        "spec.podSelector.matchExpressions[0].operator",
        "spec.ingress[0].ports[0].port",
        "spec.ingress[0].ports[1].protocol",
        "spec.egress[0].to[0]",
        "spec.policyTypes[0]",
    ]


def test_metadata_is_checked() -> None:
    d = policy_dict("x/Bad_Name", {"podSelector": {}})
    assert [e.path for e in validate_policy(d)] == ["metadata.name"]
    d = policy_dict("x/p", {})
    del d["metadata"]["name"]
    assert [e.path for e in validate_policy(d)] == ["metadata.name"]


@pytest.mark.parametrize(
    "junk", [None, 42, "text", ["a"], {"spec": 5}, {"metadata": [], "spec": {"ingress": 3}}]
)
def test_junk_never_raises(junk: Any) -> None:
    assert validate_policy(junk)


def test_label_syntax_helpers() -> None:
    assert label_key_problems("app.kubernetes.io/name") == []
    assert label_key_problems("a" * 64)
    assert label_key_problems("/name")
    assert label_value_problems("") == []
    assert label_value_problems("v1.2_3-x") == []
    assert label_value_problems("-x")
    assert label_value_problems(3)

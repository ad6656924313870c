"""ClusterNetworkPolicy validation (the v1alpha2 CRD's schema and rules) and the
fail-closed conversion of what it rejects; every error names the object and field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.cli import main
from agent.core.policyapi.cnpconvert import cluster_policy_from_dict
from agent.core.policyapi.cnpmodel import Action, PeerKind, Tier
from agent.core.policyapi.cnpvalidate import validate_cluster_policy
from tests.builders import cnp_dict, cnp_rule, sel


def good() -> dict[str, Any]:
    return cnp_dict(
        "guard",
        subject={"pods": {"namespaceSelector": sel("a=b"), "podSelector": {}}},
        ingress=[
            cnp_rule(
                "Deny",
                {"namespaces": {}},
                name="r0",
                protocols=[{"tcp": {"destinationPort": {"number": 80}}}],
            )
        ],
        egress=[
            cnp_rule("Accept", {"networks": ["10.0.0.0/8", "fd00::/8"]}, {"nodes": {}}, to=True),
            cnp_rule(
                "Pass",
                {"pods": {"podSelector": {}}},
                to=True,
                protocols=[{"destinationNamedPort": "http"}],
            ),
        ],
    )


def test_a_good_policy_is_valid_and_converts() -> None:
    assert validate_cluster_policy(good()) == ()
    cnp = cluster_policy_from_dict(good())
    assert (cnp.name, cnp.tier, cnp.priority, cnp.subject.by_pods) == (
        "guard",
        Tier.ADMIN,
        10,
        True,
    )
    assert [r.action for r in cnp.egress] == [Action.ACCEPT, Action.PASS]
    assert [p.kind for p in cnp.egress[0].peers] == [PeerKind.NETWORKS, PeerKind.NODES]
    assert cnp.ingress[0].ports[0].port == 80


def edit(path: str, value: Any) -> dict[str, Any]:
    """good() with the field at a dotted path (list indices as numbers) set; None deletes."""
    d = copy.deepcopy(good())
    *parents, last = path.split(".")
    node: Any = d
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return d


# (id, object, field path, message fragment)
INVALID = [
    ("tier missing", edit("spec.tier", None), "spec.tier", "Required value"),
    ("tier unknown", edit("spec.tier", "Developer"), "spec.tier", "Unsupported value"),
    ("priority missing", edit("spec.priority", None), "spec.priority", "Required value"),
    ("priority above 1000", edit("spec.priority", 1001), "spec.priority", "between 0 and 1000"),
    ("priority negative", edit("spec.priority", -1), "spec.priority", "between 0 and 1000"),
    ("priority a string", edit("spec.priority", "10"), "spec.priority", "must be an integer"),
    ("subject missing", edit("spec.subject", None), "spec.subject", "Required value"),
    ("subject empty", edit("spec.subject", {}), "spec.subject", "exactly one of"),
    (
        "subject both",
        edit("spec.subject", {"namespaces": {}, "pods": {"podSelector": {}}}),
        "spec.subject",
        "exactly one of",
    ),
    (
        "subject pods without podSelector",
        edit("spec.subject", {"pods": {}}),
        "spec.subject.pods.podSelector",
        "Required",
    ),
    (
        "subject bad selector",
        edit("spec.subject", {"namespaces": {"matchLabels": {"a": "b c"}}}),
        "spec.subject.namespaces.matchLabels.a",
        "valid label value",
    ),
    ("unknown spec field", edit("spec.podSelector", {}), "spec.podSelector", "unknown field"),
    ("action missing", edit("spec.ingress.0.action", None), "spec.ingress[0].action", "Required"),
    (
        "action unknown",
        edit("spec.ingress.0.action", "Allow"),
        "spec.ingress[0].action",
        "Unsupported value",
    ),
    (
        "rule name too long",
        edit("spec.ingress.0.name", "n" * 101),
        "spec.ingress[0].name",
        "100 characters",
    ),
    ("from missing", edit("spec.ingress.0.from", None), "spec.ingress[0].from", "at least 1 item"),
    ("from empty", edit("spec.ingress.0.from", []), "spec.ingress[0].from", "at least 1 item"),
    (
        "from too many",
        edit("spec.ingress.0.from", [{"namespaces": {}}] * 26),
        "spec.ingress[0].from",
        "at most 25",
    ),
    ("peer empty", edit("spec.ingress.0.from", [{}]), "spec.ingress[0].from[0]", "exactly one of"),
    (
        "ingress peer networks",
        edit("spec.ingress.0.from", [{"networks": ["10.0.0.0/8"]}]),
        "spec.ingress[0].from[0].networks",
        "unknown field",
    ),
    (
        "ingress peer nodes",
        edit("spec.ingress.0.from", [{"nodes": {}}]),
        "spec.ingress[0].from[0].nodes",
        "unknown field",
    ),
    (
        "misspelt peer",
        edit("spec.ingress.0.from", [{"namespace": {}}]),
        "spec.ingress[0].from[0].namespace",
        "unknown field",
    ),
    (
        "networks bad CIDR",
        edit("spec.egress.0.to.0.networks", ["10.0.0.0/33"]),
        "spec.egress[0].to[0].networks[0]",
        "Invalid CIDR",
    ),
    (
        "networks an address",
        edit("spec.egress.0.to.0.networks", ["10.0.0.1"]),
        "spec.egress[0].to[0].networks[0]",
        "Invalid CIDR",
    ),
    (
        "networks empty",
        edit("spec.egress.0.to.0.networks", []),
        "spec.egress[0].to[0].networks",
        "at least 1",
    ),
    (
        "networks duplicate",
        edit("spec.egress.0.to.0.networks", ["10.0.0.0/8", "10.0.0.0/8"]),
        "spec.egress[0].to[0].networks[1]",
        "Duplicate",
    ),
    (
        "domainNames unsupported",
        edit("spec.egress.0.to", [{"domainNames": ["example.com"]}]),
        "spec.egress[0].to[0].domainNames",
        "not supported",
    ),
    (
        "named port with a networks peer",
        edit("spec.egress.0.protocols", [{"destinationNamedPort": "http"}]),
        "spec.egress[0]",
        "cannot be set with namedPorts",
    ),
    (
        "protocols empty",
        edit("spec.ingress.0.protocols", []),
        "spec.ingress[0].protocols",
        "at least 1",
    ),
    (
        "protocol empty",
        edit("spec.ingress.0.protocols", [{}]),
        "spec.ingress[0].protocols[0]",
        "exactly one of",
    ),
    (
        "protocol two fields",
        edit(
            "spec.ingress.0.protocols",
            [{"tcp": {"destinationPort": {"number": 1}}, "destinationNamedPort": "x"}],
        ),
        "spec.ingress[0].protocols[0]",
        "exactly one of",
    ),
    (
        "protocol unknown",
        edit("spec.ingress.0.protocols", [{"icmp": {}}]),
        "spec.ingress[0].protocols[0].icmp",
        "unknown field",
    ),
    (
        "tcp without destinationPort",
        edit("spec.ingress.0.protocols", [{"tcp": {}}]),
        "spec.ingress[0].protocols[0].tcp",
        "destinationPort",
    ),
    (
        "port 0",
        edit("spec.ingress.0.protocols", [{"udp": {"destinationPort": {"number": 0}}}]),
        "spec.ingress[0].protocols[0].udp.destinationPort.number",
        "between 1 and 65535",
    ),
    (
        "port number and range",
        edit(
            "spec.ingress.0.protocols",
            [{"tcp": {"destinationPort": {"number": 1, "range": {"start": 1, "end": 2}}}}],
        ),
        "spec.ingress[0].protocols[0].tcp.destinationPort",
        "exactly one of",
    ),
    (
        "range start not below end",
        edit(
            "spec.ingress.0.protocols",
            [{"sctp": {"destinationPort": {"range": {"start": 90, "end": 90}}}}],
        ),
        "spec.ingress[0].protocols[0].sctp.destinationPort.range",
        "Start port must be less than End port",
    ),
    (
        "range end missing",
        edit("spec.ingress.0.protocols", [{"tcp": {"destinationPort": {"range": {"start": 90}}}}]),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range.end",
        "Required",
    ),
    (
        "named port empty",
        edit("spec.ingress.0.protocols", [{"destinationNamedPort": ""}]),
        "spec.ingress[0].protocols[0].destinationNamedPort",
        "non-empty",
    ),
    (
        "too many rules",
        edit("spec.ingress", [cnp_rule("Deny", {"namespaces": {}})] * 26),
        "spec.ingress",
        "at most 25",
    ),
    ("metadata.name missing", edit("metadata.name", None), "metadata.name", "Required"),
    ("metadata.name invalid", edit("metadata.name", "Guard"), "metadata.name", "DNS-1123"),
]


@pytest.mark.parametrize(
    ("obj", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid(obj: dict[str, Any], path: str, fragment: str) -> None:
    errors = validate_cluster_policy(obj)
    hits = [e for e in errors if e.path == path]
    assert hits, [str(e) for e in errors]
    assert any(fragment in e.message for e in hits), [str(e) for e in hits]
    name = obj["metadata"].get("name") or "<unnamed>"
    assert all(str(e).startswith(f"{name}: ") for e in errors)
    # Conversion never raises and keeps the errors (fail closed, see test_cnp_semantics).
    assert cluster_policy_from_dict(obj).errors == errors


def test_not_an_object() -> None:
    assert validate_cluster_policy([]) != ()  # type: ignore[arg-type]
    assert cluster_policy_from_dict([]).errors  # type: ignore[arg-type]


def test_rule_error_fails_that_rule_only() -> None:
    cnp = cluster_policy_from_dict(edit("spec.egress.0.to.0.networks", ["nope"]))
    assert cnp.tier is Tier.ADMIN and cnp.priority == 10
    assert (
        cnp.egress[0].failed and cnp.egress[0].action is Action.ACCEPT and cnp.egress[0].peers == ()
    )
    assert not cnp.egress[1].failed and not cnp.ingress[0].failed


def test_policy_error_fails_the_whole_policy() -> None:
    cnp = cluster_policy_from_dict(edit("spec.tier", "Nope"))
    assert (cnp.tier, cnp.priority) == (Tier.ADMIN, -1)
    assert [(r.action, r.peers[0].kind) for r in (*cnp.ingress, *cnp.egress)] == [
        (Action.DENY, PeerKind.ALL),
        (Action.DENY, PeerKind.ALL),
    ]
    assert cnp.subject.by_pods  # the subject was readable: kept


def test_reachability_reports_and_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    bad = edit("spec.ingress.0.protocols", [{"tcp": {"destinationPort": {"number": 70000}}}])
    (tmp_path / "cnp.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "pods.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "a", "namespace": "x"},
                "spec": {
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]
                },
                "status": {"podIP": "10.244.0.10"},
            }
        )
    )
    assert main(["reachability", "-f", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert (
        "cnp.yaml: document 1: ClusterNetworkPolicy guard: spec.ingress[0].protocols[0].tcp.destinationPort.number: 70000: must be between 1 and 65535"
        in err
    )
    assert "ingress[0] fail closed" in err
    assert "Traceback" not in err
    assert out.startswith("80/TCP")

"""`reachability` with an audited policy: the table shows what flows, audit lists what it would drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.core.audit import AuditEvaluator
from agent.core.model import Protocol
from tests.cli.test_reachability import NAMESPACES, PODS

AUDITED = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  namespace: x
  name: trial
  annotations: {netpol-agent.io/enforcement: audit}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: 80}]
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    (tmp_path / "ns.yaml").write_text(NAMESPACES)
    (tmp_path / "pods.yaml").write_text(PODS)
    (tmp_path / "trial.yaml").write_text(AUDITED)
    return tmp_path


def test_table_stays_open_and_audit_lists_would_be_drops(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reachability", "-f", str(manifests), "--port", "80"]) == 0
    out, err = capsys.readouterr()
    assert "note: x/trial is audited" in err
    table, audit = out.split("\naudit: ")
    assert (
        "X" not in table.split("\n", 2)[2]
    )  # every cell open: the audited policy enforces nothing
    assert audit.splitlines()[1:] == [
        "  y/a -> x/a 80/TCP: allowed; policy x/trial (audit) would drop it",
    ]


def test_json_and_explain(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reachability", "-f", str(manifests), "--port", "80", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["audit"] == [
        {
            "from": "y/a",
            "to": "x/a",
            "port": 80,
            "protocol": "TCP",
            "policies": ["x/trial"],
            "directions": ["ingress"],
        },
    ]
    assert (
        main(["reachability", "-f", str(manifests), "--port", "80", "--explain", "y/a", "x/a"]) == 0
    )
    out = capsys.readouterr().out
    assert "audit: allowed; policy x/trial (audit) would drop it" in out
    assert (
        main(["reachability", "-f", str(manifests), "--port", "80", "--explain", "x/b", "x/a"]) == 0
    )
    assert "audit:" not in capsys.readouterr().out


def test_audit_only_where_no_enforced_policy_isolates() -> None:
    from dataclasses import replace

    from tests.builders import make_ns, make_pod, make_policy, make_state, sel

    a, b = make_pod("x/a", "pod=a", ip="10.244.0.10"), make_pod("x/b", "pod=b", ip="10.244.0.11")
    trial = replace(make_policy("x/trial", {"podSelector": sel("pod=a")}), audit=True)
    enforced = make_policy(
        "x/allow-b",
        {"podSelector": sel("pod=a"), "ingress": [{"from": [{"podSelector": sel("pod=b")}]}]},
    )
    only_audit = AuditEvaluator(make_state(make_ns("x"), a, b, trial))
    would = only_audit.would_drop(b, a, 80, Protocol.TCP)
    assert would is not None and would.policies == ("x/trial",)
    assert only_audit.enforced.allowed(b, a, 80, Protocol.TCP)  # it flows
    both = AuditEvaluator(make_state(make_ns("x"), a, b, trial, enforced))
    assert both.would_drop(b, a, 80, Protocol.TCP) is None  # allowed by x/allow-b anyway
    assert both.would_drop(a, b, 80, Protocol.TCP) is None  # x/b is not selected

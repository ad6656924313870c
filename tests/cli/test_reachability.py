"""`netpol-agent reachability`, run through agent.cli.main with manifests in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main

NAMESPACES = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {ns: y}}
"""

PODS = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {namespace: x, name: a, labels: {pod: a}}
  spec:
    nodeName: node-0
    containers:
    - name: web
      ports: [{containerPort: 80, name: http}, {containerPort: 53, protocol: UDP}]
  status: {podIP: 10.244.0.10}
- apiVersion: v1
  kind: Pod
  metadata: {namespace: x, name: b, labels: {pod: b}}
  spec: {nodeName: node-0, containers: [{name: c}]}
  status: {podIPs: [{ip: 10.244.0.11}]}
- apiVersion: v1
  kind: Pod
  metadata: {namespace: y, name: a, labels: {pod: a}}
  spec: {nodeName: node-1, containers: [{name: c}]}
  status: {podIP: 10.244.1.10}
- apiVersion: v1
  kind: Pod
  metadata: {namespace: y, name: pending, labels: {pod: p}}
  spec: {containers: [{name: c}]}
"""

POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: allow-b}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {namespace: x, name: web}
spec: {}
"""

EXPECTED_80 = """\
80/TCP
-\tx/a\tx/b\ty/a
x/a\t.\t.\t.
x/b\t.\t.\t.
y/a\tX\t.\t.
"""

EXPECTED = (
    """\
53/UDP
-\tx/a\tx/b\ty/a
x/a\t.\t.\t.
x/b\tX\t.\t.
y/a\tX\t.\t.

"""
    + EXPECTED_80
)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    (d / "sub").mkdir(parents=True)
    (d / "namespaces.yaml").write_text(NAMESPACES)
    (d / "sub" / "pods.yml").write_text(PODS)
    (d / "policy.yaml").write_text(POLICY)
    (d / "README.md").write_text("not a manifest")
    return d


def test_tables_for_every_declared_port(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reachability", "-f", str(manifests)]) == 0
    out, err = capsys.readouterr()
    assert out == EXPECTED
    assert "skipped Deployment x/web" in err
    assert "policy.yaml: document 2" in err
    assert "pod y/pending left out: no IP" in err


def test_port_and_protocol_flags(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reachability", "-f", str(manifests), "--port", "80"]) == 0
    assert capsys.readouterr().out == EXPECTED_80
    assert main(["reachability", "-f", str(manifests), "--protocol", "udp"]) == 0
    assert capsys.readouterr().out.startswith("53/UDP\n")
    assert main(["reachability", "-f", str(manifests), "--port", "9000", "--protocol", "SCTP"]) == 0
    assert capsys.readouterr().out.startswith("9000/SCTP\n")


def test_several_files(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        str(manifests / "namespaces.yaml"),
        str(manifests / "sub" / "pods.yml"),
        str(manifests / "policy.yaml"),
    ]
    assert main(["reachability", *(a for f in files for a in ("-f", f))]) == 0
    assert capsys.readouterr().out == EXPECTED


def test_json_output_exact_shape(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reachability", "-f", str(manifests), "-o", "json", "--port", "80"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "pods": ["x/a", "x/b", "y/a"],
        "results": [
            {
                "port": 80,
                "protocol": "TCP",
                "allowed": {
                    "x/a": {"x/a": True, "x/b": True, "y/a": True},
                    "x/b": {"x/a": True, "x/b": True, "y/a": True},
                    "y/a": {"x/a": False, "x/b": True, "y/a": True},
                },
            }
        ],
    }


def test_json_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "x", "name": "a"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
        "status": {"podIP": "10.244.0.10"},
    }
    (tmp_path / "pods.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "PodList", "items": [pod]})
    )
    assert main(["reachability", "-f", str(tmp_path / "pods.json")]) == 0
    assert capsys.readouterr().out == "8080/TCP\n-\tx/a\nx/a\t.\n"


def test_expect_pass(manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "expected.txt"
    expect.write_text("# policy unit test\n" + EXPECTED)
    assert main(["reachability", "-f", str(manifests), "--expect", str(expect)]) == 0
    assert capsys.readouterr().out.startswith("OK: 2 table(s) of 3 pods match")


def test_expect_json_pass(
    manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reachability", "-f", str(manifests), "-o", "json"]) == 0
    expect = tmp_path / "expected.json"
    expect.write_text(capsys.readouterr().out)
    assert main(["reachability", "-f", str(manifests), "--expect", str(expect)]) == 0


def test_expect_fail_prints_diff_and_exits_1(
    manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = tmp_path / "expected.txt"
    expect.write_text(EXPECTED.replace("y/a\tX\t.\t.\n", "y/a\t.\t.\t.\n"))
    assert main(["reachability", "-f", str(manifests), "--expect", str(expect)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL: reachability differs from {expect}:" in out
    assert "53/UDP: 1 cell differs\n  y/a -> x/a: expected allowed (.), got blocked (X)\n" in out
    assert "80/TCP: 1 cell differs\n  y/a -> x/a: expected allowed (.), got blocked (X)\n" in out
    assert "actual:\n" + EXPECTED in out


def test_expect_missing_block(
    manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = tmp_path / "expected.txt"
    expect.write_text(EXPECTED_80)
    assert main(["reachability", "-f", str(manifests), "--expect", str(expect)]) == 1
    assert "block 53/UDP was computed but is not in the expected table" in capsys.readouterr().out


def test_explain(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "reachability",
        "-f",
        str(manifests),
        "--explain",
        "x/b",
        "x/a",
        "--port",
        "80",
        "--protocol",
        "TCP",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("x/b -> x/a 80/TCP: ALLOWED\n")
    assert "isolated by: x/allow-b" in out
    assert (
        "allowed by x/allow-b ingress rule 0: peer 0: podSelector pod=b in namespace x; named port http/TCP"
        in out
    )
    assert (
        main(["reachability", "-f", str(manifests), "--explain", "y/a", "x/a", "--port", "80"]) == 0
    )
    out = capsys.readouterr().out
    assert "y/a -> x/a 80/TCP: BLOCKED" in out and "no rule of these policies allows it" in out


def test_explain_every_case_and_ips(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reachability", "-f", str(manifests), "--explain", "192.0.2.1", "x/a"]) == 0
    out = capsys.readouterr().out
    assert "192.0.2.1 -> x/a 53/UDP: BLOCKED" in out and "192.0.2.1 -> x/a 80/TCP: BLOCKED" in out


def _bad(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kind: Pod\nmetadata: {name: a, namespace: x}\nstatus: {podIP: 10.0.0.300}\n",
            "bad.yaml: document 1: Pod x/a: status.podIP",
        ),
        ("a: [unclosed\n", "bad.yaml:2: invalid YAML"),
        ("- just\n- a list\n", "bad.yaml: document 1: not a Kubernetes object"),
        ("metadata: {name: a}\n", "bad.yaml: document 1: the object has no `kind`"),
        (
            "kind: List\nitems:\n- kind: Pod\n  metadata: {namespace: x}\n",
            "bad.yaml: document 1: items[0]: Pod",
        ),
        (
            "kind: Namespace\nmetadata: {name: x}\n---\nkind: Namespace\nmetadata: {name: x}\n",
            "bad.yaml: document 2: Namespace x is already defined in",
        ),
    ],
)
def test_bad_input_exit_2_names_file_and_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = _bad(tmp_path, text)
    assert main(["reachability", "-f", str(path), "--port", "80"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_invalid_json_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad(tmp_path, '{"kind": "Pod",', "bad.json")
    assert main(["reachability", "-f", str(path)]) == 2
    assert "bad.json:1: invalid JSON" in capsys.readouterr().err
    assert main(["reachability", "-f", str(tmp_path / "nope")]) == 2
    assert "nope: no such file or directory" in capsys.readouterr().err


def test_invalid_policy_reported_fails_closed_exit_2(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (manifests / "policy.yaml").write_text(
        POLICY.replace("ports: [{port: http}]", "ports: [{port: 80, endPort: 70}]")
    )
    assert main(["reachability", "-f", str(manifests), "--port", "80"]) == 2
    out, err = capsys.readouterr()
    assert (
        "policy.yaml: document 1: NetworkPolicy x/allow-b: spec.ingress[0].ports[0].endPort" in err
    )
    assert "x/allow-b is invalid: it isolates the pods it selects and allows nothing" in err
    assert "y/a\tX\t.\t." in out and "x/b\tX\t.\t." in out  # fail closed: even x/b is blocked


def test_bad_flags(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reachability", "-f", str(manifests), "--explain", "x/zz", "x/a"]) == 2
    assert "no pod x/zz in the manifests" in capsys.readouterr().err
    assert main(["reachability", "-f", str(manifests), "--explain", "nope", "x/a"]) == 2
    assert "neither ns/pod nor an IP" in capsys.readouterr().err
    assert main(["reachability", "-f", str(manifests), "--protocol", "SCTP"]) == 2
    assert "no pod declares a containerPort for SCTP" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["reachability", "-f", str(manifests), "--port", "0"])
    assert info.value.code == 2


def test_bad_expect_file(
    manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = tmp_path / "expected.txt"
    expect.write_text("80/TCP\n-\tx/a\nx/a\t?\n")
    assert main(["reachability", "-f", str(manifests), "--expect", str(expect)]) == 2
    assert f"{expect}:3: cell '?'" in capsys.readouterr().err


def test_ruleset_engine_agrees_or_explains(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["reachability", "-f", str(manifests), "--engine", "ruleset"])
    out, err = capsys.readouterr()
    if code == 2:  # the compiled engine is not in this build yet
        assert "--engine ruleset is not available" in err
    else:
        assert code == 0 and out == EXPECTED


NO_NODE = """\
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {app: b}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: deny}
spec: {podSelector: {matchLabels: {app: a}}}
"""


def test_both_engines_agree_on_pods_without_a_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no-node.yaml"
    path.write_text(NO_NODE)
    tables = []
    for engine in ("reference", "ruleset"):
        assert main(["reachability", "-f", str(path), "--engine", engine]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1]
    assert "x/b\tX\t." in tables[1]  # default deny on x/a: not "allowed everywhere"


def test_explain_with_the_ruleset_engine_prints_the_walk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no-node.yaml"
    path.write_text(NO_NODE)
    args = ["reachability", "-f", str(path), "--engine", "ruleset", "--explain", "x/b", "x/a"]
    assert main([*args, "--port", "80", "--protocol", "TCP"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("x/b -> x/a 80/TCP: DENIED")
    assert "FORWARD -> DROP (" in out and "rules evaluated)" in out
    assert "NPA-INGRESS#" in out and "NPA-DROP-INGRESS#" in out

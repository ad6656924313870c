"""`netpol-agent compile`, run through agent.cli.main with manifests in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Node
metadata: {name: node-0}
spec: {podCIDR: 10.244.0.0/24, podCIDRs: [10.244.0.0/24, "fd00:10:244::/64"]}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}, {type: Hostname, address: node-0}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {pod: a}}
spec: {nodeName: node-0, containers: [{name: web, ports: [{containerPort: 80, name: http}]}]}
status: {podIPs: [{ip: 10.244.0.10}, {ip: "fd00:10:244::a"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {pod: b}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {podIPs: [{ip: 10.244.1.10}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: allow-b}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: http}]}]
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(MANIFESTS)
    return path


def test_compile_prints_sets_then_one_payload_per_family(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "-f", str(manifests), "--node", "node-0", "--stats"]) == 0
    out, err = capsys.readouterr()
    assert out.index("create npa-q4-") < out.index("# IPv4:") < out.index("# IPv6:")
    assert "add npa-n4-" in out and "10.244.0.1\n" in out  # cni0 gateway from the podCIDR
    assert out.count("-I FORWARD 1 -m comment --comment netpol-agent -j NPA-FORWARD") == 2
    assert "add npa-q4-" in out and "10.244.0.10,tcp:80,10.244.1.10" in out  # the named port
    assert "dst,dst,src" in out
    assert "IPv4: 9 chains, 28 rules, 7 sets" in err


def test_compile_one_family(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "-f", str(manifests), "--node", "node-0", "--family", "6"]) == 0
    out, _ = capsys.readouterr()
    assert "# IPv4" not in out and "family inet6" in out and "fd00:10:244::a\n" in out


def test_compile_warns_about_an_unknown_node(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "-f", str(manifests), "--node", "node-9"]) == 0
    _, err = capsys.readouterr()
    assert "no Node node-9" in err and "no pod is scheduled on node-9" in err


def test_compile_rejects_kube_proxy_mark_bits(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "-f", str(manifests), "--node", "node-0", "--mark-bit", "14"]) == 2
    _, err = capsys.readouterr()
    assert "kube-proxy" in err

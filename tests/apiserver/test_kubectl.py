"""The stock kubectl (/usr/bin/kubectl, the release its dispatcher picks from /version) against
the lab API server over TLS with a bearer token: one test per verb users run in the lab."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.lab.apiserver import ApiServer
from tests.apiserver.support import KUBECTL, Kubectl

pytestmark = pytest.mark.skipif(
    not __import__("os").path.exists(KUBECTL), reason="kubectl is not installed"
)

MANIFEST = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: default
  labels: {team: a}
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    ports:
    - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {app: web, tier: front}
spec:
  nodeName: node-0
  containers:
  - name: c
    image: busybox
    ports:
    - containerPort: 80
      name: http
"""


def _applied(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    assert "networkpolicy.networking.k8s.io/web created" in out
    assert "pod/web created" in out


def test_version_is_in_the_dispatchers_range(kubectl: Kubectl) -> None:
    info = json.loads(kubectl.run("version", "-o", "json"))
    assert info["serverVersion"]["gitVersion"].startswith("v1.32.")


def test_apply_creates_objects(kubectl: Kubectl) -> None:
    _applied(kubectl)
    pod = kubectl.json("get", "pod", "web")
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]
    netpol = kubectl.json("get", "networkpolicy", "web")
    assert netpol["spec"]["policyTypes"] == ["Ingress"]  # defaulted as upstream does
    assert netpol["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_apply_again_with_a_change(kubectl: Kubectl) -> None:
    _applied(kubectl)
    changed = (
        MANIFEST.replace("port: 80\n", "port: 8080\n")
        .replace("labels: {app: web, tier: front}", "labels: {app: web}")
        .replace("image: busybox", "image: busybox:1.36")
    )
    out = kubectl.run("apply", "-f", "-", stdin=changed)
    assert "networkpolicy.networking.k8s.io/web configured" in out
    assert "pod/web configured" in out
    netpol = kubectl.json("get", "netpol", "web")
    assert netpol["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert netpol["metadata"]["generation"] == 2
    pod = kubectl.json("get", "pod", "web")
    assert pod["metadata"]["labels"] == {"app": "web"}  # removed via last-applied (3-way)
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.36"
    again = kubectl.run("apply", "-f", "-", stdin=changed)
    assert "unchanged" in again


def test_apply_rejects_an_invalid_policy_with_the_field_path(kubectl: Kubectl) -> None:
    bad = MANIFEST.split("---")[0].replace(
        "- podSelector: {matchLabels: {app: client}}", "- ipBlock: {cidr: 10.0.0.0/33}"
    )
    out = kubectl.run("apply", "-f", "-", stdin=bad, check=False)
    assert "is invalid" in out
    assert "spec.ingress[0].from[0].ipBlock.cidr" in out
    assert "No resources found" in kubectl.run("get", "netpol", check=False)


def test_get_json(kubectl: Kubectl) -> None:
    _applied(kubectl)
    listed = kubectl.json("get", "pods")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web"]


def test_get_yaml(kubectl: Kubectl) -> None:
    _applied(kubectl)
    out = kubectl.run("get", "netpol", "web", "-o", "yaml")
    assert "kind: NetworkPolicy" in out
    assert "policyTypes:\n  - Ingress" in out


def test_get_table_and_wide(kubectl: Kubectl) -> None:
    _applied(kubectl)
    plain = kubectl.run("get", "pods").splitlines()
    assert plain[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert plain[1].split()[:4] == ["web", "0/1", "Pending", "0"]
    wide = kubectl.run("get", "pods", "-o", "wide").splitlines()
    assert "NODE" in wide[0] and "IP" in wide[0]
    assert "node-0" in wide[1]
    netpol = kubectl.run("get", "netpol").splitlines()
    assert netpol[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert netpol[1].split()[:2] == ["web", "app=web"]


def test_get_all_namespaces(kubectl: Kubectl) -> None:
    _applied(kubectl)
    kubectl.run("create", "namespace", "other")  # typed kubectl commands send protobuf
    kubectl.run(
        "apply", "-f", "-", stdin=MANIFEST.replace("namespace: default", "namespace: other")
    )
    rows = kubectl.run("get", "pods", "-A").splitlines()
    assert rows[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert sorted(r.split()[0] for r in rows[1:]) == ["default", "other"]


def test_get_with_label_selector(kubectl: Kubectl) -> None:
    _applied(kubectl)
    kubectl.run("run", "other", "--image=busybox", "--labels=app=other")
    assert kubectl.run("get", "pods", "-l", "app=web", "-o", "name").split() == ["pod/web"]
    assert kubectl.run("get", "pods", "-l", "app in (other)", "-o", "name").split() == ["pod/other"]
    assert kubectl.run("get", "pods", "-l", "!tier", "-o", "name").split() == ["pod/other"]


def test_get_watch_prints_table_rows(kubectl: Kubectl, tmp_path: Path) -> None:
    _applied(kubectl)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kubectl.kubeconfig)}
    watching = subprocess.Popen(
        [KUBECTL, "get", "pods", "-w", "--output-watch-events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert watching.stdout is not None
        assert watching.stdout.readline().split()[:2] == ["EVENT", "NAME"]
        assert watching.stdout.readline().split()[:3] == ["ADDED", "web", "0/1"]
        kubectl.run("label", "pod", "web", "x=1")
        assert watching.stdout.readline().split()[:3] == ["MODIFIED", "web", "0/1"]
    finally:
        watching.kill()
        watching.wait(timeout=10)


def test_describe_pod(kubectl: Kubectl) -> None:
    _applied(kubectl)
    out = kubectl.run("describe", "pod", "web")
    assert "Name:         web" in out
    assert "Labels:       app=web" in out
    assert "80/TCP" in out
    assert "Events:" in out


def test_describe_networkpolicy(kubectl: Kubectl) -> None:
    _applied(kubectl)
    out = kubectl.run("describe", "netpol", "web")
    assert "PodSelector:     app=web" in out
    assert "To Port: 80/TCP" in out


def test_label_overwrite_and_removal(kubectl: Kubectl) -> None:
    _applied(kubectl)
    refused = kubectl.run("label", "pod", "web", "tier=back", check=False)
    assert "already has a value" in refused
    kubectl.run("label", "pod", "web", "tier=back", "--overwrite")
    assert kubectl.json("get", "pod", "web")["metadata"]["labels"]["tier"] == "back"
    kubectl.run("label", "pod", "web", "tier-")
    assert kubectl.json("get", "pod", "web")["metadata"]["labels"] == {"app": "web"}


def test_annotate(kubectl: Kubectl) -> None:
    _applied(kubectl)
    kubectl.run("annotate", "netpol", "web", "owner=me")
    annotations = kubectl.json("get", "netpol", "web")["metadata"]["annotations"]
    assert annotations["owner"] == "me"
    kubectl.run("annotate", "netpol", "web", "owner-")
    assert "owner" not in kubectl.json("get", "netpol", "web")["metadata"]["annotations"]


def test_patch_merge(kubectl: Kubectl) -> None:
    _applied(kubectl)
    kubectl.run(
        "patch", "netpol", "web", "--type", "merge",
        "-p", '{"spec":{"podSelector":{"matchLabels":{"app":"api"}}}}',
    )  # fmt: skip
    assert kubectl.json("get", "netpol", "web")["spec"]["podSelector"] == {
        "matchLabels": {"app": "api"}
    }


def test_patch_strategic(kubectl: Kubectl) -> None:
    _applied(kubectl)
    patch = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}]}]}}
    kubectl.run("patch", "pod", "web", "--type", "strategic", "-p", json.dumps(patch))
    container = kubectl.json("get", "pod", "web")["spec"]["containers"][0]
    assert container["image"] == "busybox"  # merged by name, not replaced
    ports = sorted(p["containerPort"] for p in container["ports"])
    assert ports == [80, 81]  # merged by containerPort


def test_patch_json(kubectl: Kubectl) -> None:
    _applied(kubectl)
    ops = [
        {"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": 443},
        {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
    ]
    kubectl.run("patch", "netpol", "web", "--type", "json", "-p", json.dumps(ops))
    netpol = kubectl.json("get", "netpol", "web")
    assert netpol["spec"]["ingress"][0]["ports"][0]["port"] == 443
    assert netpol["metadata"]["labels"] == {"team": "a", "extra": "yes"}


def test_delete(kubectl: Kubectl) -> None:
    _applied(kubectl)
    assert 'pod "web" deleted' in kubectl.run("delete", "pod", "web")
    assert "NotFound" in kubectl.run("get", "pod", "web", check=False)


def test_delete_all(kubectl: Kubectl) -> None:
    _applied(kubectl)
    kubectl.run("run", "second", "--image=busybox")
    out = kubectl.run("delete", "pods", "--all")
    assert 'pod "web" deleted' in out and 'pod "second" deleted' in out
    assert kubectl.json("get", "pods")["items"] == []


def test_delete_namespace_cascades(kubectl: Kubectl, tls_api: ApiServer) -> None:
    kubectl.run("create", "namespace", "gone")
    kubectl.run("apply", "-f", "-", stdin=MANIFEST.replace("namespace: default", "namespace: gone"))
    kubectl.run("delete", "namespace", "gone")
    items: Any = kubectl.json("get", "pods,netpol", "-A")["items"]
    assert items == []

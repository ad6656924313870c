"""ClusterNetworkPolicy in the lab API server, driven by the stock kubectl: apply, get (with
the CRD's printer columns), apply again (a merge patch), delete, and a 422 naming the field."""

from __future__ import annotations

import json
import os

import pytest

from tests.apiserver.support import KUBECTL, Kubectl

pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")

CNP = """\
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: guard
spec:
  tier: Admin
  priority: {priority}
  subject:
    namespaces: {{matchLabels: {{security: high}}}}
  ingress:
  - name: deny-all
    action: Deny
    from:
    - namespaces: {{}}
"""


def test_apply_get_patch_delete(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "-f", "-", stdin=CNP.format(priority=10))
    assert "clusternetworkpolicy.policy.networking.k8s.io/guard created" in out
    table = kubectl.run("get", "clusternetworkpolicies")
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "TIER", "PRIORITY"]
    assert row.split()[:3] == ["guard", "Admin", "10"]
    out = kubectl.run("apply", "-f", "-", stdin=CNP.format(priority=20))
    assert "clusternetworkpolicy.policy.networking.k8s.io/guard configured" in out
    obj = json.loads(kubectl.run("get", "cnp", "guard", "-o", "json"))
    assert obj["spec"]["priority"] == 20
    assert "namespace" not in obj["metadata"]
    assert obj["spec"]["ingress"][0]["name"] == "deny-all"
    out = kubectl.run("delete", "clusternetworkpolicy", "guard")
    assert 'clusternetworkpolicy.policy.networking.k8s.io "guard" deleted' in out
    assert kubectl.run("get", "cnp", "-o", "name") == ""


def test_invalid_is_rejected_with_the_field(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "-f", "-", stdin=CNP.format(priority=5000), check=False)
    assert 'The ClusterNetworkPolicy "guard" is invalid: spec.priority: 5000' in out, out
    assert "between 0 and 1000" in out
    assert kubectl.run("get", "cnp", "-o", "name") == ""

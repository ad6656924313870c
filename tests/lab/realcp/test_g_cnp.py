"""The ClusterNetworkPolicy examples on the real control plane, with the upstream CRD.

The lab installs sigs.k8s.io/network-policy-api's own CRD (scripts/build-kubernetes
copies it from the release; the lab waits until it is Established), so the real API
server validates our examples against the upstream schema and the agents watch
clusternetworkpolicies as in a cluster. Each examples/cnp-* scenario (TCP + UDP
twins) is applied, probed with real packets, compared with the engine cell for cell
and with the example's hand-derived expected.txt, and removed again, as
test_b_scenarios does for the other examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.core.table import format_diff, format_table, parse_table
from agent.lab.apply import load_objects
from agent.lab.client import ApiStatusError
from agent.lab.realcp import crds
from tests.lab.realcp.conftest import RealCluster
from tests.lab.test_examples import with_udp_twins

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CNP_DIRS = sorted(
    p
    for p in EXAMPLES.iterdir()
    if p.is_dir() and any(o.get("kind") == "ClusterNetworkPolicy" for o in load_objects([p]))
)
CRD_NAME = "clusternetworkpolicies.policy.networking.k8s.io"


def test_cnp_examples_exist() -> None:
    assert len(CNP_DIRS) >= 4, [p.name for p in CNP_DIRS]


def test_upstream_crd_is_established(real_lab: RealCluster) -> None:
    crd = real_lab.client.get(f"{crds.CRD_PATH}/{CRD_NAME}")
    annotations = crd["metadata"]["annotations"]
    assert annotations["policy.networking.k8s.io/bundle-version"] == "v0.3.0"
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    out = real_lab.kubectl("get", "clusternetworkpolicies.v1alpha2.policy.networking.k8s.io")
    assert "No resources found" in out.stderr


def test_upstream_schema_refuses_what_ours_refuses(real_lab: RealCluster) -> None:
    """A priority above 1000 is refused by the real API server (the CRD's bound)."""
    bad = {
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "npa-too-high"},
        "spec": {"tier": "Admin", "priority": 1001, "subject": {"namespaces": {}}},
    }
    with pytest.raises(ApiStatusError) as refused:
        real_lab.apply([bad])
    assert refused.value.status == 422
    assert "priority" in str(refused.value)


@pytest.mark.parametrize("scenario", CNP_DIRS, ids=[p.name for p in CNP_DIRS])
def test_cnp_example_agrees_with_engine(real_lab: RealCluster, scenario: Path) -> None:
    objects = with_udp_twins(load_objects([scenario]))
    real_lab.apply(objects)
    try:
        for obj in objects:
            if obj.get("kind") == "ClusterNetworkPolicy":
                # stored as written: the upstream schema neither pruned nor defaulted a field
                name = obj["metadata"]["name"]
                stored = json.loads(real_lab.kubectl("get", "cnp", name, "-o", "json").stdout)
                assert stored["spec"] == obj["spec"], f"{name}: the API server changed the spec"
        table, diff = real_lab.probe()
        assert diff.empty, f"{scenario.name}:\n{format_diff(diff)}\nkernel:\n{format_table(table)}"
        # and with the hand-derived table (an oracle independent of the engine)
        expected = parse_table((scenario / "expected.txt").read_text(), source=str(scenario))
        for want in expected.blocks:
            block = table.block(want.port, want.protocol)
            assert block is not None, f"{scenario.name}: no {want.title} block probed"
            wrong = [
                f"{src} -> {dst}: kernel {'allowed' if block.allowed[src][dst] else 'blocked'}"
                for src, row in want.allowed.items()
                for dst, allowed in row.items()
                if block.allowed[src][dst] != allowed
            ]
            assert not wrong, f"{scenario.name} {want.title}: " + "; ".join(wrong)
    finally:
        real_lab.remove(objects)

"""Every examples/ scenario and the upstream e2e model, with real packets on the real control
plane, agree with the engine cell for cell.

One lab for all: each example is applied, probed over TCP and UDP (the UDP twins of
tests/lab/test_examples.py), compared with the ReferenceEvaluator and removed again
(namespaces stay: deleting one is the namespace controller's slow job, and re-applying
it replaces its labels). The e2e model's nine pods are created once; its scenarios swap
policies and labels in turn, all 38 of them (~1.3 s each: agents' convergence and
the probe; the probe's source ports never repeat, so every cell is a new flow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.core.model import Protocol
from agent.core.table import format_diff, format_table
from agent.lab.apply import load_objects
from tests.builders import policy_dict
from tests.core.test_e2e_model import KEYS, NAMESPACES, SCENARIOS
from tests.lab.realcp.conftest import RealCluster, wait_running
from tests.lab.test_examples import with_udp_twins

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# ClusterNetworkPolicy examples run in test_g_cnp.py (against the upstream CRD and their
# expected.txt); every other example runs here.
EXAMPLE_DIRS = sorted(
    p
    for p in EXAMPLES.iterdir()
    if p.is_dir() and not any(o.get("kind") == "ClusterNetworkPolicy" for o in load_objects([p]))
)
E2E_CASES = [(p, proto) for p in (80, 81) for proto in (Protocol.TCP, Protocol.UDP)]


@pytest.mark.parametrize("scenario", EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def test_example_agrees_with_engine(real_lab: RealCluster, scenario: Path) -> None:
    objects = with_udp_twins(load_objects([scenario]))
    real_lab.apply(objects)
    try:
        table, diff = real_lab.probe()
        assert diff.empty, f"{scenario.name}:\n{format_diff(diff)}\nkernel:\n{format_table(table)}"
    finally:
        real_lab.remove(objects)


def _e2e_objects() -> list[dict[str, Any]]:
    ports = [
        {"name": f"serve-{p}-{proto.lower()}", "containerPort": p, "protocol": proto}
        for p in (80, 81)
        for proto in ("TCP", "UDP")
    ]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}}
        for ns in NAMESPACES
    ]
    for i, key in enumerate(KEYS):
        ns, _, name = key.partition("/")
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                "spec": {
                    "nodeName": f"node-{i % 2}",
                    "containers": [{"name": "c", "image": "lab", "ports": ports}],
                },
            }
        )
    return objects


def _labels(real_lab: RealCluster, overrides: dict[str, Any]) -> None:
    """Set the model's labels plus a scenario's overrides on namespaces and pods."""
    client = real_lab.client
    ns_extra = overrides.get("ns_labels") or {}
    pod_extra = overrides.get("pod_labels") or {}
    for ns in NAMESPACES:
        current = client.get(f"/api/v1/namespaces/{ns}")["metadata"].get("labels") or {}
        want = {"ns": ns, "kubernetes.io/metadata.name": ns, **ns_extra.get(ns, {})}
        patch = {k: None for k in current if k not in want} | want
        client.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": patch}})
    for key in KEYS:
        ns, _, name = key.partition("/")
        path = f"/api/v1/namespaces/{ns}/pods/{name}"
        current = client.get(path)["metadata"].get("labels") or {}
        want = {"pod": name, **pod_extra.get(key, {})}
        patch = {k: None for k in current if k not in want} | want
        client.merge_patch(path, {"metadata": {"labels": patch}})


def test_upstream_e2e_model_agrees_with_engine(real_lab: RealCluster) -> None:
    objects = _e2e_objects()
    real_lab.apply(objects)
    wait_running(real_lab.client, "x", ["a", "b", "c"])
    applied: list[dict[str, Any]] = []
    failures = []
    try:
        relabelled = False
        for name in SCENARIOS:
            policies, overrides, _expected = SCENARIOS[name]
            wanted = [policy_dict(key, spec) for key, spec in policies]
            real_lab.remove([p for p in applied if p not in wanted])
            if overrides or relabelled:
                _labels(real_lab, overrides)
                relabelled = bool(overrides)
            real_lab.apply(wanted)
            applied = wanted
            table, diff = real_lab.probe(E2E_CASES)
            if not diff.empty:
                failures.append(f"{name}:\n{format_diff(diff)}\nkernel:\n{format_table(table)}")
    finally:
        real_lab.remove(applied + objects)
    assert not failures, "\n".join(failures)

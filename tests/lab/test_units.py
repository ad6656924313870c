"""Lab logic that needs no kernel: convergence waiting, case selection, scheduling,
state files, manifests and the kubelet's status marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from agent.core.errors import InputError, ManifestError
from agent.core.model import Protocol
from agent.lab import topology
from agent.lab.apply import load_objects
from agent.lab.kubelet import Kubelet, container_id, started_by_lab
from agent.lab.probe import NotConverged, select_cases, wait_converged
from agent.lab.scheduler import PodWatcher
from agent.lab.state import LabConfig, LabPaths, alive_pid, write_pid
from tests.builders import make_pod


def test_wait_converged_names_the_lagging_node() -> None:
    topo = topology.plan("u", nodes=2)
    states = {
        "node-0": {"synced_resource_version": "12"},
        "node-1": {"synced_resource_version": "9"},
    }
    with pytest.raises(NotConverged, match=r"resourceVersion 12 .*node-1: synced 9") as err:
        wait_converged(topo, 12, timeout=0, states=lambda t: states)
    assert "node-0" not in str(err.value)
    states["node-1"] = {"synced_resource_version": "12"}
    assert wait_converged(topo, 12, timeout=0, states=lambda t: states) >= 0


def test_unreachable_agent_is_reported() -> None:
    topo = topology.plan("u", nodes=1)
    with pytest.raises(NotConverged, match="node-0: unreachable: refused"):
        wait_converged(topo, 1, timeout=0, states=lambda t: {"node-0": "unreachable: refused"})


def test_select_cases() -> None:
    pods = [
        make_pod("x/a", ports=((80, "TCP", None), (53, "UDP", None))),
        make_pod("x/b", ports=((80, "UDP", None),)),
    ]
    assert select_cases(pods, port=None, protocol=None) == [
        (53, Protocol.UDP),
        (80, Protocol.TCP),
        (80, Protocol.UDP),
    ]
    assert select_cases(pods, port=80, protocol=None) == [(80, Protocol.TCP), (80, Protocol.UDP)]
    assert select_cases(pods, port=8080, protocol=None) == [(8080, Protocol.TCP)]
    assert select_cases(pods, port=None, protocol=Protocol.UDP) == [
        (53, Protocol.UDP),
        (80, Protocol.UDP),
    ]
    with pytest.raises(InputError, match="SCTP"):
        select_cases(pods, port=None, protocol=Protocol.SCTP)


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, Any]] = []

    def merge_patch(self, path: str, patch: Any) -> dict[str, Any]:
        self.patches.append((path, patch))
        return {}


class FakeKubelet:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def submit(self, etype: str, pod: dict[str, Any]) -> None:
        self.events.append((etype, pod["metadata"]["name"]))


def unbound(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "x", "uid": f"u-{name}"}, "spec": {}}


def test_unbound_pods_are_spread_in_creation_order() -> None:
    client = FakeClient()
    kubelets = {"node-0": FakeKubelet(), "node-1": FakeKubelet()}
    watcher = PodWatcher(
        client=cast(Any, client),
        kubelets=cast(dict[str, Kubelet], kubelets),
        order=["node-0", "node-1"],
    )
    bound = {
        "metadata": {"name": "pinned", "namespace": "x", "uid": "u-p"},
        "spec": {"nodeName": "node-0"},
    }
    watcher.handle("ADDED", bound)
    for name in ("a", "b", "c"):
        watcher.handle("ADDED", unbound(name))
    assert [(p, body["spec"]["nodeName"]) for p, body in client.patches] == [
        ("/api/v1/namespaces/x/pods/a", "node-1"),
        ("/api/v1/namespaces/x/pods/b", "node-0"),
        ("/api/v1/namespaces/x/pods/c", "node-1"),
    ]
    assert kubelets["node-0"].events == [("ADDED", "pinned")]
    watcher.handle("DELETED", bound)
    assert kubelets["node-0"].events[-1] == ("DELETED", "pinned")
    other = {
        "metadata": {"name": "elsewhere", "namespace": "x", "uid": "u-e"},
        "spec": {"nodeName": "node-9"},
    }
    watcher.handle("ADDED", other)  # a node the lab does not have: stays Pending
    assert all(e[1] != "elsewhere" for k in kubelets.values() for e in k.events)


def test_status_marker_tells_lab_status_from_a_manifests() -> None:
    pod: dict[str, Any] = {
        "metadata": {"uid": "abc"},
        "status": {"phase": "Running", "podIP": "10.244.0.10"},
    }
    assert not started_by_lab(pod)
    pod["status"]["containerStatuses"] = [{"containerID": "containerd://x"}]
    assert not started_by_lab(pod)
    pod["status"]["containerStatuses"] = [{"containerID": container_id("abc", 0)}]
    assert started_by_lab(pod)
    assert not started_by_lab({**pod, "metadata": {"uid": "other"}})


def test_config_round_trip_and_pid_files(tmp_path: Path) -> None:
    config = LabConfig(name="u", nodes=3, ipv6=True, agent_args=("--log-level", "debug"))
    assert LabConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    paths = LabPaths(tmp_path)
    write_pid(paths.daemon_pid, 1)
    assert alive_pid(paths.daemon_pid) == 1
    paths.daemon_pid.write_text("1 not-its-start-time\n")  # a recycled pid is never ours
    assert alive_pid(paths.daemon_pid) is None


def test_manifests_namespaces_first_and_errors_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: n}}\n"
    )
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert [o["kind"] for o in load_objects([tmp_path])] == ["Namespace", "Pod"]
    (tmp_path / "b.yaml").write_text("- just a list\n")
    with pytest.raises(ManifestError, match=r"b\.yaml: document 1"):
        load_objects([tmp_path])
    with pytest.raises(ManifestError, match="missing"):
        load_objects([tmp_path / "missing"])

"""The whole agent in-process (fake API source and dataplane), scraped over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.core.model import ClusterState
from agent.kube.api import Kind
from agent.kube.decode import decode
from agent.node.agent import Agent
from agent.node.metrics import DropCount
from agent.node.settings import Settings
from tests.node.fakes import FakeApiSource, FakeDataplane, node_dict, ns_dict, pod_dict, policy_dict
from tests.polling import wait_for

EXPECTED = {
    "netpol_sync_duration_seconds",
    "netpol_event_to_kernel_seconds",
    "netpol_last_successful_sync_timestamp_seconds",
    "netpol_sync_failures",
    "netpol_tamper_detected",
    "netpol_watch_events",
    "netpol_watch_restarts",
    "netpol_build_info",
    "netpol_ready",
    "netpol_cluster_objects",
    "netpol_policies",
    "netpol_policies_invalid",
    "netpol_local_pods",
    "netpol_local_pods_selected",
    "netpol_owned_chains",
    "netpol_owned_rules",
    "netpol_owned_ipsets",
    "netpol_owned_ipset_entries",
    "netpol_synced_resource_version",
    "netpol_dropped_packets",
    "netpol_dropped_bytes",
}


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def running() -> Iterator[tuple[Agent, FakeApiSource]]:
    src = FakeApiSource(idle_wait=0.05)
    src.put(Kind.NAMESPACES, ns_dict("x"))
    src.put(Kind.NODES, node_dict("node-0"))
    src.put(Kind.PODS, pod_dict("x", "a", labels={"app": "a"}))
    src.put(Kind.NETWORK_POLICIES, policy_dict("x", "deny", selector={"app": "a"}))
    src.put(Kind.NETWORK_POLICIES, policy_dict("x", "bad", ingress=[{"ports": [{"port": 0}]}]))

    def compiler(state: ClusterState) -> Any:
        return {"pods": len(state.pods)}

    agent = Agent(
        settings=Settings(
            node_name="node-0", metrics_bind_address="127.0.0.1:0", min_sync_interval=0.0
        ),
        source=src,
        decode=decode,
        compiler=compiler,
        dataplane=FakeDataplane(),
        ruleset_stats=lambda r: {"chains": 7, "rules": 21, "ipsets": 3, "ipset_entries": 5},
        drops=lambda: [DropCount("x", "a", "ingress", 4, 240)],
    ).start()
    try:
        yield agent, src
    finally:
        agent.stop()


def test_endpoints(running: tuple[Agent, FakeApiSource]) -> None:
    agent, src = running
    assert agent.http is not None
    port = agent.http.port
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    assert get(port, "/healthz") == (200, "ok\n")
    status = json.loads(get(port, "/statusz")[1])
    assert status["ready"] is True and status["node"] == "node-0"
    assert status["version"] == __version__
    assert isinstance(status["synced_resource_version"], str)
    assert int(status["synced_resource_version"]) >= 5
    assert status["last_sync_unix"] > 1_600_000_000
    assert get(port, "/nope")[0] == 404

    code, text = get(port, "/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) >= EXPECTED, EXPECTED - set(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("netpol_policies", ())] == 2
    assert samples[("netpol_policies_invalid", ())] == 1
    assert samples[("netpol_local_pods_selected", (("direction", "ingress"),))] == 1
    assert samples[("netpol_owned_rules", ())] == 21
    assert (
        samples[
            (
                "netpol_dropped_packets_total",
                (("direction", "ingress"), ("namespace", "x"), ("pod", "a")),
            )
        ]
        == 4
    )
    assert samples[("netpol_cluster_objects", (("resource", "pods"),))] == 1
    assert (
        samples[("netpol_sync_duration_seconds_count", (("kind", "full"), ("result", "success")))]
        >= 1
    )
    assert samples[("netpol_ready", ())] == 1
    build_info = families["netpol_build_info"].samples[0]
    assert build_info.value == 1 and build_info.labels["version"] == __version__

    # a change flows through: a new pod -> a sync -> the latency histogram and rv advance
    rv = src.put(Kind.PODS, pod_dict("x", "b", ip="10.244.0.11"))
    wait_for(lambda: int(json.loads(get(port, "/statusz")[1])["synced_resource_version"]) >= rv)
    text = get(port, "/metrics")[1]
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    count = [
        s.value
        for s in fams["netpol_event_to_kernel_seconds"].samples
        if s.name.endswith("_count") and s.labels["resource"] == "pods"
    ]
    assert count and count[0] >= 2


def test_openmetrics_negotiation(running: tuple[Agent, FakeApiSource]) -> None:
    agent, _ = running
    assert agent.http is not None
    req = urllib.request.Request(
        f"http://127.0.0.1:{agent.http.port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert "openmetrics" in resp.headers["Content-Type"]
        assert resp.read().decode().rstrip().endswith("# EOF")


def test_port_in_use_is_a_clear_error() -> None:
    import socket

    from agent.core.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        agent = Agent(
            settings=Settings(node_name="node-0", metrics_bind_address=f"127.0.0.1:{port}"),
            source=FakeApiSource(),
            decode=decode,
            compiler=lambda s: None,
            dataplane=FakeDataplane(),
        )
        with pytest.raises(ConfigError, match="cannot listen"):
            agent.start()

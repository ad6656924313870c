"""The synthetic cluster generator and the result formatting (pure, fast)."""

from __future__ import annotations

import json

import pytest

from agent.bench.cluster import NODE, ClusterSpec, generate
from agent.bench.compiling import Size, measure_compile, parse_sizes
from agent.bench.results import Goal, Report, Result, quantile
from agent.core.model import Direction


def test_sizes_are_exact_and_deterministic() -> None:
    spec = ClusterSpec(pods=1000, policies=100, local_pods=10, seed=7)
    a, b = generate(spec), generate(spec)
    assert a.objects() == b.objects()
    assert len(a.pods) == 1000 and len(a.policies) == 100
    assert sum(p["spec"]["nodeName"] == NODE for p in a.pods) == 10
    assert (
        generate(ClusterSpec(pods=1000, policies=100, local_pods=10, seed=8)).objects()
        != a.objects()
    )


def test_ips_are_unique_and_local_pods_follow_the_address_plan() -> None:
    m = generate(ClusterSpec(pods=2000, policies=200, local_pods=50))
    ips = [p["status"]["podIP"] for p in m.pods]
    assert len(set(ips)) == len(ips)
    local = [p["status"]["podIP"] for p in m.pods if p["spec"]["nodeName"] == NODE]
    assert all(ip.startswith("10.244.0.") for ip in local)


def test_policies_use_every_feature_the_issue_names() -> None:
    state = generate(ClusterSpec(pods=500, policies=50, local_pods=5)).state()
    assert all(p.valid for p in state.policies.values())
    peers = [
        peer
        for p in state.policies.values()
        for d in Direction
        for rule in p.rules(d)
        for peer in rule.peers
    ]
    ports = [
        port
        for p in state.policies.values()
        for d in Direction
        for r in p.rules(d)
        for port in r.ports
    ]
    names = {p.name for p in state.policies.values()}
    assert "default-deny" in names and "allow-dns" in names
    assert any(
        peer.namespace_selector is not None and peer.pod_selector is not None for peer in peers
    )
    assert any(peer.ip_block is not None and peer.ip_block.excepts for peer in peers)
    assert any(isinstance(port.port, str) for port in ports)  # named ports
    assert any(port.end_port is not None for port in ports)
    assert any(p.pod_selector.match_expressions for p in state.policies.values())


def test_compile_measurement_reports_time_memory_and_size() -> None:
    state = generate(ClusterSpec(pods=300, policies=30, local_pods=5)).state()
    seconds, peak, size = measure_compile(state, repeat=1)
    assert len(seconds) == 1 and peak > 0
    assert size["chains"] > 0 and size["rules"] > 0 and size["ipsets"] > 0


def test_parse_sizes() -> None:
    assert parse_sizes("1000x100x10, 10000x1000x100") == (
        Size(1000, 100, 10),
        Size(10000, 1000, 100),
    )
    with pytest.raises(ValueError, match="PODSxPOLICIESxLOCAL"):
        parse_sizes("1000x100")


def test_quantile_and_goals() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) in (50.0, 51.0)
    assert quantile(values, 0.99) == 99.0
    assert quantile([], 0.5) == 0.0
    assert Goal("<=", 20).met(19.9) and not Goal(">=", 0.9).met(0.5)


def test_report_formats() -> None:
    report = Report(machine={"cpus": 2}, config={"pods": 10})
    report.results.append(Result("cold", "nft", "ratio", 1.5, "x", Goal("<=", 1.3)))
    report.problems.append("memory (nft): boom")
    table = report.as_table()
    assert "NO" in table and "NOT MEASURED: memory (nft): boom" in table
    data = json.loads(report.as_json())
    assert data["results"][0]["met"] is False and data["results"][0]["goal"] == "<= 1.3"

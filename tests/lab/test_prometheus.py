"""A real Prometheus scrapes the lab's agents the way deploy/monitoring does.

`lab up --prometheus` with 1 s scrapes and every alert's `for:` cut to 3 s: after
a probe against the default-deny example, Prometheus's HTTP API has the drop
counters and sync-latency series of every node with the right labels, and
NetpolAgentDown fires for a node whose agent is killed (killed again whenever
the lab's supervisor restarts it, as a crash-looping DaemonSet pod would be).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab import prometheus
from agent.lab.apply import load_objects
from agent.lab.state import alive_pid
from tests.lab.conftest import RunningLab, start_lab

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "001-deny-all-ingress"


@pytest.fixture(scope="module")
def prom_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    yield from start_lab(tmp_path_factory.mktemp("lab"), nodes=2, prometheus=True, alert_for="3s")


def query(url: str, promql: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_series_per_node_and_the_agent_down_alert(prom_lab: RunningLab) -> None:
    url = prometheus.address(prom_lab.paths)
    assert url is not None and url.startswith("http://127.0.0.1:")
    status = prom_lab.cli("status")
    assert f"prometheus: {url}" in status
    objects = load_objects([EXAMPLE])
    prom_lab.apply(objects)
    _, diff = prom_lab.probe(timeout=0.5)
    assert diff.empty

    up = eventually(lambda: len(query(url, 'up{job="netpol-agent-metrics"} == 1')) == 2)
    assert up, query(url, "up")
    dropped = eventually(lambda: query(url, "netpol_dropped_packets_total > 0"))
    assert {
        (
            s["metric"]["node"],
            s["metric"]["namespace"],
            s["metric"]["pod"],
            s["metric"]["direction"],
        )
        for s in dropped
    } == {("node-0", "default", "database", "ingress")}
    events = eventually(lambda: query(url, "netpol_drop_events_total > 0"))
    assert {(s["metric"]["node"], s["metric"]["pod"], s["metric"]["action"]) for s in events} == {
        ("node-0", "database", "drop")
    }
    syncs = query(url, 'netpol_sync_duration_seconds_count{result="success"}')
    assert {s["metric"]["node"] for s in syncs} == {"node-0", "node-1"}
    assert all(s["metric"]["job"] == "netpol-agent-metrics" for s in syncs)
    assert not query(url, 'ALERTS{alertname="NetpolAgentDown"}')

    pid_file = prom_lab.paths.agent_pid("node-1")

    def firing() -> list[dict[str, Any]]:
        pid = alive_pid(pid_file)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        return query(url, 'ALERTS{alertname="NetpolAgentDown",alertstate="firing"}')

    alerts = eventually(firing, timeout=60)
    assert [a["metric"]["node"] for a in alerts] == ["node-1"]
    assert alerts[0]["metric"]["severity"] == "critical"
    prom_lab.delete(objects)

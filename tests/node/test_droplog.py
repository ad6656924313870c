"""Drop events on the node: windows per key, the bounded ring, metrics, lost events, /drops."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.core.dropevents import DropEvent
from agent.core.errors import DataplaneError
from agent.kube.api import Kind
from agent.kube.decode import decode
from agent.node.agent import Agent
from agent.node.droplog import DropLog, DropMetrics, DropWatcher
from agent.node.settings import Settings
from tests.core.test_packets import PORTS, v4
from tests.node.fakes import FakeApiSource, FakeDataplane, node_dict, ns_dict, pod_dict, policy_dict
from tests.node.test_http import get
from tests.polling import wait_for


def event(t: float, *, peer: str = "y/b", action: str = "drop") -> DropEvent:
    return DropEvent("node-0", action, "ingress", "x/a", peer, "TCP", 80, ("x/deny",), t)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_one_record_per_key_and_window(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    dl = DropLog(metrics=DropMetrics(registry), window=5.0)
    dl.add([event(100.0), event(101.0), event(102.5), event(101.0, peer="10.0.0.1")])
    assert [(r["peer"], r["count"], r["first"], r["last"]) for r in dl.records()] == [
        ("y/b", 3, 100.0, 102.5),
        ("10.0.0.1", 1, 101.0, 101.0),
    ]
    with caplog.at_level(logging.INFO, logger="agent.node.droplog"):
        assert dl.flush(104.9) == []
        closed = dl.flush(105.0)
    assert [r.event.peer for r in closed] == ["y/b"]
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "drop"]
    assert (line.getMessage(), line.pod, line.peer, line.count, line.policies) == (  # type: ignore[attr-defined]
        "drop",
        "x/a",
        "y/b",
        3,
        "x/deny",
    )
    dl.add([event(106.0)])  # a new window for the same key
    assert [(r["peer"], r["count"]) for r in dl.records()] == [
        ("y/b", 3),
        ("10.0.0.1", 1),
        ("y/b", 1),
    ]
    labels = {"namespace": "x", "pod": "a", "direction": "ingress", "action": "drop"}
    assert sample(registry, "netpol_drop_events_total", **labels) == 5


def test_ring_is_bounded_and_keys_are_bounded() -> None:
    registry = CollectorRegistry()
    dl = DropLog(metrics=DropMetrics(registry), window=0.0, ring=3)
    for i in range(10):
        dl.add([event(float(i), peer=f"10.0.0.{i}")])
        dl.flush(float(i))
    assert [r["peer"] for r in dl.records()] == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]


@dataclass
class FakeReader:
    """An NFLOG reader fed by the test; `fail_opens` makes the first opens fail (EBUSY)."""

    batches: list[list[Any]] = field(default_factory=list)
    lost: int = 0
    fail_opens: int = 0
    opens: int = 0
    closes: int = 0

    def open(self) -> FakeReader:
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise DataplaneError("NFLOG group 100: cannot bind: already bound by another socket")
        return self

    def read(self, timeout: float) -> list[Any]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closes += 1


@dataclass(frozen=True)
class Logged:
    prefix: str
    family: int
    payload: bytes
    time: float


def test_watcher_names_counts_lost_and_waits_for_a_state() -> None:
    from tests.core.test_dropevents import STATE

    registry = CollectorRegistry()
    dl = DropLog(metrics=DropMetrics(registry), window=60.0)
    reader = FakeReader()
    watcher = DropWatcher(node="node-0", reader=reader, droplog=dl, clock=lambda: 0.0)
    packet = Logged("npa:DI x/a", 4, v4(6, PORTS, src="10.244.1.20", dst="10.244.0.10"), 1.0)
    reader.batches = [[packet]]
    assert watcher.step(0) == 0  # no state yet: counted as lost, never guessed
    assert sample(registry, "netpol_drop_events_lost_total") == 1
    watcher.update_state(STATE)
    reader.batches = [[packet, packet, Logged("foreign", 4, b"", 1.0)]]
    reader.lost = 4  # the kernel's sequence numbers showed a gap of 4
    assert watcher.step(0) == 2
    assert sample(registry, "netpol_drop_events_lost_total") == 5
    [record] = dl.records()
    assert (record["pod"], record["peer"], record["count"], record["policies"]) == (
        "x/a",
        "y/b",
        2,
        ["x/deny-in"],
    )


def test_watcher_retries_a_busy_group_and_rebinds() -> None:
    reader = FakeReader(fail_opens=2)
    watcher = DropWatcher(
        node="node-0", reader=reader, droplog=DropLog(), clock=lambda: 0.0, retry=0.01
    ).start()
    try:
        wait_for(lambda: watcher.bound.is_set())
        assert reader.opens == 3
    finally:
        watcher.stop()
    assert reader.closes >= 1 and not watcher.bound.is_set()


@pytest.fixture
def agent_with_drops() -> Iterator[tuple[Agent, FakeReader]]:
    src = FakeApiSource(idle_wait=0.05)
    src.put(Kind.NAMESPACES, ns_dict("x"))
    src.put(Kind.NODES, node_dict("node-0"))
    src.put(Kind.PODS, pod_dict("x", "a", labels={"app": "a"}, ip="10.244.0.10"))
    src.put(Kind.NETWORK_POLICIES, policy_dict("x", "deny", selector={"app": "a"}))
    reader = FakeReader()
    agent = Agent(
        settings=Settings(
            node_name="node-0",
            metrics_bind_address="127.0.0.1:0",
            min_sync_interval=0.0,
            drop_event_window=0.0,
        ),
        source=src,
        decode=decode,
        compiler=lambda state: None,
        dataplane=FakeDataplane(),
        drop_reader=reader,
    ).start()
    try:
        yield agent, reader
    finally:
        agent.stop()


def test_drops_endpoint_and_metrics(agent_with_drops: tuple[Agent, FakeReader]) -> None:
    agent, reader = agent_with_drops
    assert agent.http is not None
    port = agent.http.port
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    packet = v4(17, PORTS[:8], src="10.244.7.7", dst="10.244.0.10")
    reader.batches.append([Logged("npa:DI x/a", 4, packet, 1_800_000_000.0)] * 3)
    wait_for(lambda: json.loads(get(port, "/drops")[1])["events"] != [])
    [record] = json.loads(get(port, "/drops")[1])["events"]
    assert record == {
        "node": "node-0",
        "action": "drop",
        "direction": "ingress",
        "pod": "x/a",
        "peer": "10.244.7.7",
        "protocol": "UDP",
        "port": 8080,
        "policies": ["x/deny"],
        "count": 3,
        "first": 1_800_000_000.0,
        "last": 1_800_000_000.0,
    }
    metrics = get(port, "/metrics")[1]
    assert (
        'netpol_drop_events_total{action="drop",direction="ingress",namespace="x",pod="a"} 3.0'
        in metrics
    )
    assert "netpol_drop_events_lost_total 0.0" in metrics


def test_audit_enforcement_marks_every_policy_audited() -> None:
    from agent.core.model import NetworkPolicy

    seen: list[NetworkPolicy] = []
    src = FakeApiSource(idle_wait=0.05)
    src.put(Kind.NAMESPACES, ns_dict("x"))
    src.put(Kind.NODES, node_dict("node-0"))
    src.put(Kind.NETWORK_POLICIES, policy_dict("x", "deny", selector={"app": "a"}))

    def compiler(state: Any) -> None:
        seen.extend(state.policies.values())

    agent = Agent(
        settings=Settings(node_name="node-0", enforcement="audit", min_sync_interval=0.0),
        source=src,
        decode=decode,
        compiler=compiler,
        dataplane=FakeDataplane(),
        serve_http=False,
    ).start()
    try:
        wait_for(lambda: bool(seen))
    finally:
        agent.stop()
    assert [(p.key, p.audit) for p in seen] == [("x/deny", True)]


def test_closed_window_is_one_json_log_line() -> None:
    import io

    from agent.node.logs import setup_logging

    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging(fmt="json", level="info", stream=stream)
    try:
        dl = DropLog(window=1.0)
        dl.add([event(10.0), event(10.5)])
        dl.flush(11.0)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"event"' in x]
    assert line["msg"] == "drop" and line["event"] == "drop"
    assert {k: line[k] for k in ("node", "direction", "pod", "peer", "protocol", "port")} == {
        "node": "node-0",
        "direction": "ingress",
        "pod": "x/a",
        "peer": "y/b",
        "protocol": "TCP",
        "port": 80,
    }
    assert (line["policies"], line["count"], line["first"], line["last"]) == (
        "x/deny",
        2,
        10.0,
        10.5,
    )

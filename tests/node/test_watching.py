"""List-then-watch against the honest fake API source: resume, relist on 410, faults."""

from __future__ import annotations

import logging
import threading

import pytest

from agent.core.model import Pod
from agent.kube.api import ABSENT, ApiRejected, Kind
from agent.kube.decode import decode
from agent.kube.watching import Watcher, list_all, watch_pass
from agent.node.pacing import Backoff
from tests.builders import cnp_dict, cnp_rule
from tests.node.fakes import FakeApiSource, FakeClock, RecordingSink, node_dict, ns_dict, pod_dict


def watcher(source: FakeApiSource, sink: RecordingSink, kind: Kind = Kind.PODS) -> Watcher:
    return Watcher(
        source=source,
        kind=kind,
        sink=sink,
        decode=decode,
        waiter=FakeClock(),
        backoff=Backoff(0.5, 4.0),
        page_size=2,
    )


def test_list_is_paginated_and_decoded() -> None:
    src = FakeApiSource()
    for i in range(5):
        src.put(Kind.PODS, pod_dict("x", f"p{i}", ip=f"10.244.0.{10 + i}"))
    objects, rv = list_all(src, Kind.PODS, decode=decode, page_size=2)
    assert rv == "6" and len(objects) == 5
    assert src.calls.count("list pods") == 3
    pod = objects["uid-x-p0"]
    assert isinstance(pod, Pod) and pod.ips == ("10.244.0.10",)


def test_list_then_watch_then_resume_from_last_seen() -> None:
    src = FakeApiSource()
    src.put(Kind.PODS, pod_dict("x", "a"))
    sink = RecordingSink()
    w = watcher(src, sink)
    stop = threading.Event()
    w.step(stop)
    assert sink.calls[0] == ("replace", Kind.PODS, "uid-x-a", "2")
    assert sink.calls[-1] == ("bookmark", Kind.PODS, "", "2")
    src.put(Kind.PODS, pod_dict("x", "b", ip="10.244.0.11"))
    src.put(Kind.NAMESPACES, ns_dict("x"))  # another kind: not in this stream, but rv moves
    src.remove(Kind.PODS, pod_dict("x", "a"))
    sink.calls.clear()
    w.step(stop)
    assert sink.calls == [
        ("upsert", Kind.PODS, "uid-x-b", "3"),
        ("delete", Kind.PODS, "uid-x-a", "5"),
        ("bookmark", Kind.PODS, "", "5"),
    ]
    assert w.resource_version == "5"


def test_dropped_watch_resumes_without_losing_or_repeating() -> None:
    src = FakeApiSource(bookmarks=False)
    sink = RecordingSink()
    w = watcher(src, sink)
    stop = threading.Event()
    w.step(stop)  # initial (empty) list and an empty watch
    for i in range(6):
        src.put(Kind.PODS, pod_dict("x", f"p{i}", ip=f"10.244.0.{10 + i}"))
    src.drop_after = 3
    sink.calls.clear()
    # run: the watch dies after 3 events, backoff, resume, get the other 3
    w.run(_stop_when(lambda: len(sink.calls) >= 6))
    keys = [c[2] for c in sink.calls if c[0] == "upsert"]
    assert keys == [f"uid-x-p{i}" for i in range(6)]  # each exactly once, in order
    assert not any(c[0] == "replace" for c in sink.calls)  # resumed, not relisted


def test_gone_forces_a_relist() -> None:
    src = FakeApiSource()
    src.put(Kind.PODS, pod_dict("x", "a"))
    sink = RecordingSink()
    w = watcher(src, sink)
    stop = threading.Event()
    w.step(stop)
    src.remove(Kind.PODS, pod_dict("x", "a"))
    src.put(Kind.PODS, pod_dict("x", "b", ip="10.244.0.11"))
    src.compact()
    w.resource_version = "2"  # as if we had been disconnected since rv 2
    sink.calls.clear()
    w.run(_stop_when(lambda: any(c[0] == "replace" for c in sink.calls)))
    assert ("replace", Kind.PODS, "uid-x-b", "4") in sink.calls
    assert set(sink.objects[Kind.PODS]) == {"uid-x-b"}


def test_refused_connections_at_start_back_off_then_list() -> None:
    src = FakeApiSource(refuse=5)
    src.put(Kind.NAMESPACES, ns_dict("x"))
    sink = RecordingSink()
    clock = FakeClock()
    w = watcher(src, sink, Kind.NAMESPACES)
    w.waiter = clock
    w.backoff = Backoff(1.0, 4.0, jitter=0.0)
    w.run(_stop_when(lambda: bool(sink.calls)))
    assert sink.calls[0][0] == "replace"
    assert clock.now - 1000.0 == 1 + 2 + 4 + 4 + 4  # capped exponential backoff


def test_node_watch_sees_every_node() -> None:
    """Every Node: ClusterNetworkPolicy `nodes` peers select other nodes' addresses."""
    src = FakeApiSource(node_name="node-1")
    src.put(Kind.NODES, node_dict("node-0"))
    src.put(Kind.NODES, node_dict("node-1", address="172.18.0.3"))
    objects, _ = list_all(src, Kind.NODES, decode=decode)
    assert list(objects) == ["node-0", "node-1"]


def test_crd_not_installed_then_installed(caplog: pytest.LogCaptureFixture) -> None:
    """ClusterNetworkPolicy without its CRD: listed as empty (the agent syncs without it),
    one clear log line, a new look every 60 s; once installed, its objects arrive."""
    src = FakeApiSource(not_served={Kind.CLUSTER_NETWORK_POLICIES})
    sink = RecordingSink()
    w = watcher(src, sink, Kind.CLUSTER_NETWORK_POLICIES)
    clock = FakeClock()
    w.waiter = clock
    stop = threading.Event()
    with caplog.at_level(logging.WARNING):
        w.step(stop)
        w.step(stop)
    assert sink.calls == [("replace", Kind.CLUSTER_NETWORK_POLICIES, "", ABSENT)] * 2
    assert clock.now - 1000.0 == 120.0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "clusternetworkpolicies: the API does not serve it" in lines[0]
    assert "not installed" in lines[0] and "checking again every 60s" in lines[0]
    src.not_served.clear()
    src.put(
        Kind.CLUSTER_NETWORK_POLICIES,
        cnp_dict("guard", ingress=[cnp_rule("Deny", {"namespaces": {}})]),
    )
    sink.calls.clear()
    w.step(stop)
    assert sink.calls[0] == ("replace", Kind.CLUSTER_NETWORK_POLICIES, "guard", "2")


def test_a_required_kind_is_never_absent() -> None:
    src = FakeApiSource(not_served={Kind.PODS})
    with pytest.raises(ApiRejected):
        watcher(src, RecordingSink()).step(threading.Event())


def test_malformed_object_is_skipped_and_forgotten() -> None:
    src = FakeApiSource()
    sink = RecordingSink()
    bad = pod_dict("x", "a")
    src.put(Kind.PODS, pod_dict("x", "a"))
    bad["status"]["podIP"] = "not-an-ip"
    bad["status"]["podIPs"] = [{"ip": "not-an-ip"}]
    src.put(Kind.PODS, bad)
    rv = watch_pass(src, Kind.PODS, sink, resource_version="1", timeout_seconds=5, decode=decode)
    assert rv == "3"
    assert sink.calls[:2] == [
        ("upsert", Kind.PODS, "uid-x-a", "2"),
        ("delete", Kind.PODS, "uid-x-a", "3"),
    ]


def _stop_when(cond: object) -> threading.Event:
    """An Event whose is_set() turns true once cond() holds (lets run() return)."""

    class _Until(threading.Event):
        def is_set(self) -> bool:
            return bool(cond()) or super().is_set()  # type: ignore[operator]

    return _Until()


def test_watches_closed_at_once_back_off_instead_of_spinning() -> None:
    src = FakeApiSource(bookmarks=False)
    sink = RecordingSink()
    clock = FakeClock()
    w = watcher(src, sink)
    w.waiter = clock
    w.backoff = Backoff(0.5, 4.0, jitter=0.0)
    w.run(_stop_when(lambda: src.calls.count("watch pods") >= 5))
    assert clock.now - 1000.0 == 0.5 + 1 + 2 + 4  # empty passes 1-4 waited, growing

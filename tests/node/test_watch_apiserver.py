"""The watchers against the lab API server, through the official client (real HTTP).

Initial list then watch; a watch dropped mid-stream resumes without losing or
repeating a change; connections refused for 10 s at start; 410 forcing a relist;
a burst of 1,000 pod events coalesced into a few syncs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.model import ClusterState, Pod
from agent.kube.api import Kind
from agent.kube.client import KubeApiSource, load_api_client
from agent.kube.decode import decode
from agent.kube.watching import Watcher
from agent.lab.apiserver import ApiServer
from agent.lab.apiserver.resources import PODS
from agent.node.agent import Agent
from agent.node.pacing import Backoff, SystemClock
from agent.node.settings import Settings
from tests import polling
from tests.builders import cnp_dict, cnp_rule
from tests.node.e2e_kit import store_create
from tests.node.fakes import FakeDataplane, RecordingSink, node_dict, ns_dict, pod_dict, policy_dict


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(bookmark_interval=0.05) as server:
        yield server


@pytest.fixture
def source(api: ApiServer, tmp_path: Path) -> KubeApiSource:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    return KubeApiSource(
        load_api_client(str(kubeconfig)), node_name="node-0", connect_timeout=2.0, read_timeout=5.0
    )


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    polling.wait_for(cond, timeout)


def start(w: Watcher) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=w.run, args=(stop,), daemon=True).start()
    return stop


def watcher(
    source: KubeApiSource, sink: RecordingSink, kind: Kind = Kind.PODS, **kw: Any
) -> Watcher:
    return Watcher(
        source=source,
        kind=kind,
        sink=sink,
        decode=decode,
        waiter=SystemClock(),
        backoff=Backoff(0.05, 0.2),
        timeout_seconds=kw.pop("timeout_seconds", 30),
        **kw,
    )


def upserts(sink: RecordingSink) -> list[str]:
    return [c[2] for c in sink.calls if c[0] == "upsert"]


def test_initial_list_then_watch(api: ApiServer, source: KubeApiSource) -> None:
    store_create(api, ns_dict("x"))
    store_create(api, pod_dict("x", "a", labels={"app": "a"}))
    sink = RecordingSink()
    w = watcher(source, sink, page_size=1)
    stop = start(w)
    try:
        wait_for(lambda: bool(sink.calls))
        assert sink.calls[0][0] == "replace"
        (listed,) = sink.objects[Kind.PODS].values()
        assert isinstance(listed, Pod) and listed.labels == {"app": "a"}
        store_create(api, pod_dict("x", "b"))
        wait_for(
            lambda: any(
                isinstance(p, Pod) and p.name == "b" for p in sink.objects[Kind.PODS].values()
            )
        )
        # bookmarks carry the global counter to an idle watch
        store_create(api, ns_dict("y"))
        wait_for(lambda: w.resource_version == str(api.resource_version))
    finally:
        stop.set()


def test_dropped_watch_resumes_without_losing_or_repeating(
    api: ApiServer, source: KubeApiSource
) -> None:
    store_create(api, ns_dict("x"))
    sink = RecordingSink()
    w = watcher(source, sink)
    stop = start(w)
    try:
        wait_for(lambda: bool(sink.calls))
        dropped = 0
        for i in range(100):
            store_create(api, pod_dict("x", f"p{i}"))
            if i % 25 == 10:
                wait_for(lambda: bool(list(api.store.watchers())))
                dropped += api.faults.drop_watches()  # mid-stream, while events are in flight
        wait_for(lambda: len(upserts(sink)) >= 100)
        time.sleep(0.3)  # anything repeated would show up now
        names = [sink.objects[Kind.PODS][k].name for k in upserts(sink)]  # type: ignore[attr-defined]
        assert sorted(names) == sorted(f"p{i}" for i in range(100))  # each exactly once
        assert [c[0] for c in sink.calls].count("replace") == 1  # resumed, never relisted
        assert dropped >= 3
    finally:
        stop.set()


def test_410_forces_a_relist(api: ApiServer, source: KubeApiSource) -> None:
    store_create(api, ns_dict("x"))
    store_create(api, pod_dict("x", "old"))
    sink = RecordingSink()
    w = watcher(source, sink, timeout_seconds=1)
    stop = threading.Event()
    w.step(stop)  # list + a 1 s watch
    assert [p.name for p in sink.objects[Kind.PODS].values()] == ["old"]  # type: ignore[attr-defined]
    w.resource_version = str(api.resource_version)
    api.store.delete(PODS, "x", "old")
    store_create(api, pod_dict("x", "new"))
    api.faults.compact()
    sink.calls.clear()
    stop2 = start(w)
    try:
        wait_for(lambda: any(c[0] == "replace" for c in sink.calls))
        assert [p.name for p in sink.objects[Kind.PODS].values()] == ["new"]  # type: ignore[attr-defined]
    finally:
        stop2.set()


def test_refused_connections_for_10s_at_start(api: ApiServer, source: KubeApiSource) -> None:
    store_create(api, ns_dict("x"))
    store_create(api, node_dict("node-0"))
    api.faults.refuse_connections(10.0)
    began = time.monotonic()
    agent = _agent(source, watch_backoff=(0.2, 1.0))
    try:
        time.sleep(0.5)
        assert agent.reconciler.ready()[0] is False
        wait_for(lambda: agent.reconciler.ready()[0], timeout=20)
        took = time.monotonic() - began
        assert 10.0 <= took < 14.0, took
        assert len(agent.dataplane.applied) >= 1  # type: ignore[attr-defined]
        restarts = agent.registry.get_sample_value(
            "netpol_watch_restarts_total", {"resource": "pods", "reason": "error"}
        )
        assert restarts and restarts >= 3
    finally:
        agent.stop()


def test_burst_of_1000_pod_events_coalesces_into_a_few_syncs(
    api: ApiServer, source: KubeApiSource
) -> None:
    store_create(api, ns_dict("x"))
    store_create(api, node_dict("node-0"))
    states: list[ClusterState] = []
    agent = _agent(source, compiler=recorder(states))
    try:
        wait_for(lambda: agent.reconciler.ready()[0])
        before = len(states)
        for i in range(1000):
            store_create(api, pod_dict("x", f"p{i}", ip=f"10.244.{i // 200}.{10 + i % 200}"))
        target = api.resource_version
        wait_for(lambda: agent.reconciler.status().synced_resource_version >= target)
        syncs = len(states) - before
        assert len(states[-1].pods) == 1000
        assert 1 <= syncs <= 12, syncs
        count = agent.registry.get_sample_value(
            "netpol_event_to_kernel_seconds_count", {"resource": "pods"}
        )
        assert count is not None and count >= 1000
    finally:
        agent.stop()


def recorder(states: list[ClusterState]) -> Callable[[ClusterState], Any]:
    def compile_(state: ClusterState) -> Any:
        states.append(state)
        return len(states)

    return compile_


def _agent(
    source: KubeApiSource,
    *,
    compiler: Callable[[ClusterState], Any] | None = None,
    watch_backoff: tuple[float, float] = (0.05, 0.5),
) -> Agent:
    settings = Settings(
        node_name="node-0",
        metrics_bind_address="127.0.0.1:0",
        watch_backoff_initial=watch_backoff[0],
        watch_backoff_max=watch_backoff[1],
        min_sync_interval=0.1,
        watch_timeout_seconds=30,
    )
    return Agent(
        settings=settings,
        source=source,
        decode=decode,
        compiler=compiler or (lambda s: len(s.pods)),
        dataplane=FakeDataplane(),
        serve_http=False,
    ).start()


def test_policy_and_node_are_decoded(api: ApiServer, source: KubeApiSource) -> None:
    store_create(api, ns_dict("x"))
    store_create(api, node_dict("node-0", address="172.18.0.2"))
    store_create(api, node_dict("node-1", address="172.18.0.3"))
    store_create(api, policy_dict("x", "deny", selector={"app": "a"}))
    store_create(api, cnp_dict("guard", ingress=[cnp_rule("Deny", {"namespaces": {}})]))
    states: list[ClusterState] = []
    agent = _agent(source, compiler=recorder(states))
    try:
        wait_for(lambda: agent.reconciler.ready()[0])
        state = states[-1]
        # every Node (ClusterNetworkPolicy `nodes` peers), the ClusterNetworkPolicy too
        assert sorted(state.nodes) == ["node-0", "node-1"]
        assert state.nodes["node-0"].addresses == ("172.18.0.2",)
        assert state.cluster_policies["guard"].valid
        assert state.policies["x/deny"].valid
        assert state.namespaces["x"].labels["kubernetes.io/metadata.name"] == "x"
    finally:
        agent.stop()


def test_tls_and_token_from_kubeconfig(tmp_path: Path) -> None:
    with ApiServer(tls_enabled=True, cert_dir=tmp_path / "pki", bookmark_interval=0.05) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        source = KubeApiSource(load_api_client(str(kubeconfig)), node_name="node-0")
        page = source.list_page(Kind.NAMESPACES, limit=10, continue_token=None)
        assert {i["metadata"]["name"] for i in page.items} >= {"default", "kube-system"}
        events = source.watch(
            Kind.NAMESPACES, resource_version=page.resource_version, timeout_seconds=1
        )
        store_create(server, ns_dict("x"))
        first = next(iter(events))
        assert first["type"] in ("ADDED", "BOOKMARK")


def test_rbac_style_rejection_is_not_retried_as_gone(api: ApiServer, source: KubeApiSource) -> None:
    from agent.kube.api import ApiRejected, ApiUnavailable

    api.faults.fail_next(1, code=403, path_contains="pods")
    with pytest.raises(ApiRejected) as rejected:
        source.list_page(Kind.PODS, limit=10, continue_token=None)
    assert rejected.value.status == 403
    api.faults.fail_next(1, code=503, path_contains="pods")
    with pytest.raises(ApiUnavailable):
        source.list_page(Kind.PODS, limit=10, continue_token=None)

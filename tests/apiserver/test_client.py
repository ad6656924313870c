"""The official `kubernetes` client against the lab API server (TLS + token from the kubeconfig):
round trips, watch semantics, 410 Gone, bookmarks, selectors, conflicts and validation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client as _client
from kubernetes import config as _config
from kubernetes import watch as _watch

from agent.lab.apiserver import ApiServer
from tests.apiserver.support import pod, policy
from tests.polling import wait_for

k8s: Any = _client
k8s_watch: Any = _watch
k8s_config: Any = _config
ApiException: Any = k8s.exceptions.ApiException


def core(api_client: Any) -> Any:
    return k8s.CoreV1Api(api_client)


def net(api_client: Any) -> Any:
    return k8s.NetworkingV1Api(api_client)


def test_pod_round_trip(client: Any) -> None:
    v1 = core(client)
    created = v1.create_namespaced_pod("default", pod("a", app="web"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.status.phase == "Pending"
    got = v1.read_namespaced_pod("a", "default")
    assert got.metadata.resource_version == created.metadata.resource_version
    patched = v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"tier": "x"}}})
    assert patched.metadata.labels == {"app": "web", "tier": "x"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    listed = v1.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["a"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    v1.delete_namespaced_pod("a", "default")
    with pytest.raises(ApiException) as info:
        v1.read_namespaced_pod("a", "default")
    assert info.value.status == 404


def test_network_policy_round_trip(client: Any) -> None:
    api = net(client)
    api.create_namespaced_network_policy("default", policy("p", app="web"))
    got = api.read_namespaced_network_policy("p", "default")
    assert got.spec.policy_types == ["Ingress"]
    assert got.spec.ingress[0].ports[0].protocol == "TCP"
    got.spec.pod_selector.match_labels = {"app": "db"}
    replaced = api.replace_namespaced_network_policy("p", "default", got)
    assert replaced.metadata.generation == 2
    assert [p.metadata.name for p in api.list_network_policy_for_all_namespaces().items] == ["p"]
    api.delete_namespaced_network_policy("p", "default")
    assert api.list_namespaced_network_policy("default").items == []


def test_namespace_and_node_are_cluster_scoped(client: Any) -> None:
    v1 = core(client)
    ns = v1.create_namespace({"metadata": {"name": "x", "labels": {"ns": "x"}}})
    assert ns.metadata.labels == {"ns": "x", "kubernetes.io/metadata.name": "x"}
    node = v1.create_node({"metadata": {"name": "node-0"}, "spec": {"podCIDR": "10.244.0.0/24"}})
    assert node.metadata.namespace is None
    status = {"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}
    v1.patch_node_status("node-0", status)
    assert v1.read_node("node-0").status.addresses[0].address == "172.18.0.2"
    names = [n.metadata.name for n in v1.list_namespace().items]
    assert names == ["default", "kube-system", "x"]


def test_create_with_generate_name(client: Any) -> None:
    body = pod("")
    body["metadata"] = {"generateName": "web-"}
    created = core(client).create_namespaced_pod("default", body)
    assert created.metadata.name.startswith("web-") and len(created.metadata.name) == 9


def test_create_twice_is_409_already_exists(client: Any) -> None:
    core(client).create_namespaced_pod("default", pod("a"))
    with pytest.raises(ApiException) as info:
        core(client).create_namespaced_pod("default", pod("a"))
    assert info.value.status == 409 and "AlreadyExists" in info.value.body


def test_create_in_missing_namespace_is_404(client: Any) -> None:
    with pytest.raises(ApiException) as info:
        core(client).create_namespaced_pod("nope", pod("a", namespace="nope"))
    assert info.value.status == 404


def test_stale_update_is_409_conflict(client: Any) -> None:
    v1 = core(client)
    first = v1.create_namespaced_pod("default", pod("a"))
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    first.metadata.labels = {"x": "2"}
    with pytest.raises(ApiException) as info:
        v1.replace_namespaced_pod("a", "default", first)
    assert info.value.status == 409 and "Conflict" in info.value.body


def test_status_subresource_changes_only_status(client: Any) -> None:
    v1 = core(client)
    v1.create_namespaced_pod("default", pod("a", app="web"))
    current = v1.read_namespaced_pod("a", "default")
    current.status.phase = "Running"
    current.status.pod_ip = "10.244.0.10"
    current.metadata.labels = {"ignored": "yes"}
    v1.replace_namespaced_pod_status("a", "default", current)
    got = v1.read_namespaced_pod("a", "default")
    assert (got.status.phase, got.status.pod_ip) == ("Running", "10.244.0.10")
    assert got.metadata.labels == {"app": "web"}
    # and the main resource ignores status changes, as upstream
    v1.patch_namespaced_pod("a", "default", {"status": {"phase": "Failed"}})
    assert v1.read_namespaced_pod("a", "default").status.phase == "Running"


def test_invalid_policy_is_422_with_field_path(client: Any) -> None:
    body = policy("bad")
    body["spec"]["ingress"][0]["from"] = [{"ipBlock": {"cidr": "10.0.0.0/33"}}]
    with pytest.raises(ApiException) as info:
        net(client).create_namespaced_network_policy("default", body)
    assert info.value.status == 422
    assert "spec.ingress[0].from[0].ipBlock.cidr" in info.value.body


def test_invalid_name_is_422(client: Any) -> None:
    with pytest.raises(ApiException) as info:
        core(client).create_namespaced_pod("default", pod("Not_Valid"))
    assert info.value.status == 422 and "metadata.name" in info.value.body


def test_label_and_field_selectors_filter_lists(client: Any) -> None:
    v1 = core(client)
    for name, app, node in (("a", "web", "node-0"), ("b", "db", "node-1"), ("c", "web", "node-1")):
        body = pod(name, app=app)
        body["spec"]["nodeName"] = node
        v1.create_namespaced_pod("default", body)

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in v1.list_pod_for_all_namespaces(**kw).items]

    assert names(label_selector="app=web") == ["a", "c"]
    assert names(label_selector="app!=web") == ["b"]
    assert names(label_selector="app in (db,web),app notin (db)") == ["a", "c"]
    assert names(field_selector="spec.nodeName=node-1") == ["b", "c"]
    assert names(field_selector="spec.nodeName=node-1", label_selector="app=web") == ["c"]
    assert names(field_selector="metadata.name!=a") == ["b", "c"]
    with pytest.raises(ApiException) as info:
        names(field_selector="spec.bogus=1")
    assert info.value.status == 400


def test_limit_and_continue_page_through(client: Any) -> None:
    v1 = core(client)
    for i in range(5):
        v1.create_namespaced_pod("default", pod(f"p{i}"))
    seen: list[str] = []
    token = None
    while True:
        page = v1.list_namespaced_pod("default", limit=2, _continue=token)
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == ["p0", "p1", "p2", "p3", "p4"]


def test_delete_collection(client: Any) -> None:
    v1 = core(client)
    for name, app in (("a", "web"), ("b", "db")):
        v1.create_namespaced_pod("default", pod(name, app=app))
    v1.delete_collection_namespaced_pod("default", label_selector="app=web")
    assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == ["b"]


def test_namespace_delete_cascades(client: Any) -> None:
    v1 = core(client)
    v1.create_namespace({"metadata": {"name": "x"}})
    v1.create_namespaced_pod("x", pod("a", namespace="x"))
    net(client).create_namespaced_network_policy("x", policy("p", namespace="x"))
    v1.delete_namespace("x")
    assert v1.list_pod_for_all_namespaces().items == []
    assert net(client).list_network_policy_for_all_namespaces().items == []


def _collect(
    func: Any, *args: Any, stop_after: int, timeout: float = 5.0, **kwargs: Any
) -> list[dict[str, Any]]:
    """Events (raw dicts) from a watch until `stop_after` arrived or the timeout passed."""
    events: list[dict[str, Any]] = []
    w = k8s_watch.Watch()
    timer = threading.Timer(timeout, w.stop)
    timer.start()
    try:
        for event in w.stream(
            func, *args, deserialize=False, _request_timeout=timeout + 5, **kwargs
        ):
            events.append(event)
            if len(events) >= stop_after:
                break
    finally:
        timer.cancel()
        w.stop()
    return events


def test_watch_streams_added_modified_deleted_in_order(client: Any) -> None:
    v1 = core(client)
    start = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("a"))
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    v1.delete_namespaced_pod("a", "default")
    events = _collect(v1.list_namespaced_pod, "default", stop_after=3, resource_version=start)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_watch_without_version_replays_current_objects(client: Any) -> None:
    v1 = core(client)
    v1.create_namespaced_pod("default", pod("a"))
    v1.create_namespaced_pod("default", pod("b"))
    events = _collect(v1.list_namespaced_pod, "default", stop_after=2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_watch_label_selector_filters_and_translates(client: Any) -> None:
    v1 = core(client)
    start = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("a", app="web"))
    v1.create_namespaced_pod("default", pod("b", app="db"))
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"app": "db"}}})
    v1.patch_namespaced_pod("b", "default", {"metadata": {"labels": {"app": "web"}}})
    events = _collect(
        v1.list_namespaced_pod,
        "default",
        stop_after=3,
        resource_version=start,
        label_selector="app=web",
    )
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    # leaving the selected set is a DELETED, entering it an ADDED, as upstream
    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]


def test_watch_from_compacted_version_is_410(client: Any, tls_api: ApiServer) -> None:
    v1 = core(client)
    old = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("a"))
    tls_api.faults.compact()
    w = k8s_watch.Watch()
    with pytest.raises(ApiException) as info:
        for _ in w.stream(
            v1.list_namespaced_pod, "default", resource_version=old, timeout_seconds=5
        ):
            pass
    assert info.value.status == 410
    # watching from the current version still works
    now = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("b"))
    events = _collect(v1.list_namespaced_pod, "default", stop_after=1, resource_version=now)
    assert events[0]["object"]["metadata"]["name"] == "b"


def test_bookmarks_carry_the_global_version(client: Any, tls_api: ApiServer) -> None:
    v1 = core(client)
    start = v1.list_namespaced_pod("default").metadata.resource_version
    events: list[tuple[float, dict[str, Any]]] = []

    def watch() -> None:
        w = k8s_watch.Watch()
        for e in w.stream(
            v1.list_namespaced_pod,
            "default",
            resource_version=start,
            allow_watch_bookmarks=True,
            timeout_seconds=3,
            deserialize=False,
        ):
            events.append((time.monotonic(), e))
            if e["type"] == "BOOKMARK":
                w.stop()

    thread = threading.Thread(target=watch)
    thread.start()
    wait_for(lambda: len(list(tls_api.store.watchers())) == 1)
    before = time.monotonic()
    v1.create_namespace({"metadata": {"name": "unrelated"}})  # not a pod: no event for this watch
    thread.join(timeout=5)
    marks = [(t, e) for t, e in events if e["type"] == "BOOKMARK"]
    assert marks, events
    arrived, mark = marks[-1]
    assert int(mark["object"]["metadata"]["resourceVersion"]) == tls_api.resource_version
    assert arrived - before < 1.0  # typically 0.05-0.1 s; slack for a loaded CI machine


def test_watch_timeout_seconds_ends_the_stream(client: Any) -> None:
    v1 = core(client)
    started = time.monotonic()
    w = k8s_watch.Watch()
    assert (
        list(w.stream(v1.list_namespaced_pod, "default", timeout_seconds=1, resource_version="1"))
        == []
    )
    assert 0.9 < time.monotonic() - started < 3


def test_wrong_token_is_401(tls_api: ApiServer, tmp_path: Any) -> None:
    config_dict = tls_api.kubeconfig()
    config_dict["users"][0]["user"]["token"] = "wrong"
    api_client = k8s_config.new_client_from_config_dict(config_dict)
    try:
        with pytest.raises(ApiException) as info:
            core(api_client).list_namespace()
        assert info.value.status == 401
    finally:
        api_client.close()

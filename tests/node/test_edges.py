"""Small edges: structured logs, client configuration errors, the store's bookkeeping."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.convert import pod_from_dict
from agent.core.errors import ConfigError
from agent.kube.api import Kind
from agent.kube.client import load_api_client
from agent.node.logs import setup_logging
from agent.node.state import Store, min_resource_version
from tests.node.fakes import pod_dict


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_carry_extra_keys(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", level="info", stream=stream)
    logging.getLogger("agent.test").error(
        "invalid NetworkPolicy %s", "x/bad", extra={"policy": "x/bad", "field": "spec.ingress[0]"}
    )
    logging.getLogger("agent.test").debug("hidden")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and record["msg"] == "invalid NetworkPolicy x/bad"
    assert record["policy"] == "x/bad" and record["field"] == "spec.ingress[0]"


def test_text_logs_are_key_value(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging(fmt="text", level="debug", stream=stream)
    logging.getLogger("agent.test").info("synced", extra={"sync": "full", "note": "two words"})
    line = stream.getvalue().strip()
    assert (
        "INFO" in line and "synced" in line and "sync=full" in line and 'note="two words"' in line
    )


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load kubeconfig"):
        load_api_client(str(tmp_path / "nope"))


def test_in_cluster_config_outside_a_cluster_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="--kubeconfig"):
        load_api_client(None)


def test_store_marks_only_real_changes() -> None:
    changes: list[bool] = []
    store = Store(clock=lambda: 1.0, on_change=changes.append)
    pod = pod_from_dict(pod_dict("x", "a"))
    store.replace(Kind.PODS, {pod.uid: pod}, "5")
    store.upsert(Kind.PODS, pod.uid, pod_from_dict(pod_dict("x", "a")), "6")  # equal value
    store.delete(Kind.PODS, "unknown", "7")
    store.bookmark(Kind.PODS, "8")
    assert changes == [True, False, False, False]
    snap = store.snapshot()
    assert snap.changed_kinds == {Kind.PODS} and len(snap.event_times) == 1
    assert snap.resource_versions[Kind.PODS] == "8"
    assert not store.dirty
    store.restore_dirty(snap)
    assert store.dirty


def test_min_resource_version_needs_every_kind() -> None:
    assert min_resource_version({Kind.PODS: "5"}) == "0"
    assert min_resource_version({k: str(i + 3) for i, k in enumerate(Kind)}) == "3"


def test_drop_totals_survive_rewrites() -> None:
    from agent.node.drops import DropTotals

    t = DropTotals()
    key = ("x/b", "ingress")
    assert t.observe({key: (3, 180)}) == {key: (3, 180)}
    t.rewritten()  # a full apply recreated the counting rules
    assert t.observe({key: (5, 300)}) == {key: (8, 480)}  # even though 5 > 3
    assert t.observe({key: (1, 60)}) == {key: (9, 540)}  # a decrease: an unannounced rewrite
    assert t.observe({}) == {}  # the pod left: its series goes away
    assert t.observe({key: (2, 120)}) == {key: (2, 120)}


def test_a_silent_server_cannot_hang_list_or_watch(tmp_path: Path) -> None:
    """A peer that accepts and then says nothing (a dead connection): timeouts fire."""
    import socket
    import threading
    import time

    from agent.kube.api import ApiUnavailable
    from agent.kube.client import KubeApiSource

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[tuple[socket.socket, object]] = []
    threading.Thread(
        target=lambda: held.extend(listener.accept() for _ in range(2)), daemon=True
    ).start()
    port = listener.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    source = KubeApiSource(
        load_api_client(str(kubeconfig)), node_name="n", connect_timeout=1.0, read_timeout=0.5
    )
    try:
        began = time.monotonic()
        with pytest.raises(ApiUnavailable):
            source.list_page(Kind.PODS, limit=10, continue_token=None)
        with pytest.raises(ApiUnavailable):
            list(source.watch(Kind.PODS, resource_version="1", timeout_seconds=1))
        assert time.monotonic() - began < 8
    finally:
        listener.close()
        for pair in held:
            pair[0].close()

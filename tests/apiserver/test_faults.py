"""Fault hooks: dropped watches, refused connections, compaction (410), delays, injected errors."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from agent.lab.apiserver import ApiServer, Faults
from agent.lab.apiserver.store import Store
from tests.apiserver.support import call, pod
from tests.polling import wait_for


def _stream(port: int, path: str, out: list[dict[str, Any]], done: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        while line := response.readline():
            out.append(json.loads(line))
    finally:
        conn.close()
        done.set()


def _open_watch(api: ApiServer, since: int) -> tuple[list[dict[str, Any]], threading.Event]:
    events: list[dict[str, Any]] = []
    done = threading.Event()
    path = f"/api/v1/pods?watch=true&resourceVersion={since}"
    threading.Thread(target=_stream, args=(api.port, path, events, done), daemon=True).start()
    return events, done


def test_drop_watches_ends_streams_and_resume_loses_nothing(api: ApiServer) -> None:
    since = api.resource_version
    events, done = _open_watch(api, since)
    wait_for(lambda: len(list(api.store.watchers())) == 1)
    call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("a"))
    wait_for(lambda: len(events) == 1)
    assert api.faults.drop_watches() == 1
    assert done.wait(5)
    call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("b"))  # while disconnected
    last = events[-1]["object"]["metadata"]["resourceVersion"]
    resumed, _ = _open_watch(api, int(last))
    wait_for(lambda: len(resumed) == 1)
    assert resumed[0]["object"]["metadata"]["name"] == "b"


def test_refuse_connections(api: ApiServer) -> None:
    api.faults.refuse_connections(60)
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(api.url + "/api/v1/pods", timeout=5)
    api.faults.reset()
    assert call(api.url, "GET", "/api/v1/pods")[0] == 200


def test_refusal_expires_on_its_clock() -> None:
    now = [100.0]
    faults = Faults(Store(), clock=lambda: now[0])
    faults.refuse_connections(5)
    assert faults.refusing()
    now[0] += 5.1
    assert not faults.refusing()


def test_compact_makes_old_versions_410(api: ApiServer) -> None:
    old = api.resource_version
    call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("a"))
    compacted_at = api.faults.compact()
    events, done = _open_watch(api, old)
    assert done.wait(5)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
    fresh, _ = _open_watch(api, compacted_at)
    call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("b"))
    wait_for(lambda: len(fresh) == 1)
    assert fresh[0]["type"] == "ADDED"


def test_history_limit_expires_old_versions() -> None:
    with ApiServer(history_limit=3) as api:
        old = api.resource_version
        for i in range(5):
            call(api.url, "POST", "/api/v1/namespaces/default/pods", pod(f"p{i}"))
        events, done = _open_watch(api, old)
        assert done.wait(5)
        assert events[0]["object"]["code"] == 410


def test_delay_slows_every_request(api: ApiServer) -> None:
    api.faults.delay(0.2)
    started = time.monotonic()
    assert call(api.url, "GET", "/api/v1/pods")[0] == 200
    assert time.monotonic() - started >= 0.2
    api.faults.delay(0)


def test_fail_next_injects_status_errors(api: ApiServer) -> None:
    api.faults.fail_next(2, code=503, method="GET", path_contains="/pods")
    status, body = call(api.url, "GET", "/api/v1/pods")
    assert (status, body["reason"]) == (503, "ServiceUnavailable")
    assert call(api.url, "GET", "/api/v1/namespaces")[0] == 200  # does not match
    assert call(api.url, "GET", "/api/v1/pods")[0] == 503
    assert call(api.url, "GET", "/api/v1/pods")[0] == 200

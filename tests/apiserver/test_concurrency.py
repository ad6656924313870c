"""1,000 pods created by several writers while 5 watchers stream: every watcher sees every
event exactly once, in resourceVersion order."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

from agent.lab.apiserver import ApiServer
from tests.apiserver.support import pod
from tests.polling import wait_for

PODS = 1000
WRITERS = 4
WATCHERS = 5


def _writer(port: int, names: list[str], failures: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for name in names:
            body = json.dumps(pod(name, app="load"))
            conn.request(
                "POST",
                "/api/v1/namespaces/default/pods",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                failures.append(f"{name}: {response.status}")
    finally:
        conn.close()


def _watcher(port: int, since: int, out: list[dict[str, Any]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "GET",
            f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={since}"
            "&allowWatchBookmarks=true",
        )
        response = conn.getresponse()
        adds = 0
        while adds < PODS:
            line = response.readline()
            if not line:
                break
            event = json.loads(line)
            out.append(event)
            adds += event["type"] == "ADDED"
    finally:
        conn.close()


def test_thousand_pods_five_watchers(api: ApiServer) -> None:
    since = api.resource_version
    seen: list[list[dict[str, Any]]] = [[] for _ in range(WATCHERS)]
    watchers = [
        threading.Thread(target=_watcher, args=(api.port, since, seen[i])) for i in range(WATCHERS)
    ]
    for thread in watchers:
        thread.start()
    wait_for(lambda: len(list(api.store.watchers())) == WATCHERS)
    names = [f"pod-{i:04d}" for i in range(PODS)]
    failures: list[str] = []
    writers = [
        threading.Thread(target=_writer, args=(api.port, names[i::WRITERS], failures))
        for i in range(WRITERS)
    ]
    for thread in writers:
        thread.start()
    for thread in writers + watchers:
        thread.join(timeout=60)
    assert failures == []
    assert api.resource_version == since + PODS
    for events in seen:
        added = [e for e in events if e["type"] == "ADDED"]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in added]
        assert versions == list(range(since + 1, since + PODS + 1))  # each once, in order
        assert sorted(e["object"]["metadata"]["name"] for e in added) == names
        assert {e["type"] for e in events} <= {"ADDED", "BOOKMARK"}

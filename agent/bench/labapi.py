"""The lab API server as the benchmarks use it: pre-filled straight through its store.

Filling 10k pods through HTTP would measure the lab server, not the agent, so
objects go in with `ApiServer.store` exactly as a create request would store
them (`objects.prepare_create`: uid, creationTimestamp). Writes during a
benchmark go the same way; each returns the stored object (its uid and
resourceVersion).

    start_api(netns=None) -> ApiServer      listening on 127.0.0.1 (inside `netns` if given)
    create(api, body) -> dict  (= commit(api, prepare(api, body)))   fill(api, bodies)
    update(api, kind, ns, name, change) -> dict ; delete(api, kind, ns, name) -> dict
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agent.lab.apiserver import ApiServer
from agent.lab.apiserver import objects as lab_objects
from agent.lab.apiserver.resources import NAMESPACES, NETWORK_POLICIES, NODES, PODS
from agent.sandbox.setns import inside

Obj = dict[str, Any]
KINDS = {"Pod": PODS, "Namespace": NAMESPACES, "Node": NODES, "NetworkPolicy": NETWORK_POLICIES}


def start_api(netns: str | None = None, **options: Any) -> ApiServer:
    """A started lab API server on 127.0.0.1; its socket lives in `netns` when given."""
    options.setdefault("history_limit", 200_000)
    if netns is None:
        return ApiServer(**options).start()
    with inside(netns):
        api = ApiServer(**options)
    return api.start()


def prepare(api: ApiServer, body: Obj) -> Obj:
    """`body` as a create request would store it (uid, creationTimestamp set)."""
    info = KINDS[body["kind"]]
    ns = body["metadata"].get("namespace") if info.namespaced else None
    return dict(lab_objects.prepare_create(info, body, namespace=ns, now=api.handlers.now()))


def commit(api: ApiServer, prepared: Obj) -> Obj:
    """Store a `prepare`d object (the write watchers see)."""
    return dict(api.store.create(KINDS[prepared["kind"]], prepared))


def create(api: ApiServer, body: Obj) -> Obj:
    return commit(api, prepare(api, body))


def fill(api: ApiServer, bodies: Iterable[Obj]) -> None:
    for body in bodies:
        if body["kind"] == "Namespace" and api.store.find(NAMESPACES, "", body["metadata"]["name"]):
            continue  # default and kube-system exist from the start
        create(api, body)


def update(api: ApiServer, kind: str, ns: str, name: str, change: Callable[[Obj], None]) -> Obj:
    def mutate(obj: Obj) -> Obj:
        change(obj)
        return obj

    return dict(api.store.update(KINDS[kind], ns, name, mutate))


def delete(api: ApiServer, kind: str, ns: str, name: str) -> Obj:
    return dict(api.store.delete(KINDS[kind], ns, name))

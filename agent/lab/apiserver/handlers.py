"""The REST verbs: get, list, watch, create, update, patch, delete, deletecollection.

Transport-free: a `Request` value in, a `Response` (or a `WatchStream` the HTTP layer pumps)
out. Every failure is an ApiError that becomes a Status body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.lab.apiserver import discovery, errors, objects, openapi, patch
from agent.lab.apiserver.messages import (
    Request,
    Response,
    WatchStream,
    decode_continue,
    encode_continue,
    json_response,
    parse_body,
    truthy,
    wants_table,
)
from agent.lab.apiserver.resources import ResourceInfo
from agent.lab.apiserver.routing import Target, parse_path
from agent.lab.apiserver.selectors import (
    Predicate,
    make_predicate,
    parse_field_selector,
    parse_label_selector,
)
from agent.lab.apiserver.store import Obj, Store
from agent.lab.apiserver.tables import table
from agent.lab.apiserver.watch import ERROR, encode_event

log = logging.getLogger(__name__)


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Handlers:
    """Serves one request at a time against a Store (many threads may call it)."""

    def __init__(self, store: Store, *, clock: Callable[[], float], server_address: str) -> None:
        self.store = store
        self.clock = clock
        self.server_address = server_address

    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | WatchStream:
        try:
            target = parse_path(request.path)
            if target is None:
                return self._non_resource(request)
            return self._resource(request, target)
        except errors.ApiError as exc:
            return json_response(exc.code, exc.status())
        except Exception as exc:  # a bug here must still answer with a Status, not hang up
            log.exception("internal error serving %s %s", request.method, request.path)
            failure = errors.internal(f"{type(exc).__name__}: {exc}")
            return json_response(failure.code, failure.status())

    def _non_resource(self, request: Request) -> Response:
        path = "/" + request.path.strip("/")
        if request.method != "GET":
            raise errors.method_not_allowed(f"{request.method} is not supported on {path}")
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain")
        document: Any = None
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            document = openapi.document_for(path)
        elif path == "/version":
            document = discovery.version_info()
        elif path == "/api":
            document = discovery.api_versions(self.server_address)
        elif path == "/apis":
            document = discovery.api_group_list()
        elif path.startswith("/apis/") and path.count("/") == 2:
            document = discovery.api_group(path.split("/")[2])
        elif path.startswith("/api/") and path.count("/") == 2:
            document = discovery.resource_list("", path.split("/")[2])
        elif path.startswith("/apis/") and path.count("/") == 3:
            _, _, group, version = path.split("/")
            document = discovery.resource_list(group, version)
        if document is None:
            raise errors.path_not_found(path)
        return json_response(200, document)

    def _resource(self, request: Request, target: Target) -> Response | WatchStream:
        method, query = request.method, request.query
        watch = target.watch_path or truthy(query.get("watch"))
        if method == "GET":
            if target.name is not None and not watch:
                obj = self.store.get(target.info, target.namespace or "", target.name)
                if wants_table(request.headers):
                    return self._table(request, target.info, [obj], obj_rv(obj))
                return json_response(200, obj)
            if watch:
                return self._watch(request, target)
            return self._list(request, target)
        dry_run = query.get("dryRun") == "All"
        if method == "POST" and target.name is None:
            return self._create(request, target, dry_run=dry_run)
        if method == "PUT" and target.name is not None:
            body = parse_body(request)
            return self._update(target, lambda cur: body, status=200, dry_run=dry_run)
        if method == "PATCH" and target.name is not None:
            return self._patch(request, target, dry_run=dry_run)
        if method == "DELETE" and target.name is not None:
            return self._delete(request, target, dry_run=dry_run)
        if method == "DELETE":
            return self._delete_collection(request, target, dry_run=dry_run)
        raise errors.method_not_allowed(f"{method} is not supported on {request.path}")

    # -- reading -----------------------------------------------------------------------------

    def _predicate(self, request: Request, target: Target) -> Predicate:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(request.query.get("fieldSelector", ""), target.info.plural)
        if target.name is not None:
            fields += parse_field_selector(f"metadata.name={target.name}", target.info.plural)
        return make_predicate(labels, fields)

    def _list(self, request: Request, target: Target) -> Response:
        info = target.info
        items, rv = self.store.list(info, target.namespace, self._predicate(request, target))
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        token = request.query.get("continue")
        if token:
            start = decode_continue(token)
            items = [o for o in items if _key(o) > start]
        limit_text = request.query.get("limit", "")
        if limit_text.isdigit() and int(limit_text) > 0 and len(items) > int(limit_text):
            limit = int(limit_text)
            metadata["continue"] = encode_continue(rv, _key(items[limit - 1]))
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if wants_table(request.headers):
            return self._table(request, info, items, rv, metadata)
        return json_response(
            200,
            {
                "kind": info.list_kind,
                "apiVersion": info.api_version,
                "metadata": metadata,
                "items": items,
            },
        )

    def _table(
        self,
        request: Request,
        info: ResourceInfo,
        items: list[Obj],
        rv: int,
        metadata: dict[str, Any] | None = None,
    ) -> Response:
        include = request.query.get("includeObject", "Metadata")
        body = table(info, items, rv=rv, now=self.clock(), include=include)
        if metadata:
            body["metadata"] = metadata
        return json_response(200, body)

    def _watch(self, request: Request, target: Target) -> Response | WatchStream:
        query = request.query
        rv_text = query.get("resourceVersion", "")
        initial = truthy(query.get("sendInitialEvents"))
        if rv_text in ("", "0") or initial:
            since = None
        elif rv_text.isdigit():
            since = int(rv_text)
        else:
            raise errors.bad_request(f"invalid resourceVersion {rv_text!r}")
        timeout_text = query.get("timeoutSeconds", "")
        timeout = float(timeout_text) if timeout_text.isdigit() else None
        try:
            watcher = self.store.watch(
                target.info,
                target.namespace,
                self._predicate(request, target),
                since=since,
                bookmarks=truthy(query.get("allowWatchBookmarks")),
                initial_end_bookmark=initial,
            )
        except errors.ApiError as exc:
            if exc.code != 410:
                raise
            # The real server reports an expired resourceVersion as an ERROR event.
            return Response(200, encode_event(ERROR, exc.status()))
        render = self._table_events(request, target.info) if wants_table(request.headers) else None
        return WatchStream(watcher=watcher, info=target.info, timeout=timeout, render=render)

    def _table_events(self, request: Request, info: ResourceInfo) -> Callable[[bytes], bytes]:
        """`kubectl get -w` wants each event's object as a one-row Table."""
        include = request.query.get("includeObject", "Metadata")

        def render(data: bytes) -> bytes:
            event = json.loads(data)
            obj = event.get("object") or {}
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                event["object"] = table(
                    info, [obj], rv=obj_rv(obj), now=self.clock(), include=include
                )
            return json.dumps(event, separators=(",", ":")).encode() + b"\n"

        return render

    # -- writing -----------------------------------------------------------------------------

    def _create(self, request: Request, target: Target, *, dry_run: bool) -> Response:
        body = parse_body(request)
        obj = objects.prepare_create(target.info, body, namespace=target.namespace, now=self.now())
        return json_response(201, self.store.create(target.info, obj, dry_run=dry_run))

    def _update(
        self,
        target: Target,
        new_body: Callable[[Obj], Any],
        *,
        status: int,
        dry_run: bool,
    ) -> Response:
        info = target.info

        def mutate(current: Obj) -> Obj:
            return objects.prepare_update(
                info, current, new_body(current), subresource=target.subresource
            )

        assert target.name is not None
        result = self.store.update(
            info, target.namespace or "", target.name, mutate, dry_run=dry_run
        )
        return json_response(status, result)

    def _patch(self, request: Request, target: Target, *, dry_run: bool) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        body = parse_body(request)
        if content_type == patch.MERGE_PATCH:
            apply: Callable[[Obj], Any] = lambda cur: patch.merge_patch(cur, body)  # noqa: E731
        elif content_type == patch.STRATEGIC_PATCH:
            apply = lambda cur: patch.strategic_merge(cur, body)  # noqa: E731
        elif content_type == patch.JSON_PATCH:
            apply = lambda cur: patch.json_patch(cur, body)  # noqa: E731
        else:
            raise errors.unsupported_media_type(content_type)
        return self._update(target, apply, status=200, dry_run=dry_run)

    def _delete(self, request: Request, target: Target, *, dry_run: bool) -> Response:
        options = parse_body(request) if request.body.strip() else {}
        pre = options.get("preconditions") if isinstance(options, dict) else None
        info = target.info

        def check(current: Obj) -> None:
            if not isinstance(pre, dict):
                return
            meta = current.get("metadata") or {}
            for field_name in ("uid", "resourceVersion"):
                if pre.get(field_name) and pre[field_name] != meta.get(field_name):
                    raise errors.conflict(
                        info.plural,
                        str(meta.get("name")),
                        f"Precondition failed: {field_name} in precondition: {pre[field_name]}, "
                        f"{field_name} in object meta: {meta.get(field_name)}",
                        group=info.group,
                    )

        assert target.name is not None
        deleted = self.store.delete(
            info, target.namespace or "", target.name, precondition=check, dry_run=dry_run
        )
        return json_response(200, deleted)

    def _delete_collection(self, request: Request, target: Target, *, dry_run: bool) -> Response:
        info = target.info
        items, _ = self.store.list(info, target.namespace, self._predicate(request, target))
        deleted = []
        for obj in items:
            meta = obj.get("metadata") or {}
            try:
                deleted.append(
                    self.store.delete(
                        info, meta.get("namespace", ""), meta["name"], dry_run=dry_run
                    )
                )
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
        return json_response(
            200,
            {
                "kind": info.list_kind,
                "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            },
        )


def obj_rv(obj: Obj) -> int:
    text = (obj.get("metadata") or {}).get("resourceVersion", "0")
    return int(text) if str(text).isdigit() else 0

"""The real ApiSource: the official Kubernetes client, raw JSON, bounded timeouts.

Configuration is in-cluster (the pod's service account) unless a kubeconfig
path is given. Every request carries a client-side `_request_timeout`
(connect, read) and every watch a server-side `timeoutSeconds`, so a dead
connection (no FIN, no RST) is noticed within `timeout_seconds + read_grace`
instead of hanging forever. Responses are read with `_preload_content=False`
and parsed as plain JSON: the client's model classes would cost seconds of CPU
and hundreds of megabytes at 10,000 pods. Library exceptions become our
KubeError family here, at the boundary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch import watch as _watch_module

from agent.core.errors import ConfigError
from agent.kube.api import ApiRejected, ApiUnavailable, Gone, JsonDict, Kind, ListPage

_k8s: Any = kubernetes  # the client is only partly typed
_iter_resp_lines: Any = _watch_module.iter_resp_lines

RETRYABLE_STATUS = frozenset({0, 408, 429, 500, 502, 503, 504})
CNP_GROUP, CNP_VERSION = "policy.networking.k8s.io", "v1alpha2"  # ClusterNetworkPolicy CRD


def load_api_client(kubeconfig: str | None) -> Any:
    """An ApiClient for `kubeconfig`, or the in-cluster service account when None."""
    configuration = _k8s.client.Configuration()
    try:
        if kubeconfig:
            _k8s.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            _k8s.config.load_incluster_config(client_configuration=configuration)
    except (_k8s.config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration"
        hint = "" if kubeconfig else " (not running in a pod? pass --kubeconfig)"
        raise ConfigError(f"cannot load {where}: {exc}{hint}") from exc
    configuration.retries = 0  # no hidden retries: our loops retry, with backoff and metrics
    return _k8s.client.ApiClient(configuration)


def _translate(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        body = exc.body if isinstance(exc.body, str) else ""
        message = _status_message(body) or str(exc.reason or "")
        if status == 410:
            return Gone(f"{what}: {message}")
        if status in RETRYABLE_STATUS:
            return ApiUnavailable(f"{what}: HTTP {status}: {message}")
        return ApiRejected(status, f"{what}: {message}")
    return ApiUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def _status_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    return str(data.get("message", "")) if isinstance(data, dict) else ""


_LIBRARY_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class KubeApiSource:
    """ApiSource over the official client."""

    def __init__(
        self,
        api_client: Any,
        *,
        node_name: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self._core = _k8s.client.CoreV1Api(api_client)
        self._net = _k8s.client.NetworkingV1Api(api_client)
        self._custom = _k8s.client.CustomObjectsApi(api_client)
        self._node_name = node_name
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def _call(self, kind: Kind) -> tuple[Callable[..., Any], dict[str, Any]]:
        if kind is Kind.PODS:
            return self._core.list_pod_for_all_namespaces, {}
        if kind is Kind.NAMESPACES:
            return self._core.list_namespace, {}
        if kind is Kind.NETWORK_POLICIES:
            return self._net.list_network_policy_for_all_namespaces, {}
        if kind is Kind.CLUSTER_NETWORK_POLICIES:
            crd = {"group": CNP_GROUP, "version": CNP_VERSION, "plural": kind.value}
            return self._custom.list_cluster_custom_object, crd
        # Every Node, not only ours: ClusterNetworkPolicy `nodes` peers select other nodes'
        # addresses. Status heartbeats decode to equal values, so they cost no sync.
        return self._core.list_node, {}

    def list_page(self, kind: Kind, *, limit: int, continue_token: str | None) -> ListPage:
        func, extra = self._call(kind)
        what = f"list {kind.value}"
        try:
            resp = func(
                limit=limit,
                _continue=continue_token,
                _preload_content=False,
                _request_timeout=(self._connect_timeout, self._read_timeout),
                **extra,
            )
            try:
                data = json.loads(resp.data)
            finally:
                resp.release_conn()
        except _LIBRARY_ERRORS as exc:
            raise _translate(exc, what) from exc
        meta = data.get("metadata") or {}
        return ListPage(
            items=tuple(data.get("items") or ()),
            resource_version=str(meta.get("resourceVersion") or ""),
            continue_token=meta.get("continue") or None,
        )

    def watch(
        self, kind: Kind, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[JsonDict]:
        func, extra = self._call(kind)
        what = f"watch {kind.value}"
        try:
            resp = func(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(self._connect_timeout, timeout_seconds + self._read_timeout),
                **extra,
            )
        except _LIBRARY_ERRORS as exc:
            raise _translate(exc, what) from exc
        try:
            for line in _iter_resp_lines(resp):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise ApiUnavailable(f"{what}: undecodable event {line[:100]!r}") from exc
                if isinstance(event, dict):
                    yield event
        except _LIBRARY_ERRORS as exc:
            raise _translate(exc, what) from exc
        finally:
            resp.close()
            resp.release_conn()

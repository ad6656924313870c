"""A tiny JSON-over-HTTP client for the lab's own API server (standard library only).

The lab owns both ends, so its kubelets, its probe and `lab up -f` talk to the
API server with plain `http.client` instead of the official client (which only
agent.kube may import). It speaks the subset they need: get, list (with the
list's resourceVersion), create, merge-patch, delete, and watch as a stream of
event dicts.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.core.errors import KubeError

JSON = dict[str, Any]


class ApiStatusError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


class ApiClient:
    """Plain HTTP(S) to one API server; thread-safe (a connection per request)."""

    def __init__(
        self,
        url: str,
        *,
        ca_pem: bytes | None = None,
        token: str | None = None,
        client_cert: tuple[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KubeError(f"API server URL {url!r}: expected http(s)://HOST:PORT")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.token = token
        self.timeout = timeout
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._context = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
            if client_cert is not None:  # the real control plane's users are certificates
                self._context.load_cert_chain(*client_cert)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 10.0) -> ApiClient:
        return cls(url, timeout=timeout)

    @classmethod
    def from_kubeconfig(cls, path: Path, *, timeout: float = 10.0) -> ApiClient:
        """The current context's server, CA and token (the lab writes JSON kubeconfigs)."""
        try:
            config = json.loads(path.read_text())
            context_name = config["current-context"]
            context = next(c for c in config["contexts"] if c["name"] == context_name)["context"]
            cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
            users = [u for u in config.get("users") or [] if u["name"] == context.get("user")]
            user: dict[str, Any] = users[0].get("user") or {} if users else {}
            server = cluster["cluster"]["server"]
            ca_data = cluster["cluster"].get("certificate-authority-data")
        except (OSError, ValueError, KeyError, StopIteration, TypeError) as exc:
            raise KubeError(f"kubeconfig {path}: cannot read the lab's cluster: {exc!r}") from exc
        ca = base64.b64decode(ca_data) if ca_data else None
        cert, key = user.get("client-certificate"), user.get("client-key")
        client_cert = (str(cert), str(key)) if cert and key else None
        return cls(
            server, ca_pem=ca, token=user.get("token"), client_cert=client_cert, timeout=timeout
        )

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=timeout, context=self._context
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> JSON:
        data = self.text(method, path, body, content_type=content_type)
        result: JSON = json.loads(data) if data else {}
        return result

    def text(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> str:
        """The response body as text (e.g. /readyz's "ok"); ApiStatusError on >= 400."""
        conn = self._connect(self.timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = self._headers()
            if payload is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read().decode()
        except OSError as exc:
            raise KubeError(f"{method} {self.url}{path}: {exc}") from exc
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiStatusError(method, path, resp.status, data)
        return data

    def get(self, path: str) -> JSON:
        return self.request("GET", path)

    def list(self, path: str) -> tuple[list[JSON], str]:
        """Items and the list's resourceVersion."""
        out = self.get(path)
        return list(out.get("items") or []), str(out.get("metadata", {}).get("resourceVersion", ""))

    def create(self, path: str, obj: Mapping[str, Any]) -> JSON:
        return self.request("POST", path, obj)

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str) -> JSON:
        return self.request("DELETE", path)

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300
    ) -> Iterator[JSON]:
        """Events ({"type", "object"}) from `path` after `resource_version`, until the server
        ends the watch. Raises KubeError when the connection breaks."""
        query = urllib.parse.urlencode(
            {
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(timeout_seconds),
            }
        )
        conn = self._connect(timeout_seconds + 30)
        try:
            conn.request("GET", f"{path}?{query}", headers=self._headers())
            resp = conn.getresponse()
            if resp.status >= 400:
                raise ApiStatusError("WATCH", path, resp.status, resp.read().decode())
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    event: JSON = json.loads(line)
                    yield event
        except OSError as exc:
            raise KubeError(f"WATCH {self.url}{path}: {exc}") from exc
        finally:
            conn.close()


# Kinds only the real control plane serves (`lab up --control-plane real`): kind ->
# (API prefix, resource, namespaced).
_MORE_KINDS = {
    "Service": ("/api/v1", "services", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
}


def resource_path(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(collection path, object name) of a namespace, pod, networkpolicy, node or
    clusternetworkpolicy dict."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace") or "default")
    if isinstance(kind, str) and kind in _MORE_KINDS:
        prefix, resource, namespaced = _MORE_KINDS[kind]
        scope = f"/namespaces/{namespace}" if namespaced else ""
        return f"{prefix}{scope}/{resource}", name
    if kind == "Namespace":
        return "/api/v1/namespaces", name
    if kind == "Node":
        return "/api/v1/nodes", name
    if kind == "Pod":
        return f"/api/v1/namespaces/{namespace}/pods", name
    if kind == "NetworkPolicy":
        return f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies", name
    if kind == "ClusterNetworkPolicy":
        return "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies", name
    raise KubeError(f"{kind or 'object'} {name!r}: the lab API server does not serve kind {kind!r}")

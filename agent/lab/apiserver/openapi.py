"""Just enough OpenAPI v3 for kubectl: per-kind PATCH operations that declare `fieldValidation`.

`kubectl apply` (and create/replace with the default `--validate=strict`) first asks whether the
server validates fields itself, by looking for that query parameter in /openapi/v3; if it can't
tell, it insists on downloading full schemas. These documents answer "yes" and carry no type
schemas, so kubectl computes strategic merge patches from its compiled-in types. /openapi/v2
stays 404 (kubectl never needs it once v3 answers).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent.lab.apiserver.discovery import KUBE_VERSION
from agent.lab.apiserver.resources import RESOURCES, ResourceInfo

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _gv_path(info: ResourceInfo) -> str:
    return f"api/{info.version}" if not info.group else f"apis/{info.group}/{info.version}"


def _item_path(info: ResourceInfo) -> str:
    base = "/" + _gv_path(info)
    if info.namespaced:
        return f"{base}/namespaces/{{namespace}}/{info.plural}/{{name}}"
    return f"{base}/{info.plural}/{{name}}"


def _operation(info: ResourceInfo, action: str) -> dict[str, Any]:
    return {
        "operationId": f"{action}{info.kind}",
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _QUERY_PARAMS
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": info.group,
            "version": info.version,
            "kind": info.kind,
        },
    }


def group_version_document(gv_path: str) -> dict[str, Any] | None:
    infos = [r for r in RESOURCES if _gv_path(r) == gv_path]
    if not infos:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (netpol-agent lab)", "version": KUBE_VERSION},
        "paths": {_item_path(info): {"patch": _operation(info, "patch")} for info in infos},
        "components": {"schemas": {}},
    }


def _hash(document: dict[str, Any]) -> str:
    data = json.dumps(document, sort_keys=True).encode()
    return hashlib.sha512(data).hexdigest()[:64].upper()


def root_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for gv_path in sorted({_gv_path(r) for r in RESOURCES}):
        document = group_version_document(gv_path)
        assert document is not None
        paths[gv_path] = {"serverRelativeURL": f"/openapi/v3/{gv_path}?hash={_hash(document)}"}
    return {"paths": paths}


def document_for(path: str) -> dict[str, Any] | None:
    """The document served at `path` (under /openapi/v3), or None."""
    rest = path.strip("/").removeprefix("openapi/v3").strip("/")
    if not rest:
        return root_document()
    return group_version_document(rest)

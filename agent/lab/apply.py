"""`lab up -f`: create-or-replace manifests (files or directories) in the lab's API server.

A small `kubectl apply` for the four kinds the lab serves, so that `lab up`
needs no kubectl: directories are read in file-name order (as kubectl does),
`.yaml`, `.yml` and `.json` files only, multi-document, `List` kinds
flattened; namespaces go first so that the objects in them can be created.
An object that exists is replaced (PUT with its current resourceVersion).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from agent.core.errors import ManifestError
from agent.lab.client import JSON, ApiClient, ApiStatusError, resource_path

SUFFIXES = (".yaml", ".yml", ".json")
_ORDER = {"Namespace": 0, "Node": 1}
BUILTIN_KINDS = frozenset({"Namespace", "Node", "Pod", "NetworkPolicy"})


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise ManifestError(f"{path}: no such file or directory")
    return out


def load_objects(paths: Iterable[Path]) -> list[JSON]:
    """Every object in the files, namespaces first, otherwise in file order."""
    objects: list[JSON] = []
    for file in manifest_files(paths):
        try:
            docs = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ManifestError(f"{file}: {exc}") from exc
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise ManifestError(f"{file}: document {index + 1} is not a Kubernetes object")
            items = doc.get("items") if doc["kind"].endswith("List") else [doc]
            objects += [dict(item) for item in items or []]
    return sorted(objects, key=lambda o: _ORDER.get(str(o.get("kind")), 2))


def apply_objects(client: ApiClient, objects: Sequence[JSON]) -> list[str]:
    """Create or replace each object; returns kubectl-like lines ("pod/x created")."""
    lines = []
    for obj in objects:
        collection, name = resource_path(obj)
        label = f"{str(obj.get('kind')).lower()}/{name}"
        body: dict[str, Any] = {**obj, "metadata": dict(obj.get("metadata") or {})}
        try:
            _create(client, collection, body)
            lines.append(f"{label} created")
        except ApiStatusError as exc:
            if (
                exc.status == 404
                and obj.get("kind") not in BUILTIN_KINDS
                and 'namespaces "' not in str(exc)
            ):
                raise ManifestError(
                    f"{label}: the API server does not serve {obj.get('kind')} "
                    "(the builtin one serves namespaces, pods, nodes and NetworkPolicies; "
                    "`lab up --control-plane real` serves every built-in kind)"
                ) from exc
            if exc.status != 409:
                raise
            current = client.get(f"{collection}/{name}")
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            client.request("PUT", f"{collection}/{name}", body)
            lines.append(f"{label} configured")
    return lines


def _create(client: ApiClient, collection: str, body: JSON, *, wait: float = 20.0) -> None:
    """POST; a real API server refuses pods in a namespace whose `default` ServiceAccount
    the controller manager has not created yet (a known race): wait for it, as users do."""
    deadline = time.monotonic() + wait
    while True:
        try:
            client.create(collection, body)
            return
        except ApiStatusError as exc:
            if exc.status != 403 or "serviceaccount" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def delete_objects(client: ApiClient, objects: Sequence[JSON]) -> None:
    """Delete the objects (reverse order; missing ones and `default` are skipped)."""
    for obj in reversed(objects):
        collection, name = resource_path(obj)
        if obj.get("kind") == "Namespace" and name in ("default", "kube-system"):
            continue
        try:
            client.delete(f"{collection}/{name}")
        except ApiStatusError as exc:
            if exc.status != 404:
                raise

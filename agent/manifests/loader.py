"""Read Kubernetes manifests from files and directories into object dicts and a ClusterState.

Accepts what users keep in git: YAML (multi-document) and JSON, single objects
and `kind: List` (or `PodList` and friends, as `kubectl get -o yaml` writes).
Kinds the engine does not need (Deployments, Services, ...) are skipped with a
note, never an error. Every error names the file (and the document or the
object): `pods.yaml: document 3: Pod x/a: status.podIP: ...`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from agent.core import convert
from agent.core.errors import InputError, ManifestError
from agent.core.model import ClusterState, Namespace, NetworkPolicy, Node, Pod
from agent.core.policyapi.cnpconvert import cluster_policy_from_dict
from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy
from agent.core.validate import object_key

KINDS = frozenset({"Namespace", "Pod", "NetworkPolicy", "Node", "ClusterNetworkPolicy"})
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Loaded:
    """Objects of the wanted kinds (dicts), where each came from, and notes for the user."""

    objects: tuple[Mapping[str, Any], ...]
    origins: tuple[str, ...]
    notes: tuple[str, ...]


def manifest_files(path: str) -> list[str]:
    """The files under `path`: itself if a file, else *.yaml/*.yml/*.json below it, sorted."""
    if path == "-" or os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ManifestError(f"{path}: no such file or directory")
    found: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(SUFFIXES))
    return found


def _documents(path: str) -> Iterator[tuple[int, Any]]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from exc
    if path.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            yield 1, json.loads(text)
            return
        except json.JSONDecodeError as exc:
            if path.endswith(".json"):
                raise ManifestError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    try:
        yield from enumerate(yaml.safe_load_all(text), 1)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{where}: invalid YAML: {problem}") from exc


def _describe(obj: Mapping[str, Any]) -> str:
    kind = obj.get("kind")
    meta = obj.get("metadata")
    namespaced = isinstance(meta, Mapping) and meta.get("namespace")
    name = object_key(obj) if namespaced else (meta or {}).get("name", "<unnamed>")
    return f"{kind} {name}"


def _flatten(obj: Any, where: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    if not isinstance(obj, Mapping):
        raise ManifestError(f"{where}: not a Kubernetes object (expected a mapping)")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f"{where}: the object has no `kind`")
    if kind.endswith("List") and "items" in obj:
        items = obj.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{where}: {kind}.items must be a list")
        for i, item in enumerate(items):
            yield from _flatten(item, f"{where}: items[{i}]")
        return
    yield obj, where


def load(paths: Sequence[str], *, kinds: frozenset[str] = KINDS) -> Loaded:
    """Every object of `kinds` in `paths`; other kinds become notes."""
    objects: list[Mapping[str, Any]] = []
    origins: list[str] = []
    notes: list[str] = []
    for path in paths:
        files = manifest_files(path)
        if not files:
            notes.append(f"{path}: no .yaml, .yml or .json files found")
        for file in files:
            for index, doc in _documents(file):
                if doc is None:
                    continue
                for obj, where in _flatten(doc, f"{file}: document {index}"):
                    if obj["kind"] in kinds:
                        objects.append(obj)
                        origins.append(where)
                    else:
                        notes.append(f"{where}: skipped {_describe(obj)} (not needed)")
    return Loaded(tuple(objects), tuple(origins), tuple(notes))


def build_state(loaded: Loaded) -> ClusterState:
    """Convert loaded objects; errors name the file, document and object.

    Invalid NetworkPolicies and ClusterNetworkPolicies do not raise: they carry
    their errors (fail closed).
    """
    namespaces: dict[str, Namespace] = {}
    pods: dict[str, Pod] = {}
    policies: dict[str, NetworkPolicy] = {}
    nodes: dict[str, Node] = {}
    cluster: dict[str, ClusterNetworkPolicy] = {}
    seen: dict[str, str] = {}
    for obj, where in zip(loaded.objects, loaded.origins, strict=True):
        kind = obj["kind"]
        try:
            value = _convert(kind, obj)
        except InputError as exc:
            raise ManifestError(f"{where}: {kind} {exc}") from exc
        key = f"{kind} {getattr(value, 'key', getattr(value, 'name', ''))}"
        if key in seen:
            raise ManifestError(f"{where}: {key} is already defined in {seen[key]}")
        seen[key] = where
        if isinstance(value, Namespace):
            namespaces[value.name] = value
        elif isinstance(value, Pod):
            pods[value.uid] = value
        elif isinstance(value, NetworkPolicy):
            policies[value.key] = value
        elif isinstance(value, Node):
            nodes[value.name] = value
        elif isinstance(value, ClusterNetworkPolicy):
            cluster[value.key] = value
    return ClusterState(
        namespaces=namespaces,
        pods=pods,
        policies=policies,
        nodes=nodes,
        cluster_policies=cluster,
    )


def _convert(
    kind: str, obj: Mapping[str, Any]
) -> Namespace | Pod | NetworkPolicy | Node | ClusterNetworkPolicy:
    if kind == "Namespace":
        return convert.namespace_from_dict(obj)
    if kind == "Pod":
        return convert.pod_from_dict(obj)
    if kind == "NetworkPolicy":
        return convert.policy_from_dict(obj)
    if kind == "Node":
        return convert.node_from_dict(obj)
    if kind == "ClusterNetworkPolicy":
        return cluster_policy_from_dict(obj)
    raise InputError(f"unsupported kind {kind}")


def policy_origins(loaded: Loaded) -> dict[str, str]:
    """ "ns/name" of each NetworkPolicy -> where it was defined (for error messages)."""
    return {
        object_key(obj): where
        for obj, where in zip(loaded.objects, loaded.origins, strict=True)
        if obj.get("kind") == "NetworkPolicy"
    }


def cluster_policy_origins(loaded: Loaded) -> dict[str, str]:
    """The name of each ClusterNetworkPolicy -> where it was defined (for error messages)."""
    return {
        str((obj.get("metadata") or {}).get("name") or "<unnamed>"): where
        for obj, where in zip(loaded.objects, loaded.origins, strict=True)
        if obj.get("kind") == "ClusterNetworkPolicy"
    }

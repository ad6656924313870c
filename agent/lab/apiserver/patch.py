"""The three PATCH formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the
strategic merge patch kubectl sends (keyed list merges, `$patch`, `$retainKeys`,
`$setElementOrder/...`, `$deleteFromPrimitiveList/...`).

The strategic merge keys are a fixed table for the fields of our four kinds (upstream reads
them from Go struct tags); lists not in the table are replaced, as upstream does for lists
without a patch strategy.
"""

from __future__ import annotations

import copy
from typing import Any

from agent.lab.apiserver.errors import ApiError

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_CONTAINER_KEYS = {
    ("ports",): "containerPort",
    ("env",): "name",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
    ("resizePolicy",): "resourceName",
}
MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("metadata", "ownerReferences"): "uid",
    ("spec", "volumes"): "name",
    ("spec", "imagePullSecrets"): "name",
    ("spec", "hostAliases"): "ip",
    ("spec", "resourceClaims"): "name",
    ("spec", "schedulingGates"): "name",
    ("spec", "taints"): "key",
    ("status", "conditions"): "type",
    ("status", "podIPs"): "ip",
    ("status", "hostIPs"): "ip",
    ("status", "addresses"): "type",
}
for _containers in ("containers", "initContainers", "ephemeralContainers"):
    MERGE_KEYS[("spec", _containers)] = "name"
    for _sub, _key in _CONTAINER_KEYS.items():
        MERGE_KEYS[("spec", _containers, *_sub)] = _key

MERGED_PRIMITIVE_LISTS: frozenset[tuple[str, ...]] = frozenset(
    {("metadata", "finalizers"), ("spec", "podCIDRs")}
)

_DIRECTIVES = ("$patch", "$retainKeys")


def patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


# -- JSON merge patch -------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch -------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise patch_error(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit():
        raise patch_error(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) + (1 if for_add else 0)
    if index >= limit:
        raise patch_error(f"array index {index} out of bounds")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise patch_error(f"path /{'/'.join(tokens)} does not exist")
    return current


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise patch_error(f"path /{'/'.join(tokens)} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise patch_error(f"path /{'/'.join(tokens)} does not exist")


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise patch_error(f"unable to remove nonexistent key {last!r}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_add=False))
    raise patch_error(f"path /{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise patch_error(f"path /{'/'.join(tokens)} does not exist")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise patch_error(f"invalid JSON patch operation {op!r}")
        kind, tokens = op["op"], _pointer(str(op["path"]))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise patch_error(f"JSON patch {kind} operation needs a value")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, tokens)
        elif kind == "replace":
            _get(doc, tokens)
            if tokens:
                _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = _pointer(str(op.get("from", "")))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _get(doc, tokens) != op["value"]:
                raise patch_error(f"testing value {op['path']} failed")
        else:
            raise patch_error(f"unknown JSON patch operation {kind!r}")
    return doc


# -- strategic merge patch --------------------------------------------------------------------


def _strip(value: Any) -> Any:
    """A value from a patch with any directives removed (it replaces what was there)."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in _DIRECTIVES and not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    ranked = {json_key: i for i, json_key in enumerate(map(repr, wanted))}
    first = sorted(
        (i for i in items if repr(ident(i)) in ranked), key=lambda i: ranked[repr(ident(i))]
    )
    return first + [i for i in items if repr(ident(i)) not in ranked]


def _merge_keyed(
    original: list[Any], patch: list[Any], key: str, path: tuple[str, ...]
) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    items = copy.deepcopy(original)
    for entry in patch:
        if not isinstance(entry, dict):
            items.append(entry)
            continue
        ident = entry.get(key)
        match = next(
            (
                i
                for i, item in enumerate(items)
                if isinstance(item, dict) and item.get(key) == ident
            ),
            None,
        )
        if entry.get("$patch") == "delete":
            items = [i for i in items if not (isinstance(i, dict) and i.get(key) == ident)]
        elif match is None:
            items.append(_strip(entry))
        else:
            items[match] = strategic_merge(items[match], entry, path)
    return items


def strategic_merge(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch (a JSON object) to `original`."""
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object")
    if patch.get("$patch") == "replace":
        return _strip(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for name, value in patch.items():
        if name in _DIRECTIVES:
            continue
        if name.startswith("$setElementOrder/"):
            if isinstance(value, list):
                orders[name.split("/", 1)[1]] = value
            continue
        if name.startswith("$deleteFromPrimitiveList/"):
            field = name.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        here = (*path, name)
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(name, None)
        elif isinstance(value, dict):
            result[name] = strategic_merge(result.get(name), value, here)
        elif isinstance(value, list):
            key = MERGE_KEYS.get(here)
            old = result.get(name)
            existing: list[Any] = old if isinstance(old, list) else []
            if key is not None:
                result[name] = _merge_keyed(existing, value, key, here)
            elif here in MERGED_PRIMITIVE_LISTS:
                result[name] = existing + [v for v in value if v not in existing]
            else:
                result[name] = _strip(value)
        else:
            result[name] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _order(result[name], order, MERGE_KEYS.get((*path, name)))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result

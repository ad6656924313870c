"""What the server does to an object before storing it: metadata, defaults and validation.

Defaults follow the upstream ones the agent depends on (a namespace's
`kubernetes.io/metadata.name` label, a NetworkPolicy's `policyTypes` and port protocol, a
container port's protocol); validation covers names, labels and, through
agent.core.validate, NetworkPolicy specs with the same rules as the engine.
"""

from __future__ import annotations

import importlib
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from agent.core.errors import FieldError
from agent.core.policyapi.cnpvalidate import validate_cluster_policy
from agent.lab.apiserver import errors
from agent.lab.apiserver.resources import (
    CLUSTER_NETWORK_POLICIES,
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    ResourceInfo,
)

Obj = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_STATUS_KINDS = frozenset({"pods", "nodes", "namespaces", "clusternetworkpolicies"})


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _check_kind(info: ResourceInfo, body: Any) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind not in (None, "", info.kind) or api_version not in (None, "", info.api_version):
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({info.api_version}) or kind ({kind} is not {info.kind})"
        )
    meta = body.get("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be a JSON object")
    return {**body, "kind": info.kind, "apiVersion": info.api_version, "metadata": dict(meta)}


def _validate_meta(info: ResourceInfo, obj: Obj) -> list[FieldError]:
    meta = _meta(obj)
    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
    problems: list[FieldError] = []
    name = meta.get("name", "")
    pattern, limit = (_LABEL_NAME, 63) if info is NAMESPACES else (_SUBDOMAIN, 253)
    if not isinstance(name, str) or not pattern.match(name) or len(name) > limit:
        problems.append(
            FieldError(
                where,
                "metadata.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 "
                f"{'label' if info is NAMESPACES else 'subdomain'} must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            problems.append(FieldError(where, f"metadata.{field}", "must map strings to strings"))
            continue
        if field == "labels":
            for key, val in value.items():
                prefix, _, short = key.rpartition("/")
                if (
                    not short
                    or len(short) > 63
                    or not _QUALIFIED.match(short)
                    or (prefix and not _SUBDOMAIN.match(prefix))
                ):
                    problems.append(
                        FieldError(
                            where, "metadata.labels", f"Invalid value: {key!r}: invalid label key"
                        )
                    )
                if len(val) > 63 or not _LABEL_VALUE.match(val):
                    problems.append(
                        FieldError(
                            where,
                            "metadata.labels",
                            f"Invalid value: {val!r}: invalid label value",
                        )
                    )
    return problems


def _policy_validator() -> Callable[[Obj], tuple[FieldError, ...]] | None:
    """agent.core.validate.validate_policy, or None while it does not exist yet."""
    try:
        module = importlib.import_module("agent.core.validate")
    except (ImportError, SyntaxError):
        return None
    validator = getattr(module, "validate_policy", None)
    return validator if callable(validator) else None


def _validate_pod(obj: Obj, where: str) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError(where, "spec", "Required value")]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [FieldError(where, "spec.containers", "Required value")]
    problems = []
    for i, container in enumerate(containers):
        if not isinstance(container, dict) or not container.get("name"):
            problems.append(FieldError(where, f"spec.containers[{i}].name", "Required value"))
    return problems


def validate(info: ResourceInfo, obj: Obj) -> None:
    """Raise a 422 naming every problem."""
    problems = _validate_meta(info, obj)
    meta = _meta(obj)
    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
    if info is PODS:
        problems += _validate_pod(obj, where)
    if info is NETWORK_POLICIES and not problems:
        validator = _policy_validator()
        if validator is not None:
            problems += list(validator(obj))
    if info is CLUSTER_NETWORK_POLICIES and not problems:
        # The CRD's schema and rules (the upstream API server rejects what they reject).
        problems += list(validate_cluster_policy(obj))
    if problems:
        raise errors.invalid(info.kind, str(meta.get("name", "")), problems, group=info.group)


def apply_defaults(info: ResourceInfo, obj: Obj) -> Obj:
    """Fill in the defaults the real API server sets (only those that matter here)."""
    meta = _meta(obj)
    if info is NAMESPACES:
        labels = dict(meta.get("labels") or {})
        labels["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj["metadata"] = {**meta, "labels": labels}
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif info is PODS:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            for container in spec.get("containers") or []:
                if isinstance(container, dict):
                    for port in container.get("ports") or []:
                        if isinstance(port, dict):
                            port.setdefault("protocol", "TCP")
        status = obj.setdefault("status", {})
        if isinstance(status, dict):
            status.setdefault("phase", "Pending")
    elif info is NETWORK_POLICIES:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            if not spec.get("policyTypes"):
                types = ["Ingress"]
                if spec.get("egress"):
                    types.append("Egress")
                spec["policyTypes"] = types
            for direction in ("ingress", "egress"):
                for rule in spec.get(direction) or []:
                    if isinstance(rule, dict):
                        for port in rule.get("ports") or []:
                            if isinstance(port, dict):
                                port.setdefault("protocol", "TCP")
    return obj


def prepare_create(info: ResourceInfo, body: Any, *, namespace: str | None, now: str) -> Obj:
    obj = _check_kind(info, body)
    meta = obj["metadata"]
    if meta.get("resourceVersion"):
        raise errors.bad_request("resourceVersion should not be set on objects to be created")
    if not meta.get("name"):
        prefix = meta.get("generateName")
        if not prefix:
            raise errors.invalid(
                info.kind,
                "",
                [
                    FieldError(
                        "", "metadata.name", "Required value: name or generateName is required"
                    )
                ],
                group=info.group,
            )
        meta["name"] = str(prefix) + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
    if info.namespaced:
        given = meta.get("namespace")
        if given and namespace and given != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = namespace or given or "default"
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now
    meta.pop("deletionTimestamp", None)
    if info is NETWORK_POLICIES or info is PODS or info is CLUSTER_NETWORK_POLICIES:
        meta["generation"] = 1
    obj = apply_defaults(info, obj)
    validate(info, obj)
    return obj


def prepare_update(info: ResourceInfo, current: Obj, body: Any, *, subresource: str | None) -> Obj:
    """The object to store for a PUT/PATCH result `body` replacing `current`."""
    obj = _check_kind(info, body)
    meta, old = obj["metadata"], _meta(current)
    if meta.get("name") not in (None, "", old.get("name")):
        raise errors.bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL "
            f"({old.get('name')})"
        )
    if subresource == "status":
        obj = {**current, "status": obj.get("status", {})}
        obj["metadata"] = {**old, "resourceVersion": meta.get("resourceVersion", "")}
        meta = obj["metadata"]
    elif info.plural in _STATUS_KINDS:
        obj["status"] = current.get("status", {})
        if "status" not in current:
            obj.pop("status")
    for frozen in ("uid", "creationTimestamp", "name", "namespace", "generation"):
        if frozen in old:
            meta[frozen] = old[frozen]
        else:
            meta.pop(frozen, None)
    if "generation" in old and obj.get("spec") != current.get("spec"):
        meta["generation"] = int(old["generation"]) + 1
    obj = apply_defaults(info, obj)
    validate(info, obj)
    return obj

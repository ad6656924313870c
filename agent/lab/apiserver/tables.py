"""Server-side printing: `meta.k8s.io/v1` Table objects for `kubectl get` (plain and -o wide).

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io`; without a Table it would show
only names and ages. Columns mirror the upstream printers for our four kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent.lab.apiserver.resources import ResourceInfo

Obj = dict[str, Any]
Column = tuple[str, str, int, Callable[[Obj, float], Any]]  # name, type, priority, cell


def human_duration(seconds: float) -> str:
    """kubectl's short age format (apimachinery duration.HumanDuration)."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _age(obj: Obj, now: float) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    return human_duration(now - created)


def _get(obj: Obj, *path: str) -> Any:
    current: Any = obj
    for part in path:
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def _name(obj: Obj, now: float) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _pod_ready(obj: Obj, now: float) -> str:
    containers = _get(obj, "spec", "containers") or []
    statuses = _get(obj, "status", "containerStatuses") or []
    ready = sum(1 for s in statuses if isinstance(s, dict) and s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(obj: Obj, now: float) -> str:
    if _get(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    return str(_get(obj, "status", "reason") or _get(obj, "status", "phase") or "Unknown")


def _pod_restarts(obj: Obj, now: float) -> int:
    statuses = _get(obj, "status", "containerStatuses") or []
    return sum(int(s.get("restartCount", 0)) for s in statuses if isinstance(s, dict))


def _or_none(*path: str) -> Callable[[Obj, float], str]:
    return lambda obj, now: str(_get(obj, *path) or "<none>")


def _node_status(obj: Obj, now: float) -> str:
    for cond in _get(obj, "status", "conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            status = "Ready" if cond.get("status") == "True" else "NotReady"
            break
    else:
        status = "Unknown"
    if _get(obj, "spec", "unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_address(kind: str) -> Callable[[Obj, float], str]:
    def cell(obj: Obj, now: float) -> str:
        for address in _get(obj, "status", "addresses") or []:
            if isinstance(address, dict) and address.get("type") == kind:
                return str(address.get("address", "<none>"))
        return "<none>"

    return cell


def format_selector_dict(selector: Any) -> str:
    if not isinstance(selector, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            continue
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        joined = ",".join(sorted(str(v) for v in values))
        if op == "In":
            parts.append(f"{key} in ({joined})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({joined})")
        elif op == "Exists":
            parts.append(str(key))
        else:
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _involved(obj: Obj, now: float) -> str:
    kind, name = _get(obj, "involvedObject", "kind"), _get(obj, "involvedObject", "name")
    return f"{kind}/{name}".lower()


COLUMNS: dict[str, list[Column]] = {
    "pods": [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "integer", 0, _pod_restarts),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, _or_none("status", "podIP")),
        ("Node", "string", 1, _or_none("spec", "nodeName")),
        ("Nominated Node", "string", 1, _or_none("status", "nominatedNodeName")),
        ("Readiness Gates", "string", 1, lambda o, n: "<none>"),
    ],
    "namespaces": [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, _or_none("status", "phase")),
        ("Age", "string", 0, _age),
    ],
    "nodes": [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, lambda o, n: "<none>"),
        ("Age", "string", 0, _age),
        (
            "Version",
            "string",
            0,
            lambda o, n: str(_get(o, "status", "nodeInfo", "kubeletVersion") or ""),
        ),
        ("Internal-IP", "string", 1, _node_address("InternalIP")),
        ("External-IP", "string", 1, _node_address("ExternalIP")),
        ("OS-Image", "string", 1, _or_none("status", "nodeInfo", "osImage")),
        ("Kernel-Version", "string", 1, _or_none("status", "nodeInfo", "kernelVersion")),
        (
            "Container-Runtime",
            "string",
            1,
            _or_none("status", "nodeInfo", "containerRuntimeVersion"),
        ),
    ],
    "networkpolicies.networking.k8s.io": [
        ("Name", "string", 0, _name),
        (
            "Pod-Selector",
            "string",
            0,
            lambda o, n: format_selector_dict(_get(o, "spec", "podSelector")),
        ),
        ("Age", "string", 0, _age),
    ],
    "clusternetworkpolicies.policy.networking.k8s.io": [  # the CRD's printer columns
        ("Name", "string", 0, _name),
        ("Tier", "string", 0, _or_none("spec", "tier")),
        ("Priority", "string", 0, lambda o, n: str(_get(o, "spec", "priority"))),
        ("Age", "string", 0, _age),
    ],
    "events": [
        ("Last Seen", "string", 0, lambda o, n: str(_get(o, "lastTimestamp") or "<unknown>")),
        ("Type", "string", 0, _or_none("type")),
        ("Reason", "string", 0, _or_none("reason")),
        ("Object", "string", 0, _involved),
        ("Message", "string", 0, _or_none("message")),
    ],
}


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(info: ResourceInfo, items: list[Obj], *, rv: int, now: float, include: str) -> Obj:
    columns = COLUMNS.get(info.key, [("Name", "string", 0, _name), ("Age", "string", 0, _age)])
    rows = []
    for obj in items:
        row: Obj = {"cells": [cell(obj, now) for _, _, _, cell in columns]}
        partial = _row_object(obj, include)
        if partial is not None:
            row["object"] = partial
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": [
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": priority,
            }
            for name, type_, priority, _ in columns
        ],
        "rows": rows,
    }

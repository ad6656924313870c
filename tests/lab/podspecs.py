"""Pod dicts for lab tests (the shape the API server stores)."""

from __future__ import annotations

import itertools
from typing import Any

_uids = itertools.count(1)


def pod_dict(
    key: str,
    *,
    node: str | None = None,
    labels: dict[str, str] | None = None,
    ports: tuple[tuple[int, str], ...] = ((80, "TCP"), (80, "UDP")),
    host_network: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    namespace, _, name = key.partition("/")
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "c",
                "image": "lab",
                "ports": [{"containerPort": p, "protocol": proto} for p, proto in ports],
            }
        ]
    }
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{next(_uids)}-{namespace}-{name}",
            "labels": labels or {"pod": name},
        },
        "spec": spec,
    }

"""Small builders for domain objects: `make_pod("x/a", "pod=a", ip="10.244.0.10")`.

Labels are given as "k=v" strings; see tests/conftest.py for the address plan.
"""

from __future__ import annotations

from agent.core.model import (
    ContainerPort,
    Labels,
    Namespace,
    Pod,
    Protocol,
)


def labels(*pairs: str) -> Labels:
    out: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return Labels(out)


def make_ns(name: str, *pairs: str) -> Namespace:
    return Namespace(name, labels(f"kubernetes.io/metadata.name={name}", *pairs))


def make_pod(
    key: str,
    *pairs: str,
    ip: str | tuple[str, ...] = (),
    node: str = "node-0",
    ports: tuple[tuple[int, str, str | None], ...] = (),
) -> Pod:
    namespace, _, name = key.partition("/")
    ips = (ip,) if isinstance(ip, str) else ip
    return Pod(
        namespace=namespace,
        name=name,
        uid=f"uid-{namespace}-{name}",
        labels=labels(*pairs),
        ips=ips,
        node=node,
        ports=tuple(ContainerPort(p, Protocol(proto), n) for p, proto, n in ports),
    )

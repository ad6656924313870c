"""Plain Kubernetes object dicts (YAML, JSON, sanitized client objects) -> the domain model.

This is the one place where the shape of Kubernetes objects is known; the rest
of the engine sees only `agent.core.model` values. Malformed Pods, Namespaces
and Nodes raise `InputError` naming the object and the field. NetworkPolicies
never raise: an invalid one is converted fail-closed (it isolates the pods it
selects, for its policy types, and allows nothing; an unusable podSelector
selects every pod of its namespace) and carries its `FieldError`s.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agent.core.errors import FieldError, InputError
from agent.core.model import (
    ENFORCEMENT_ANNOTATION,
    ENFORCEMENT_MODES,
    MATCH_ALL,
    ClusterState,
    ContainerPort,
    Direction,
    IPBlock,
    Labels,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Operator,
    Peer,
    Pod,
    PodPhase,
    PolicyPort,
    Protocol,
    Requirement,
    Rule,
)
from agent.core.validate import object_key, validate_policy

if TYPE_CHECKING:
    from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy

NAME_LABEL = "kubernetes.io/metadata.name"
# Node address types that are names, not addresses.
_NAME_ADDRESS_TYPES = frozenset({"Hostname", "InternalDNS", "ExternalDNS"})


def _fail(obj: str, path: str, message: str) -> InputError:
    return InputError(str(FieldError(obj, path, message)))


def _get(d: Mapping[str, Any], key: str, obj: str, path: str) -> Mapping[str, Any]:
    """d[key] as a mapping ({} when absent); anything else is an InputError."""
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(obj, path, "must be an object")
    return value


def _list(d: Mapping[str, Any], key: str, obj: str, path: str) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _fail(obj, path, "must be a list")
    return list(value)


def _meta(
    d: Mapping[str, Any], kind: str, *, namespaced: bool
) -> tuple[str, str, Mapping[str, Any]]:
    if not isinstance(d, Mapping):
        raise InputError(f"a {kind} must be an object")
    obj = object_key(d) if namespaced else str((d.get("metadata") or {}).get("name", "<unnamed>"))
    meta = _get(d, "metadata", obj, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(f"{kind} {obj}", "metadata.name", "Required value")
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str):
        raise _fail(obj, "metadata.namespace", "must be a string")
    return ns, name, meta


def _labels(meta: Mapping[str, Any], obj: str) -> Labels:
    raw = _get(meta, "labels", obj, "metadata.labels")
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _fail(obj, f"metadata.labels.{k}", f"{v!r} must be a string (quote it)")
    return Labels(raw)


def _ip(text: Any, obj: str, path: str) -> str:
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise _fail(obj, path, f"{text!r} is not a valid IP address") from None


def namespace_from_dict(d: Mapping[str, Any]) -> Namespace:
    """A Namespace; like the API server, adds the kubernetes.io/metadata.name label."""
    _, name, meta = _meta(d, "Namespace", namespaced=False)
    labels = _labels(meta, name)
    return Namespace(name, labels.with_label(NAME_LABEL, name))


def pod_from_dict(d: Mapping[str, Any]) -> Pod:
    """A Pod with its IPs (status.podIPs, else status.podIP) and all containerPorts."""
    ns, name, meta = _meta(d, "Pod", namespaced=True)
    obj = f"{ns}/{name}"
    spec = _get(d, "spec", obj, "spec")
    status = _get(d, "status", obj, "status")
    ips: list[str] = []
    for i, entry in enumerate(_list(status, "podIPs", obj, "status.podIPs")):
        if not isinstance(entry, Mapping) or "ip" not in entry:
            raise _fail(obj, f"status.podIPs[{i}]", "must be an object with an `ip`")
        ips.append(_ip(entry["ip"], obj, f"status.podIPs[{i}].ip"))
    if not ips and status.get("podIP"):
        ips.append(_ip(status["podIP"], obj, "status.podIP"))
    phase_text = status.get("phase") or "Running"
    try:
        phase = PodPhase(phase_text)
    except ValueError:
        raise _fail(obj, "status.phase", f"{phase_text!r} is not a pod phase") from None
    ports: list[ContainerPort] = []
    for group in ("initContainers", "containers"):
        for i, container in enumerate(_list(spec, group, obj, f"spec.{group}")):
            cpath = f"spec.{group}[{i}]"
            if not isinstance(container, Mapping):
                raise _fail(obj, cpath, "must be an object")
            for j, port in enumerate(_list(container, "ports", obj, f"{cpath}.ports")):
                ports.append(_container_port(port, obj, f"{cpath}.ports[{j}]"))
    host_network = spec.get("hostNetwork", False)
    if not isinstance(host_network, bool):
        raise _fail(obj, "spec.hostNetwork", "must be true or false")
    node = spec.get("nodeName")
    uid = meta.get("uid") or obj
    return Pod(
        namespace=ns,
        name=name,
        uid=str(uid),
        labels=_labels(meta, obj),
        ips=tuple(dict.fromkeys(ips)),
        node=str(node) if node else None,
        host_network=host_network,
        phase=phase,
        ports=tuple(dict.fromkeys(ports)),
    )


def _container_port(port: Any, obj: str, path: str) -> ContainerPort:
    if not isinstance(port, Mapping):
        raise _fail(obj, path, "must be an object")
    number = port.get("containerPort")
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise _fail(obj, f"{path}.containerPort", f"{number!r}: must be between 1 and 65535")
    proto = port.get("protocol") or "TCP"
    if proto not in ("TCP", "UDP", "SCTP"):
        raise _fail(obj, f"{path}.protocol", f"{proto!r}: supported values: TCP, UDP, SCTP")
    name = port.get("name")
    if name is not None and not isinstance(name, str):
        raise _fail(obj, f"{path}.name", "must be a string")
    return ContainerPort(number, Protocol(proto), name or None)


def node_from_dict(d: Mapping[str, Any]) -> Node:
    """A Node: its IP addresses (status.addresses), pod CIDRs (spec.podCIDRs) and labels."""
    _, name, meta = _meta(d, "Node", namespaced=False)
    obj = f"node {name}"
    spec = _get(d, "spec", obj, "spec")
    status = _get(d, "status", obj, "status")
    addresses = []
    for i, entry in enumerate(_list(status, "addresses", obj, "status.addresses")):
        if not isinstance(entry, Mapping):
            raise _fail(obj, f"status.addresses[{i}]", "must be an object")
        if entry.get("type") in _NAME_ADDRESS_TYPES:
            continue
        addresses.append(_ip(entry.get("address"), obj, f"status.addresses[{i}].address"))
    cidrs = [str(c) for c in _list(spec, "podCIDRs", obj, "spec.podCIDRs")]
    if not cidrs and spec.get("podCIDR"):
        cidrs = [str(spec["podCIDR"])]
    for i, c in enumerate(cidrs):
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            raise _fail(obj, f"spec.podCIDRs[{i}]", f"{c!r} is not a valid CIDR") from None
    return Node(name, tuple(dict.fromkeys(addresses)), tuple(cidrs), _labels(meta, obj))


def selector_from_dict(d: Mapping[str, Any] | None) -> LabelSelector:
    """A validated metav1.LabelSelector dict -> LabelSelector (None/{} -> match all)."""
    if not d:
        return MATCH_ALL
    labels = tuple(sorted((str(k), str(v)) for k, v in (d.get("matchLabels") or {}).items()))
    exprs = tuple(
        Requirement(
            key=str(e["key"]),
            operator=Operator(e["operator"]),
            values=frozenset(str(v) for v in e.get("values") or ()),
        )
        for e in d.get("matchExpressions") or ()
    )
    return LabelSelector(labels, exprs)


def _peer(d: Mapping[str, Any]) -> Peer:
    block = d.get("ipBlock")
    pod_sel = d.get("podSelector")
    ns_sel = d.get("namespaceSelector")
    return Peer(
        pod_selector=None if pod_sel is None else selector_from_dict(pod_sel),
        namespace_selector=None if ns_sel is None else selector_from_dict(ns_sel),
        ip_block=None
        if block is None
        else IPBlock(str(block["cidr"]), tuple(str(e) for e in block.get("except") or ())),
    )


def _port(d: Mapping[str, Any]) -> PolicyPort:
    return PolicyPort(
        protocol=Protocol(d.get("protocol") or "TCP"),
        port=d.get("port"),
        end_port=d.get("endPort"),
    )


def _rules(raw: Any, peer_field: str) -> tuple[Rule, ...]:
    return tuple(
        Rule(
            peers=tuple(_peer(p) for p in (r or {}).get(peer_field) or ()),
            ports=tuple(_port(p) for p in (r or {}).get("ports") or ()),
        )
        for r in raw or ()
    )


def _policy_types(spec: Mapping[str, Any], errors: tuple[FieldError, ...]) -> frozenset[Direction]:
    """spec.policyTypes, or the API server's default when it is empty.

    "If this field is not specified, it will default based on the existence of
    ingress or egress rules; policies that contain an egress section are assumed
    to affect egress, and all policies (whether or not they contain an ingress
    section) are assumed to affect ingress." The API server's defaulting tests
    `len(spec.Egress) != 0`, so `egress: []` does not add Egress.
    Unusable policyTypes fail closed: both directions.
    """
    if any(e.path.startswith("spec.policyTypes") for e in errors):
        return frozenset(Direction)
    given = spec.get("policyTypes") or []
    if given:
        return frozenset(Direction(t) for t in given)
    egress = spec.get("egress")
    if egress is not None and not isinstance(egress, list | tuple):
        return frozenset(Direction)
    if egress:
        return frozenset(Direction)
    return frozenset({Direction.INGRESS})


def policy_from_dict(d: Mapping[str, Any]) -> NetworkPolicy:
    """A NetworkPolicy; never raises on an invalid spec (errors kept, fail closed)."""
    errors = validate_policy(d)
    if not isinstance(d, Mapping):
        return NetworkPolicy("default", "<unnamed>", errors=errors)
    raw_meta, raw_spec = d.get("metadata"), d.get("spec")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
    ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "<unnamed>")
    if any(e.path.startswith("spec.podSelector") for e in errors):
        pod_selector = MATCH_ALL  # unusable selector: isolate the whole namespace
    else:
        pod_selector = selector_from_dict(spec.get("podSelector"))
    uid = str(meta.get("uid") or "")
    audit, errors = _enforcement(meta, f"{ns}/{name}", errors)
    types = _policy_types(spec, errors)
    if errors:
        return NetworkPolicy(
            ns,
            name,
            pod_selector=pod_selector,
            policy_types=types,
            uid=uid,
            errors=errors,
            audit=audit,
        )
    return NetworkPolicy(
        ns,
        name,
        pod_selector=pod_selector,
        policy_types=types,
        ingress=_rules(spec.get("ingress"), "from"),
        egress=_rules(spec.get("egress"), "to"),
        uid=uid,
        audit=audit,
    )


def _enforcement(
    meta: Mapping[str, Any], obj: str, errors: tuple[FieldError, ...]
) -> tuple[bool, tuple[FieldError, ...]]:
    """The enforcement annotation: audit or enforce; anything else is an error (fail closed)."""
    annotations = meta.get("annotations")
    value = annotations.get(ENFORCEMENT_ANNOTATION) if isinstance(annotations, Mapping) else None
    if value is None or value == "enforce":
        return False, errors
    if value == "audit":
        return True, errors
    path = f"metadata.annotations[{ENFORCEMENT_ANNOTATION}]"
    message = f"{value!r}: must be one of {', '.join(ENFORCEMENT_MODES)}"
    return False, (*errors, FieldError(obj, path, message))


def state_from_dicts(objects: Iterable[Mapping[str, Any]]) -> ClusterState:
    """A ClusterState from object dicts of kinds Namespace, Pod, NetworkPolicy, Node and
    ClusterNetworkPolicy.

    Other kinds are ignored (the manifest loader notes them). The same object
    given twice is an InputError.
    """
    namespaces: dict[str, Namespace] = {}
    pods: dict[str, Pod] = {}
    policies: dict[str, NetworkPolicy] = {}
    from agent.core.policyapi.cnpconvert import cluster_policy_from_dict

    nodes: dict[str, Node] = {}
    cluster: dict[str, ClusterNetworkPolicy] = {}
    seen: set[tuple[str, str]] = set()
    for d in objects:
        kind = d.get("kind")
        if kind == "Namespace":
            ns = namespace_from_dict(d)
            _once(seen, "Namespace", ns.name)
            namespaces[ns.name] = ns
        elif kind == "Pod":
            pod = pod_from_dict(d)
            _once(seen, "Pod", pod.key)
            pods[pod.uid] = pod
        elif kind == "NetworkPolicy":
            pol = policy_from_dict(d)
            _once(seen, "NetworkPolicy", pol.key)
            policies[pol.key] = pol
        elif kind == "Node":
            node = node_from_dict(d)
            _once(seen, "Node", node.name)
            nodes[node.name] = node
        elif kind == "ClusterNetworkPolicy":
            cnp = cluster_policy_from_dict(d)
            _once(seen, "ClusterNetworkPolicy", cnp.key)
            cluster[cnp.key] = cnp
    return ClusterState(
        namespaces=namespaces,
        pods=pods,
        policies=policies,
        nodes=nodes,
        cluster_policies=cluster,
    )


def _once(seen: set[tuple[str, str]], kind: str, key: str) -> None:
    if (kind, key) in seen:
        raise InputError(f"{kind} {key} is defined twice")
    seen.add((kind, key))

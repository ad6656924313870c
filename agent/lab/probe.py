"""`lab probe`: wait until every agent applied the cluster's state, then send real packets.

Convergence (see /work/notes/interfaces.md): read the API server's current
resourceVersion, then poll every node agent's /statusz (reached from the
underlay namespace at <node ip>:9847) until its synced_resource_version is at
least that. Then every ordered pair of pods is tried on every case (port,
protocol) at once: a TCP/SCTP connect or a UDP echo from a socket inside the
source pod's namespace to the destination pod's address. The result is a
`TruthTable` (agent.core.table), so it prints, diffs and serialises exactly like
`reachability`; `compare` evaluates the same state with the ReferenceEvaluator.

Against a real API server (`--control-plane real`) a kind's watch gets a
bookmark only about once a minute, so the global resourceVersion is a target
an agent may reach late. There the probe waits per kind instead
(`wait_converged_kinds`): for every kind, the agent applied a state at least
as new as the kind's newest object, holds as many objects as the list (so no
deletion is still on its way) and has applied everything it received.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.core.convert import state_from_dicts
from agent.core.errors import InputError, NetpolError
from agent.core.model import ClusterState, Family, Pod, Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.core.table import (
    Case,
    TableDiff,
    TruthTable,
    compute_table,
    diff_tables,
    sort_cases,
)
from agent.lab.client import JSON, ApiClient, ApiStatusError
from agent.lab.kubelet import pod_netns, started_by_lab
from agent.lab.netsock import Attempt, open_socket, probe, sctp_supported
from agent.lab.topology import NodeSpec, Topology

METRICS_PORT = 9847
RESOURCES = (
    "/api/v1/namespaces",
    "/api/v1/pods",
    "/apis/networking.k8s.io/v1/networkpolicies",
    "/api/v1/nodes",
    "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
)


class NotConverged(NetpolError):
    """An agent did not apply the cluster's current state in time."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The cluster as read from the API server, in both shapes we need."""

    objects: tuple[JSON, ...]
    state: ClusterState
    resource_version: int
    kinds: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # newest rv, count


def snapshot(client: ApiClient) -> Snapshot:
    objects: list[JSON] = []
    newest = 0
    kinds: dict[str, tuple[int, int]] = {}
    for path in RESOURCES:
        resource = path.rsplit("/", 1)[1]
        try:
            items, rv = client.list(path)
        except ApiStatusError as exc:
            # ClusterNetworkPolicy is a CRD: a server without it (the real control plane
            # does not install it) has none, and the agents hold none either.
            if exc.status == 404 and resource == "clusternetworkpolicies":
                continue
            raise
        kind = {
            "namespaces": "Namespace",
            "pods": "Pod",
            "nodes": "Node",
            "clusternetworkpolicies": "ClusterNetworkPolicy",
        }.get(resource, "NetworkPolicy")
        objects += [{"kind": kind, **item} for item in items]
        newest = max(newest, int(rv or 0))
        rvs = [int((i.get("metadata") or {}).get("resourceVersion") or 0) for i in items]
        kinds[resource] = (max(rvs, default=0), len(items))
    return Snapshot(tuple(objects), state_from_dicts(objects), newest, kinds)


def settled_snapshot(client: ApiClient, topo: Topology, *, timeout: float) -> Snapshot:
    """A snapshot taken once the lab kubelets have started every pod they will start.

    Pods bound to a node the lab does not have, and finished pods, are not waited for.
    """
    nodes = {n.name for n in topo.nodes}
    deadline = time.monotonic() + timeout
    while True:
        snap = snapshot(client)
        pending = [
            f"{o['metadata'].get('namespace')}/{o['metadata'].get('name')}"
            for o in snap.objects
            if o.get("kind") == "Pod"
            and (o.get("spec") or {}).get("nodeName", "") in nodes | {""}
            and (o.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not started_by_lab(o)
        ]
        if not pending:
            return snap
        if time.monotonic() > deadline:
            raise NotConverged(
                f"pods not started by the lab kubelets within {timeout:g}s: {', '.join(pending)}"
            )
        time.sleep(0.02)


def fetch_statusz(topo: Topology, node: NodeSpec, *, timeout: float = 1.0) -> JSON:
    """GET http://<node ip>:9847/statusz from inside the underlay namespace."""
    return fetch_json(topo, node, "/statusz", timeout=timeout)


def fetch_json(topo: Topology, node: NodeSpec, path: str, *, timeout: float = 1.0) -> JSON:
    """GET http://<node ip>:9847<path> (a JSON endpoint) from inside the underlay namespace."""
    family = Family.V4
    sock = open_socket(topo.net_netns, family, Protocol.TCP)
    try:
        sock.settimeout(timeout)
        sock.connect((node.ip, METRICS_PORT))
        conn = http.client.HTTPConnection(node.ip, METRICS_PORT, timeout=timeout)
        conn.sock = sock
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        data: JSON = json.loads(body)
        return data
    finally:
        sock.close()


def agent_states(topo: Topology) -> dict[str, JSON | str]:
    """Each node's /statusz, or why it could not be read."""
    out: dict[str, JSON | str] = {}
    for node in topo.nodes:
        try:
            out[node.name] = fetch_statusz(topo, node)
        except (OSError, ValueError) as exc:
            out[node.name] = f"unreachable: {exc}"
    return out


def synced(status: JSON | str) -> int:
    if isinstance(status, str):
        return -1
    try:
        return int(status.get("synced_resource_version") or -1)
    except (TypeError, ValueError):
        return -1


def wait_converged(
    topo: Topology,
    target_rv: int,
    *,
    timeout: float,
    states: Callable[[Topology], Mapping[str, JSON | str]] = agent_states,
) -> float:
    """Seconds until every agent synced `target_rv`; NotConverged names the laggards."""
    start = time.monotonic()
    while True:
        current = states(topo)
        lagging = {n: s for n, s in current.items() if synced(s) < target_rv}
        if not lagging:
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            details = "; ".join(
                f"{n}: {s}" if isinstance(s, str) else f"{n}: synced {synced(s)}"
                for n, s in sorted(lagging.items())
            )
            raise NotConverged(
                f"agents did not apply resourceVersion {target_rv} within {timeout:g}s: {details}"
            )
        time.sleep(0.02)


def kind_lag(status: JSON | str, kinds: Mapping[str, tuple[int, int]]) -> str:
    """Why an agent has not yet applied the snapshot's kinds ("" once it has)."""
    if isinstance(status, str):
        return status
    if not status.get("ready"):
        return "not ready"
    synced = status.get("synced_resource_versions") or {}
    received = status.get("resource_versions") or {}
    counts = status.get("objects") or {}
    for kind, (newest, count) in sorted(kinds.items()):
        try:
            have = int(synced.get(kind) or -1)
            got = int(received.get(kind) or -1)
        except (TypeError, ValueError):
            return f"{kind}: no per-kind resourceVersions in /statusz"
        if have < newest:
            return f"{kind}: synced {have} < {newest}"
        if counts.get(kind) != count:
            return f"{kind}: holds {counts.get(kind)} objects, the API server {count}"
        if got != have:
            return f"{kind}: received {got}, applied {have}"
    return ""


def wait_converged_kinds(
    topo: Topology,
    snap: Snapshot,
    *,
    timeout: float,
    states: Callable[[Topology], Mapping[str, JSON | str]] = agent_states,
) -> float:
    """Seconds until every agent applied every kind's newest state (see the module docstring)."""
    start = time.monotonic()
    while True:
        lagging = {n: why for n, s in states(topo).items() if (why := kind_lag(s, snap.kinds))}
        if not lagging:
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            details = "; ".join(f"{n}: {why}" for n, why in sorted(lagging.items()))
            raise NotConverged(
                f"agents did not apply the cluster's state within {timeout:g}s: {details}"
            )
        time.sleep(0.02)


def wait_snapshot(topo: Topology, snap: Snapshot, *, per_kind: bool, timeout: float) -> float:
    """wait_converged (global resourceVersion) or, with per_kind, wait_converged_kinds."""
    if per_kind:
        return wait_converged_kinds(topo, snap, timeout=timeout)
    return wait_converged(topo, snap.resource_version, timeout=timeout)


def probe_pods(state: ClusterState) -> list[Pod]:
    """The pods a probe tests: networked (not hostNetwork, with an IP, running)."""
    return sorted((p for p in state.pods.values() if p.is_networked), key=lambda p: p.key)


def select_cases(pods: Iterable[Pod], *, port: int | None, protocol: Protocol | None) -> list[Case]:
    """The cases to probe: the given port/protocol, else what the pods declare."""
    declared = {(cp.port, cp.protocol) for pod in pods for cp in pod.ports}
    if port is not None and protocol is not None:
        return [(port, protocol)]
    if port is not None:
        return sort_cases({c for c in declared if c[0] == port} or {(port, Protocol.TCP)})
    if protocol is not None:
        chosen = {c for c in declared if c[1] is protocol}
        if not chosen:
            raise InputError(f"--protocol {protocol.value}: no pod declares a port of it")
        return sort_cases(chosen)
    return sort_cases(declared)


def usable_cases(cases: Sequence[Case]) -> tuple[list[Case], list[Case]]:
    """(cases this kernel can probe, cases skipped: SCTP when the kernel has no SCTP)."""
    if sctp_supported():
        return list(cases), []
    return (
        [c for c in cases if c[1] is not Protocol.SCTP],
        [c for c in cases if c[1] is Protocol.SCTP],
    )


def netns_of(topo: Topology, pod: Pod) -> str:
    return topo.node(pod.node or "").netns if pod.host_network else pod_netns(topo, pod.uid)


def probe_table(
    topo: Topology,
    pods: Sequence[Pod],
    cases: Sequence[Case],
    *,
    family: Family = Family.V4,
    timeout: float = 1.0,
    recheck: Callable[[Pod, Pod, int, Protocol], bool] | None = None,
) -> TruthTable:
    """Real connections for every ordered pair of `pods` on every case.

    Cells that failed and for which `recheck` says "expected to connect" are
    tried once more (with twice the timeout) before they count as blocked, so
    that a loaded machine does not report a slow handshake as a disagreement.
    A retry can only turn X into ".", and only through a real connection.
    """
    attempts: dict[tuple[str, str, int, Protocol], Attempt] = {}
    by_uid = {p.uid: p for p in pods}
    for src in pods:
        for dst in pods:
            ips = dst.ips_of(family)
            if src.uid == dst.uid or not ips:
                continue
            for port, protocol in cases:
                attempts[(src.uid, dst.uid, port, protocol)] = Attempt(
                    netns_of(topo, src), ips[0], port, protocol
                )
    results = probe(list(attempts.values()), timeout=timeout)
    if recheck is not None:
        again = [
            att
            for (s, d, port, proto), att in attempts.items()
            if not results[att] and recheck(by_uid[s], by_uid[d], port, proto)
        ]
        if again:
            results.update(probe(again, timeout=2 * timeout))

    def allowed(src: Pod, dst: Pod, port: int, protocol: Protocol) -> bool:
        att = attempts.get((src.uid, dst.uid, port, protocol))
        return att is not None and results[att]

    return compute_table(allowed, pods, cases)


def engine_verdict(state: ClusterState) -> Callable[[Pod, Pod, int, Protocol], bool]:
    """What the engine predicts a real connection does: allowed by policy AND someone listens
    (a destination that does not declare the port/protocol has no listener in the lab)."""
    evaluator = ReferenceEvaluator(state)

    def allowed(src: Pod, dst: Pod, port: int, protocol: Protocol) -> bool:
        listens = any(cp.port == port and cp.protocol is protocol for cp in dst.ports)
        return listens and evaluator.allowed(src, dst, port, protocol)

    return allowed


def engine_table(state: ClusterState, pods: Sequence[Pod], cases: Sequence[Case]) -> TruthTable:
    return compute_table(engine_verdict(state), pods, cases)


def compare(
    kernel: TruthTable, state: ClusterState, pods: Sequence[Pod], cases: Sequence[Case]
) -> TableDiff:
    """Cells where the kernel (actual) and the engine (expected) disagree."""
    return diff_tables(engine_table(state, pods, cases), kernel)

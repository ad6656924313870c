"""The lab kubelet: turns pods bound to a lab node into namespaces with an IP and listeners.

One `Kubelet` per node owns that node's pods: a network namespace per pod with
a veth on the node's cni0 bridge, an address from the node's podCIDR (lowest
free slot, .10 upwards, so creation order gives the address plan of
tests/conftest.py and a recreated pod gets its predecessor's address), a MAC
derived from that address (so neighbour caches never go stale when an address
is reused), listeners on every declared containerPort, and a status written
through the status subresource. hostNetwork pods get listeners in the node
namespace and the node's address. Each kubelet works through its own queue in
its own thread, so pods of one node are set up in the order they arrive.
Annotations `lab.netpol-agent.io/start-delay-ms` and `.../status-delay-ms` make a
pod start (and report its IP) late, like a real kubelet.

With a `PodNetwork` (the real control plane: agent/lab/realcp/cni.py) the veth
and the address come from the real CNI plugins instead, and `on_deleting`
finishes a graceful deletion once the pod is torn down (a real kubelet's
final DELETE with grace period 0).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import queue
import threading
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.errors import KubeError
from agent.core.model import Family, Protocol
from agent.lab.client import JSON, ApiStatusError
from agent.lab.netsock import ListenerServer, Port
from agent.lab.topology import NodeSpec, Topology, add_netns, ip_batch

log = logging.getLogger(__name__)
MAX_SLOTS = 240
# A real kubelet takes a while to create a pod's sandbox, and writes its IP to the API
# later still; these annotations make a lab pod do the same (milliseconds, at most 10 s;
# the node's other pods wait meanwhile), e.g. to test the agent's new-pod hold.
START_DELAY = "lab.netpol-agent.io/start-delay-ms"  # before the network is set up
STATUS_DELAY = "lab.netpol-agent.io/status-delay-ms"  # network up, IP not yet written


def _delay(pod: JSON, annotation: str) -> float:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(annotation)
    try:
        return min(max(int(str(value)), 0), 10_000) / 1000 if value is not None else 0.0
    except ValueError:
        return 0.0


class StatusWriter(typing.Protocol):
    """The one API call a kubelet makes (ApiClient in the lab, a recorder in tests)."""

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON: ...


class PodNetwork(typing.Protocol):
    """Wires a pod's namespace (CNI ADD/DEL); returns the pod's addresses."""

    def add(self, uid: str, netns: str) -> tuple[str, ...]: ...

    def delete(self, uid: str, netns: str) -> None: ...


def pod_netns(topo: Topology, uid: str) -> str:
    """The namespace of a (non-hostNetwork) pod, derived from its UID."""
    return f"{topo.prefix}p{_short(uid)}"


def _short(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:8]


def container_id(uid: str, index: int) -> str:
    """What the lab kubelet writes as containerID: tells its status from a manifest's."""
    return f"lab://{_short(uid)}-{index}"


def started_by_lab(pod: Mapping[str, Any]) -> bool:
    """True once the lab kubelet has set this very pod up and written its status."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(
        str(cs.get("containerID", "")).startswith(f"lab://{_short(uid)}-") for cs in statuses
    )


def pod_mac(ip: str) -> str:
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def declared_ports(pod: Mapping[str, Any]) -> list[Port]:
    out: list[Port] = []
    seen: set[Port] = set()
    for container in (pod.get("spec") or {}).get("containers") or []:
        for cp in container.get("ports") or []:
            try:
                port = Port(int(cp["containerPort"]), Protocol(cp.get("protocol") or "TCP"))
            except (KeyError, ValueError, TypeError):
                continue
            if port not in seen:
                seen.add(port)
                out.append(port)
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class PodNet:
    uid: str
    key: str
    netns: str
    ips: tuple[str, ...]
    slot: int | None
    cni: bool = False  # wired by a PodNetwork


class Kubelet:
    """One lab node's kubelet (see the module docstring)."""

    def __init__(
        self,
        *,
        topo: Topology,
        node: NodeSpec,
        client: StatusWriter,
        listeners: ListenerServer,
        on_error: Callable[[str], None] | None = None,
        network: PodNetwork | None = None,
        on_deleting: Callable[[JSON], None] | None = None,
    ) -> None:
        self.topo = topo
        self.network = network
        self._on_deleting = on_deleting
        self.node = node
        self.client = client
        self.listeners = listeners
        self._on_error = on_error or (lambda msg: log.error("%s", msg))
        self._pods: dict[str, PodNet] = {}
        self._queue: queue.Queue[tuple[str, JSON] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"kubelet-{node.name}", daemon=True)
        self._thread.start()

    # -- called from the pod watcher -------------------------------------------------
    def submit(self, event_type: str, pod: JSON) -> None:
        self._queue.put((event_type, pod))

    def known_uids(self) -> set[str]:
        return set(self._pods)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued event was handled (tests)."""
        done = threading.Event()
        self._queue.put(("__mark__", {"done": done}))
        done.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        for uid in list(self._pods):
            self._teardown(uid)

    # -- the worker ---------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event_type, pod = item
            if event_type == "__mark__":
                pod["done"].set()
                continue
            try:
                self._handle(event_type, pod)
            except Exception as exc:  # one bad pod must not stop the node
                self._on_error(f"node {self.node.name}: pod {_key(pod)}: {exc}")

    def _handle(self, event_type: str, pod: JSON) -> None:
        uid = str(pod.get("metadata", {}).get("uid", ""))
        if event_type == "DELETED" or pod.get("metadata", {}).get("deletionTimestamp"):
            self._teardown(uid)
            if event_type != "DELETED" and self._on_deleting is not None:
                self._on_deleting(pod)
            return
        if uid in self._pods:
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        time.sleep(_delay(pod, START_DELAY))
        net = self._setup(pod)
        self._pods[uid] = net
        time.sleep(_delay(pod, STATUS_DELAY))
        self._write_status(pod, net)

    def _setup(self, pod: JSON) -> PodNet:
        meta = pod["metadata"]
        uid = str(meta["uid"])
        key = _key(pod)
        families = [Family.V4, Family.V6] if self.topo.ipv6 else [Family.V4]
        ports = declared_ports(pod)
        ips: tuple[str, ...]
        if (pod.get("spec") or {}).get("hostNetwork"):
            ips = (self.node.ip, self.node.ip6) if self.topo.ipv6 else (self.node.ip,)
            net = PodNet(uid, key, self.node.netns, ips, None)
        elif self.network is not None:
            netns = pod_netns(self.topo, uid)
            add_netns([netns])
            try:
                ips = self.network.add(uid, netns)
            except Exception:
                ip_batch(None, [f"netns del {netns}"])
                raise
            net = PodNet(uid, key, netns, ips, None, cni=True)
        else:
            slot = self._free_slot()
            ip = self.node.pod_ip(slot)
            ips = (ip, self.node.pod_ip6(slot)) if self.topo.ipv6 else (ip,)
            net = PodNet(uid, key, pod_netns(self.topo, uid), ips, slot)
            self._plumb(net)
        for problem in self.listeners.add(uid, net.netns, ports, families):
            self._on_error(f"node {self.node.name}: pod {key}: cannot listen on {problem}")
        log.info("pod %s on %s: %s", key, self.node.name, ",".join(net.ips))
        return net

    def _free_slot(self) -> int:
        used = {p.slot for p in self._pods.values()}
        for slot in range(MAX_SLOTS):
            if slot not in used:
                return slot
        raise KubeError(f"node {self.node.name}: podCIDR {self.node.pod_cidr} is full")

    def _plumb(self, net: PodNet) -> None:
        veth = f"veth{_short(net.uid)}"
        mtu = self.topo.mtu
        add_netns([net.netns])
        try:
            ip_batch(
                self.node.netns,
                [
                    f"link add {veth} mtu {mtu} type veth peer name eth0 netns {net.netns}",
                    f"link set {veth} master cni0 up",
                ],
            )
            lines = [
                "link set lo up",
                f"link set eth0 address {pod_mac(net.ips[0])} mtu {mtu}",
                f"addr add {net.ips[0]}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {self.node.gateway}",
            ]
            if self.topo.ipv6:
                lines[3:3] = [f"addr add {net.ips[1]}/64 dev eth0 nodad"]
                lines.append(f"route add default via {self.node.gateway6}")
            ip_batch(net.netns, lines)
        except Exception:
            ip_batch(None, [f"netns del {net.netns}"])
            raise

    def _teardown(self, uid: str) -> None:
        net = self._pods.pop(uid, None)
        self.listeners.remove(uid)
        if net is None or (net.slot is None and not net.cni):
            return
        if net.cni and self.network is not None:
            try:
                self.network.delete(uid, net.netns)
            except Exception as exc:  # the namespace goes anyway, and with it the veth
                log.warning("pod %s: CNI DEL: %s", net.key, exc)
        with contextlib.suppress(Exception):
            ip_batch(None, [f"netns del {net.netns}"])
        log.info("pod %s on %s: removed", net.key, self.node.name)

    def _write_status(self, pod: JSON, net: PodNet) -> None:
        now = _now()
        meta = pod["metadata"]
        containers = (pod.get("spec") or {}).get("containers") or []
        host_ips = [self.node.ip, self.node.ip6] if self.topo.ipv6 else [self.node.ip]
        status = {
            "phase": "Running",
            "podIP": net.ips[0],
            "podIPs": [{"ip": ip} for ip in net.ips],
            "hostIP": self.node.ip,
            "hostIPs": [{"ip": ip} for ip in host_ips],
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
            ]
            + [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": container_id(net.uid, i),
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for i, c in enumerate(containers)
            ],
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            self.client.merge_patch(path, {"status": status})
        except ApiStatusError as exc:
            if exc.status != 404:  # deleted meanwhile: its DELETED event follows
                raise


def _key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"

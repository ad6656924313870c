"""The lab's pod watcher and scheduler: one watch on all pods, fanned out to the kubelets.

Unbound pods are bound to the lab node holding the fewest pods (ties go to the
lowest node index), so pods applied in one go are spread round-robin in
creation order and the address plan stays predictable. Bound pods go to their
node's kubelet queue; pods bound to a node the lab does not have stay Pending,
as they would in a real cluster. After a broken watch the watcher lists again
and tells kubelets about pods that vanished meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from agent.core.errors import KubeError
from agent.lab.client import JSON, ApiClient
from agent.lab.kubelet import Kubelet

log = logging.getLogger(__name__)
PODS = "/api/v1/pods"


class PodWatcher:
    def __init__(
        self,
        *,
        client: ApiClient,
        kubelets: Mapping[str, Kubelet],
        order: list[str],
        on_error: Callable[[str], None] | None = None,
        bind: Callable[[JSON, str], None] | None = None,
    ) -> None:
        self.client = client
        self._bind = bind or self._set_node_name
        self.kubelets = kubelets
        self.order = order
        self._on_error = on_error or (lambda msg: log.error("%s", msg))
        self._bound: dict[str, str] = {}  # uid -> node name
        self._requested: set[str] = set()  # uids we asked to bind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-pod-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                items, rv = self.client.list(PODS)
                self._reconcile(items)
                for event in self.client.watch(PODS, rv, timeout_seconds=120):
                    if self._stop.is_set():
                        return
                    etype = str(event.get("type"))
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        self.handle(etype, event["object"])
                    elif etype == "ERROR":
                        break
            except (KubeError, ValueError, KeyError) as exc:
                if self._stop.is_set():
                    return
                log.warning("pod watch: %s; listing again", exc)
                time.sleep(0.2)

    def _reconcile(self, items: list[JSON]) -> None:
        present = {str(p["metadata"]["uid"]) for p in items}
        for uid, node in list(self._bound.items()):
            if uid not in present:
                self._bound.pop(uid)
                kubelet = self.kubelets.get(node)
                if kubelet is not None:
                    kubelet.submit("DELETED", {"metadata": {"uid": uid}})
        for pod in items:
            self.handle("ADDED", pod)

    def handle(self, etype: str, pod: JSON) -> None:
        """Route one pod event (public for tests)."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if etype == "DELETED":
            self._requested.discard(uid)
            node = self._bound.pop(uid, node)
            if node in self.kubelets:
                self.kubelets[node].submit("DELETED", pod)
            return
        if not node:
            if uid not in self._requested and not meta.get("deletionTimestamp"):
                self._schedule(pod)
            return
        if node in self.kubelets:
            self._bound[uid] = node
            self.kubelets[node].submit(etype, pod)

    def _schedule(self, pod: JSON) -> None:
        counts = {name: 0 for name in self.order}
        for name in self._bound.values():
            if name in counts:
                counts[name] += 1
        target = min(self.order, key=lambda n: (counts[n], self.order.index(n)))
        meta = pod["metadata"]
        uid = str(meta["uid"])
        self._requested.add(uid)
        self._bound[uid] = target  # counted at once, so a burst spreads evenly
        try:
            self._bind(pod, target)
        except KubeError as exc:
            self._bound.pop(uid, None)
            self._requested.discard(uid)
            self._on_error(f"scheduling pod {meta['namespace']}/{meta['name']}: {exc}")

    def _set_node_name(self, pod: JSON, node: str) -> None:
        """The builtin API server's way of binding (it has no binding subresource)."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        self.client.merge_patch(path, {"spec": {"nodeName": node}})

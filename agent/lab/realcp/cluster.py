"""`lab up --control-plane real`: the lab process with upstream Kubernetes under it.

The order a kubeadm cluster with Flannel comes up in, squeezed into
namespaces (see docs/lab.md):

 1. the underlay and bare node namespaces (no cni0, no overlay: Flannel's job);
 2. a CA and certificates; etcd, kube-apiserver, then kube-controller-manager
    in the control-plane (underlay) namespace; kubectl reaches the API server
    through a relay on the host's 127.0.0.1;
 3. RBAC: Flannel's ClusterRole, deploy/base's ServiceAccount and ClusterRole;
    the upstream ClusterNetworkPolicy CRD (crds.py; Established before the agents);
 4. nodes register one at a time and get their podCIDR from node IPAM;
 5. flanneld on every node (waiting for its subnet file), kube-proxy on every node;
 6. the lab kubelets wire pods through the real CNI plugins and bind them
    through the binding subresource;
 7. `netpol-agent run` on every node with a TokenRequest token of its
    ServiceAccount.

Teardown runs in reverse; `lab down` removes whatever a crash left (every
process in the lab's namespaces, the namespaces, the state directory).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from agent.lab import topology
from agent.lab.agents import AgentSupervisor
from agent.lab.client import JSON, ApiClient, ApiStatusError
from agent.lab.daemon import READY_TIMEOUT, Lab
from agent.lab.kubelet import Kubelet
from agent.lab.netsock import ListenerServer
from agent.lab.realcp import (
    binaries,
    bootstrap,
    controlplane,
    crds,
    flannel,
    kubeconfigs,
    nodes,
    pki,
)
from agent.lab.realcp.cni import CniNetwork, link_plugins
from agent.lab.realcp.kubeproxy import kube_proxy
from agent.lab.realcp.procs import Programs
from agent.lab.relay import Relay
from agent.lab.scheduler import PodWatcher
from agent.lab.topology import API_IP, LabError

log = logging.getLogger("agent.lab.realcp")
API_READY_TIMEOUT = 120.0
FLANNEL_TIMEOUT = 60.0
CRD_TIMEOUT = 30.0
ADMIN_USER = "lab-admin"


class RealLab(Lab):
    """The lab process's job with a real control plane (the module docstring's steps)."""

    def start(self) -> dict[str, float]:
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        bins = binaries.find()
        crd_files = crds.find()
        root = self.paths.root
        topology.build(self.topo)
        self._stops.append(self._destroy_network)
        timings["network_s"] = time.monotonic() - t0

        programs = Programs(root, self.paths.logs)
        self._stops.append(programs.stop_all)
        self.programs = programs
        pkidir = root / "pki"
        ca = pki.make_ca(pkidir)
        files = controlplane.ControlPlaneFiles(
            ca=ca,
            apiserver=pki.issue(
                ca,
                "apiserver",
                common_name="kube-apiserver",
                sans=controlplane.API_SERVER_SANS,
            ),
            service_account=pki.service_account_keys(pkidir),
            controller_manager_kubeconfig=root / "kubeconfigs" / "controller-manager",
            etcd_dir=root / "etcd",
            controller_manager_dir=root / "controller-manager",
        )
        inside_url = f"https://127.0.0.1:{controlplane.API_PORT}"
        node_url = f"https://{API_IP}:{controlplane.API_PORT}"
        kubeconfigs.write(
            files.controller_manager_kubeconfig,
            kubeconfigs.kubeconfig(
                server=inside_url,
                ca_cert=ca.cert,
                user="system:kube-controller-manager",
                client=pki.issue(
                    ca, "controller-manager", common_name="system:kube-controller-manager"
                ),
            ),
        )
        netns = self.topo.net_netns
        programs.start(controlplane.etcd(bins, netns, files))
        programs.start(controlplane.apiserver(bins, netns, files))
        relay = Relay(
            netns=None,
            listen=("127.0.0.1", 0),
            target=("127.0.0.1", controlplane.API_PORT),
            target_netns=netns,
        )
        self._stops.append(relay.close)
        admin = pki.issue(ca, "admin", common_name=ADMIN_USER, organizations=("system:masters",))
        kubeconfigs.write(
            self.paths.kubeconfig,
            kubeconfigs.kubeconfig(
                server=f"https://127.0.0.1:{relay.port}", ca_cert=ca.cert, user=ADMIN_USER,
                client=admin,
            ),
        )  # fmt: skip
        client = ApiClient.from_kubeconfig(self.paths.kubeconfig)
        wait_ready(client, programs, "kube-apiserver", timeout=API_READY_TIMEOUT)
        timings["apiserver_s"] = time.monotonic() - t0
        programs.start(controlplane.controller_manager(bins, netns, files))
        crd_names = crds.install(client, crd_files)

        bootstrap.apply_all(client, flannel.rbac() + bootstrap.agent_objects())
        for node in self.topo.nodes:
            nodes.register(client, node, timeout=60.0)
        timings["nodes_s"] = time.monotonic() - t0
        token = bootstrap.request_token(client)
        kubeconfigs.write(
            self.paths.node_kubeconfig,
            kubeconfigs.kubeconfig(
                server=node_url, ca_cert=ca.cert, user="netpol-agent", token=token
            ),
        )

        net_conf = flannel.write_net_conf(root / "flannel" / "net-conf.json")
        flannel_kubeconfig = kubeconfigs.write(
            root / "kubeconfigs" / "flannel",
            kubeconfigs.kubeconfig(
                server=node_url, ca_cert=ca.cert, user=flannel.USER,
                client=pki.issue(ca, "flannel", common_name=flannel.USER),
            ),
        )  # fmt: skip
        proxy_kubeconfig = kubeconfigs.write(
            root / "kubeconfigs" / "kube-proxy",
            kubeconfigs.kubeconfig(
                server=node_url, ca_cert=ca.cert, user="system:kube-proxy",
                client=pki.issue(ca, "kube-proxy", common_name="system:kube-proxy"),
            ),
        )  # fmt: skip
        node_files = {n.name: flannel.NodeFiles.of(root, n) for n in self.topo.nodes}
        for node in self.topo.nodes:
            programs.start(
                flannel.flanneld(
                    bins, node, kubeconfig=flannel_kubeconfig, net_conf=net_conf,
                    files=node_files[node.name],
                )
            )  # fmt: skip
        for node in self.topo.nodes:
            programs.start(kube_proxy(bins, node, kubeconfig=proxy_kubeconfig))
        for node in self.topo.nodes:
            wait_subnet_file(node_files[node.name].subnet_file, programs, f"flanneld-{node.name}")
        timings["flannel_s"] = time.monotonic() - t0

        cni_path = link_plugins(bins, root / "cni-bin")
        listeners = ListenerServer()
        self._stops.append(listeners.close)
        kubelets = {
            n.name: Kubelet(
                topo=self.topo,
                node=n,
                client=client,
                listeners=listeners,
                on_error=self._error,
                network=CniNetwork(node=n, files=node_files[n.name], cni_path=cni_path),
                on_deleting=lambda pod: finish_deletion(client, pod),
            )
            for n in self.topo.nodes
        }
        for kubelet in kubelets.values():
            self._stops.append(kubelet.stop)
        watcher = PodWatcher(
            client=client,
            kubelets=kubelets,
            order=[n.name for n in self.topo.nodes],
            on_error=self._error,
            bind=lambda pod, node: bind(client, pod, node),
        )
        watcher.start()
        self._stops.append(watcher.stop)

        crds.wait_established(client, crd_names, timeout=CRD_TIMEOUT)
        timings["crds_s"] = time.monotonic() - t0
        if self.config.agents:
            supervisor = AgentSupervisor(config=self.config, topo=self.topo, paths=self.paths)
            supervisor.start()
            self._stops.append(supervisor.stop)
            self._wait_agents(supervisor, timeout=READY_TIMEOUT)
        timings["ready_s"] = time.monotonic() - t0
        return timings


def wait_ready(client: ApiClient, programs: Programs, name: str, *, timeout: float) -> None:
    """Until GET /readyz answers 200; a dead or silent API server names its log."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            if client.text("GET", "/readyz").strip() == "ok":
                return
        except Exception as exc:  # connection refused, TLS not up yet, 500 while starting
            last = str(exc)
        code = programs.exited(name)
        if code is not None or time.monotonic() > deadline:
            why = f"exited with {code}" if code is not None else f"not ready in {timeout:g}s"
            raise LabError(
                f"{name} {why} ({last}); last lines of {programs.log_path(name)}:\n"
                + tail(programs.log_path(name))
            )
        time.sleep(0.25)


def wait_subnet_file(path: Path, programs: Programs, name: str) -> None:
    deadline = time.monotonic() + FLANNEL_TIMEOUT
    while not flannel.read_subnet_file(path).get("FLANNEL_SUBNET"):
        code = programs.exited(name)
        if code is not None or time.monotonic() > deadline:
            why = f"exited with {code}" if code is not None else "wrote no subnet file"
            raise LabError(
                f"{name} {why} ({path}); last lines of {programs.log_path(name)}:\n"
                + tail(programs.log_path(name))
            )
        time.sleep(0.1)


def bind(client: ApiClient, pod: JSON, node: str) -> None:
    """POST pods/<name>/binding: how a scheduler assigns a pod to a node."""
    meta = pod["metadata"]
    client.create(
        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        },
    )


def finish_deletion(client: ApiClient, pod: JSON) -> None:
    """The kubelet's last word on a gracefully deleted pod: DELETE with grace period 0."""
    meta = pod["metadata"]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": meta["uid"]},
    }
    try:
        client.request(
            "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body
        )
    except ApiStatusError as exc:
        if exc.status not in (404, 409):  # gone already, or a new pod of that name
            raise


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return str(exc)

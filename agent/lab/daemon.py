"""The lab process: what `lab up` leaves running in the background.

One process holds the whole control plane of a lab: the API server (on
127.0.0.1 for kubectl, relayed to 172.18.0.1:6443 inside the underlay
namespace for the nodes), the Node objects, one kubelet per node fed by one pod
watch, and the node agents (`netpol-agent run` inside each node namespace). It
writes `ready` into the state directory once every agent answers /statusz as
ready, and tears everything down on SIGTERM (what `lab down` sends).

Run as `python -m agent.lab.daemon --config <state dir>/lab.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from agent.lab import topology
from agent.lab.agents import AgentSupervisor
from agent.lab.apiserver import ApiServer
from agent.lab.client import ApiClient, ApiStatusError
from agent.lab.kubelet import Kubelet
from agent.lab.netsock import ListenerServer
from agent.lab.probe import agent_states
from agent.lab.prometheus import LabPrometheus
from agent.lab.relay import Relay
from agent.lab.scheduler import PodWatcher
from agent.lab.state import LabConfig, LabPaths, read_json, write_json, write_pid
from agent.lab.topology import API_IP, LabError, Topology

log = logging.getLogger("agent.lab")
NODE_API_PORT = 6443
READY_TIMEOUT = 60.0


def node_object(topo: Topology, node: topology.NodeSpec) -> dict[str, object]:
    cidrs = [node.pod_cidr, node.pod_cidr6] if topo.ipv6 else [node.pod_cidr]
    addresses = [{"type": "InternalIP", "address": node.ip}]
    if topo.ipv6:
        addresses.append({"type": "InternalIP", "address": node.ip6})
    addresses.append({"type": "Hostname", "address": node.name})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": topology.node_labels(node),
            "annotations": {"flannel.alpha.coreos.com/public-ip": node.ip},
        },
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.31.0-lab", "operatingSystem": "linux"},
        },
    }


def write_kubeconfigs(server: ApiServer, paths: LabPaths) -> None:
    """kubeconfig for the host (127.0.0.1) and kubeconfig-nodes for the agents.

    The agents reach the server through the underlay at 172.18.0.1:6443; the
    serving certificate names 127.0.0.1 and localhost, so their kubeconfig
    says `tls-server-name: localhost` (a standard kubeconfig field) and TLS is
    verified as usual.
    """
    server.write_kubeconfig(paths.kubeconfig)
    config = server.kubeconfig()
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://{API_IP}:{NODE_API_PORT}"
        entry["cluster"]["tls-server-name"] = "localhost"
    paths.node_kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
    paths.node_kubeconfig.chmod(0o600)


class Lab:
    def __init__(self, config: LabConfig, paths: LabPaths) -> None:
        self.config = config
        self.paths = paths
        self.topo = config.topology()
        self.errors: list[str] = []
        self._stops: list[Callable[[], None]] = []

    def _error(self, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)

    def start(self) -> dict[str, float]:
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        topology.build(self.topo)
        self._stops.append(self._destroy_network)
        timings["network_s"] = time.monotonic() - t0

        server = ApiServer(host="127.0.0.1", tls_enabled=True, cert_dir=self.paths.root / "pki")
        server.start()
        self._stops.append(server.stop)
        relay = Relay(
            netns=self.topo.net_netns,
            listen=(API_IP, NODE_API_PORT),
            target=(server.host, server.port),
        )
        self._stops.append(relay.close)
        write_kubeconfigs(server, self.paths)
        client = ApiClient.from_kubeconfig(self.paths.kubeconfig)
        for node in self.topo.nodes:
            obj = node_object(self.topo, node)
            client.create("/api/v1/nodes", obj)
            try:
                client.merge_patch(f"/api/v1/nodes/{node.name}/status", {"status": obj["status"]})
            except ApiStatusError as exc:
                log.info("node status subresource: %s", exc)
        timings["api_s"] = time.monotonic() - t0

        listeners = ListenerServer()
        self._stops.append(listeners.close)
        kubelets = {
            n.name: Kubelet(
                topo=self.topo, node=n, client=client, listeners=listeners, on_error=self._error
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
        )
        watcher.start()
        self._stops.append(watcher.stop)

        if self.config.agents:
            supervisor = AgentSupervisor(config=self.config, topo=self.topo, paths=self.paths)
            supervisor.start()
            self._stops.append(supervisor.stop)
            self._wait_agents(supervisor, timeout=READY_TIMEOUT)
        if self.config.prometheus:
            prom = LabPrometheus(
                topo=self.topo,
                paths=self.paths,
                interval=self.config.prometheus_interval,
                alert_for=self.config.alert_for,
            )
            self._stops.append(prom.stop)
            prom.start()
        timings["ready_s"] = time.monotonic() - t0
        return timings

    def _wait_agents(self, supervisor: AgentSupervisor, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = agent_states(self.topo)
            waiting = {n: s for n, s in states.items() if isinstance(s, str) or not s.get("ready")}
            if not waiting:
                return
            exited = supervisor.exited()
            if exited or time.monotonic() > deadline:
                why = "; ".join(
                    f"{n}: exited {exited[n]}" if n in exited else f"{n}: {s!s:.200}"
                    for n, s in sorted(waiting.items())
                )
                logs = [self.paths.agent_log(n) for n in sorted(waiting)]
                tails = "".join(f"\n--- last lines of {p}:\n{_tail(p)}" for p in logs)
                raise LabError(f"node agents not ready: {why}{tails}")
            time.sleep(0.1)

    def _destroy_network(self) -> None:
        topology.destroy(self.topo.name)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep tearing down the rest
                log.warning("teardown: %s", exc)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.lab.daemon")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    paths = LabPaths(args.state_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data = read_json(paths.config)
    if data is None:
        print(f"no lab config at {paths.config}", file=sys.stderr)
        return 2
    config = LabConfig.from_json(data)
    write_pid(paths.daemon_pid, _own_pid())
    stop = threading.Event()
    started = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if not started.is_set():  # abort a start in progress; `finally` tears down
            raise SystemExit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lab = Lab(config, paths)
    if config.control_plane == "real":
        from agent.lab.realcp.cluster import RealLab  # upstream programs: agent/lab/realcp

        lab = RealLab(config, paths)
    try:
        timings = lab.start()
        started.set()
        write_json(paths.ready, {"timings": timings, "errors": lab.errors})
        log.info("lab %s ready: %s", config.name, timings)
        stop.wait()
        log.info("lab %s stopping", config.name)
        return 0
    except Exception as exc:
        log.error("lab %s failed: %s", config.name, exc)
        write_json(paths.root / "failed", {"error": str(exc)})
        return 1
    finally:
        lab.stop()
        paths.daemon_pid.unlink(missing_ok=True)


def _own_pid() -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    raise SystemExit(main())

"""Runs the real `netpol-agent run` inside every node namespace, like a DaemonSet would.

Each agent is `ip netns exec <node ns> python -m agent run ...` (the exec keeps
the pid, so the pid file names the agent itself) with the node kubeconfig
pointing at the API server over the underlay and its metrics on the node's
underlay address, port 9847, where `lab probe` reads /statusz. A monitor thread
restarts an agent that exits, with backoff, as the kubelet would restart the
DaemonSet's container; every start is logged to logs/agent-<node>.log.

With `--image`, each agent is instead the DaemonSet's container from that
image, run by podman in the foreground and joined to the node's namespace,
with the settings of the deploy/ manifest (agent/lab/container.py translates
them, and refuses what it cannot honour).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.errors import InputError
from agent.lab import container
from agent.lab.state import LabConfig, LabPaths, write_pid
from agent.lab.topology import NodeSpec, Topology

log = logging.getLogger(__name__)
METRICS_PORT = 9847


def agent_command(
    *, config: LabConfig, node: NodeSpec, paths: LabPaths, python: str = sys.executable
) -> list[str]:
    return [
        "ip",
        "netns",
        "exec",
        node.netns,
        python,
        "-m",
        "agent",
        "run",
        "--node-name",
        node.name,
        "--kubeconfig",
        str(paths.node_kubeconfig),
        "--backend",
        config.backend,
        "--metrics-bind-address",
        f"{node.ip}:{METRICS_PORT}",
        "--log-format",
        "json",
        *config.agent_args,
    ]


def default_manifest() -> Path:
    """deploy/base of the source tree this package runs from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "base"


def daemonset_pod_spec(manifest: str | None) -> dict[str, Any]:
    """The DaemonSet's pod spec from a rendered YAML file or a kustomization directory."""
    path = Path(manifest) if manifest else default_manifest()
    if path.is_dir():
        text = container.render_kustomization(path)
    elif path.is_file():
        text = path.read_text()
    else:
        raise InputError(f"--manifest {path}: no such file or directory (needed by --image)")
    return container.pod_spec_from_yaml(text)


def container_name(config: LabConfig, node: str) -> str:
    return f"npa-lab-{config.name}-{node}"


@dataclass
class _Agent:
    node: NodeSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    exits: list[int] = field(default_factory=list)


class AgentSupervisor:
    def __init__(self, *, config: LabConfig, topo: Topology, paths: LabPaths) -> None:
        self.config = config
        self.paths = paths
        self._agents = {n.name: _Agent(n) for n in topo.nodes}
        self._pod_spec = daemonset_pod_spec(config.manifest) if config.image else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="lab-agents", daemon=True)

    def start(self) -> None:
        with self._lock:
            for agent in self._agents.values():
                self._spawn(agent)
        self._thread.start()

    def _command(self, node: NodeSpec) -> tuple[list[str], dict[str, str]]:
        if self._pod_spec is None or self.config.image is None:
            argv = agent_command(config=self.config, node=node, paths=self.paths)
            return argv, {**os.environ, "NODE_NAME": node.name, "PYTHONUNBUFFERED": "1"}
        extra = {"NETPOL_BACKEND": self.config.backend} if self.config.backend != "auto" else {}
        plan = container.plan_agent_container(
            pod_spec=self._pod_spec,
            image=self.config.image,
            netns=node.netns,
            kubeconfig=self.paths.node_kubeconfig,
            node_name=node.name,
            node_ip=node.ip,
            name=container_name(self.config, node.name),
            extra_env=extra,
        )
        container.prepare_host(plan)
        return list(plan.argv), container.podman_environ(self.paths.containers_conf)

    def _spawn(self, agent: _Agent) -> None:
        argv, env = self._command(agent.node)
        logfile = self.paths.agent_log(agent.node.name)
        with logfile.open("ab") as out:
            out.write(f"--- lab: starting {' '.join(argv)}\n".encode())
            out.flush()
            agent.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )
        write_pid(self.paths.agent_pid(agent.node.name), agent.proc.pid)

    def exited(self) -> dict[str, list[int]]:
        """Exit codes seen per node so far (an empty dict while all run)."""
        with self._lock:
            return {name: list(a.exits) for name, a in self._agents.items() if a.exits}

    def restarts(self) -> dict[str, int]:
        with self._lock:
            return {name: a.restarts for name, a in self._agents.items()}

    def _monitor(self) -> None:
        while not self._stop.wait(0.3):
            with self._lock:
                for agent in self._agents.values():
                    self._check(agent)

    def _check(self, agent: _Agent) -> None:
        now = time.monotonic()
        if agent.proc is not None:
            code = agent.proc.poll()
            if code is None:
                return
            agent.exits.append(code)
            agent.proc = None
            delay = min(10.0, 0.5 * 2 ** min(agent.restarts, 5))
            agent.next_start = now + delay
            log.warning(
                "agent on %s exited with %s; restarting in %.1fs", agent.node.name, code, delay
            )
        elif now >= agent.next_start and not self._stop.is_set():
            agent.restarts += 1
            self._spawn(agent)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with self._lock:
            procs = [a.proc for a in self._agents.values() if a.proc is not None]
            if self.config.image:
                for name in self._agents:
                    stop_container(self.config, self.paths, name)
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for agent in self._agents.values():
                self.paths.agent_pid(agent.node.name).unlink(missing_ok=True)


def stop_container(config: LabConfig, paths: LabPaths, node: str) -> None:
    """Stop and remove a node's agent container (nothing if it is not there)."""
    name = container_name(config, node)
    try:
        container.stop(name, conf=paths.containers_conf, timeout=5)
        container.remove(name, conf=paths.containers_conf)
    except container.ContainerError as exc:
        log.warning("container %s: %s", name, exc)

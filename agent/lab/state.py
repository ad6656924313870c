"""Where a lab keeps its files, and the lab's configuration as one value.

    /run/netpol-agent/lab/<name>/
        lab.json            LabConfig plus the API server URLs (written by the daemon)
        ready               present once the daemon finished starting (JSON timings)
        daemon.pid          "<pid> <start time>" of the lab process
        agent-<node>.pid    the same for each node agent
        kubeconfig          for the host: http://127.0.0.1:<port> (what `lab kubeconfig` prints)
        kubeconfig-nodes    for agents inside node namespaces: http://172.18.0.1:6443
        logs/lab.log, logs/agent-<node>.log

Pid files carry the process start time so that a recycled pid is never
signalled: `alive_pid` only answers for the process that wrote the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.core.errors import InputError
from agent.lab.topology import FLANNELD, Topology, plan
from agent.sandbox import processes

DEFAULT_ROOT = Path("/run/netpol-agent/lab")
DEFAULT_NAME = "default"
BACKENDS = ("auto", "nft", "legacy", "python-iptables")
CONTROL_PLANES = ("builtin", "real")


@dataclass(frozen=True, slots=True)
class LabConfig:
    name: str = DEFAULT_NAME
    nodes: int = 2
    ipv6: bool = False
    overlay: str = "vxlan"
    backend: str = "auto"
    agents: bool = True
    agent_args: tuple[str, ...] = ()
    image: str | None = None  # run each agent as this container image (podman)
    manifest: str | None = None  # the DaemonSet (YAML file or kustomization dir) for --image
    prometheus: bool = False  # a real Prometheus scraping the agents (agent.lab.prometheus)
    prometheus_interval: float = 1.0  # its scrape and rule evaluation interval, seconds
    alert_for: str = ""  # replaces every alert's `for:` (e.g. 5s); "" keeps the manifest's
    control_plane: str = "builtin"  # "real": upstream binaries (agent/lab/realcp)

    def topology(self) -> Topology:
        if self.control_plane not in CONTROL_PLANES:
            raise InputError(f"--control-plane {self.control_plane!r}: use builtin or real")
        if self.control_plane == "real":
            if self.ipv6 or self.overlay != "vxlan":
                raise InputError(
                    "--control-plane real runs Flannel's IPv4 VXLAN backend: "
                    "--ipv6 and --overlay host-gw need the builtin control plane"
                )
            return plan(self.name, nodes=self.nodes, overlay=FLANNELD)
        return plan(self.name, nodes=self.nodes, ipv6=self.ipv6, overlay=self.overlay)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["agent_args"] = list(self.agent_args)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabConfig:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["agent_args"] = tuple(fields.get("agent_args", ()))
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class LabPaths:
    root: Path

    @classmethod
    def of(cls, name: str, base: Path = DEFAULT_ROOT) -> LabPaths:
        return cls(base / name)

    @property
    def config(self) -> Path:
        return self.root / "lab.json"

    @property
    def ready(self) -> Path:
        return self.root / "ready"

    @property
    def daemon_pid(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def node_kubeconfig(self) -> Path:
        return self.root / "kubeconfig-nodes"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def agent_pid(self, node: str) -> Path:
        return self.root / f"agent-{node}.pid"

    def agent_log(self, node: str) -> Path:
        return self.logs / f"agent-{node}.log"

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def lab_log(self) -> Path:
        return self.logs / "lab.log"


def write_pid(path: Path, pid: int) -> None:
    path.write_text(processes.record(pid))


def alive_pid(path: Path) -> int | None:
    """The pid recorded in `path` if that very process still runs."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return processes.alive(text)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return None


def kubeconfig_text(server: str, *, cluster: str) -> str:
    """A kubeconfig (JSON is valid YAML) for a plain-HTTP lab API server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server}}],
        "users": [{"name": "lab-admin", "user": {"token": "lab"}}],
        "contexts": [
            {
                "name": cluster,
                "context": {"cluster": cluster, "user": "lab-admin", "namespace": "default"},
            }
        ],
        "current-context": cluster,
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"

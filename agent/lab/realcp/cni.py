"""Pods wired by the real CNI plugins, with exactly Flannel's network configuration.

The conflist is kube-flannel.yml's `cni-conf.json`: the `flannel` meta-plugin
(delegating to `bridge` with hairpin mode and the pod's default gateway, and
to `host-local` for addresses from the node's Flannel subnet) followed by
`portmap`. The only additions are per-node paths -- flannel's `subnetFile`
and `dataDir` and host-local's `dataDir` -- so that two lab nodes on one
machine never share a file.

`CniNetwork` plays the container runtime's part of the CNI protocol (as
libcni does): it runs each plugin of the list in order with
CNI_COMMAND=ADD, the pod's namespace as CNI_NETNS and the previous plugin's
result as `prevResult`, and DEL in reverse order. The plugins run inside the
node's namespace, so cni0 and the veths appear there and nowhere else.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.lab.realcp.binaries import Binaries
from agent.lab.realcp.flannel import NodeFiles
from agent.lab.topology import NETNS_DIR, LabError, NodeSpec

CNI_VERSION = "0.3.1"
IFNAME = "eth0"
FLANNEL_CONFLIST: dict[str, Any] = {
    "name": "cbr0",
    "cniVersion": CNI_VERSION,
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def node_conflist(files: NodeFiles) -> dict[str, Any]:
    """Flannel's conflist with this node's private subnet file and data directories."""
    conf = copy.deepcopy(FLANNEL_CONFLIST)
    flannel = conf["plugins"][0]
    flannel["subnetFile"] = str(files.subnet_file)
    flannel["dataDir"] = str(files.cni_dir / "flannel")
    flannel["ipam"] = {"dataDir": str(files.cni_dir / "host-local")}
    return conf


def link_plugins(bins: Binaries, directory: Path) -> Path:
    """A CNI_PATH directory holding exactly the plugins the conflist names."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, binary in bins.cni_plugins().items():
        link = directory / name
        link.unlink(missing_ok=True)
        link.symlink_to(binary)
    return directory


def container_id(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PodAddresses:
    ips: tuple[str, ...]


class CniNetwork:
    """One node's pod networking through the CNI plugins (see the module docstring)."""

    def __init__(self, *, node: NodeSpec, files: NodeFiles, cni_path: Path) -> None:
        self.node = node
        self.files = files
        self.cni_path = cni_path
        self.conflist = node_conflist(files)
        self._results: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, uid: str, netns: str) -> tuple[str, ...]:
        """ADD through every plugin; returns the pod's addresses."""
        prev: dict[str, Any] | None = None
        done: list[dict[str, Any]] = []
        try:
            for plugin in self.conflist["plugins"]:
                prev = self._run("ADD", plugin, uid, netns, prev)
                done.append(plugin)
        except LabError:
            for plugin in reversed(done):
                self._run("DEL", plugin, uid, netns, prev, check=False)
            raise
        assert prev is not None
        with self._lock:
            self._results[uid] = prev
        ips = tuple(str(ip["address"]).split("/")[0] for ip in prev.get("ips") or [])
        if not ips:
            raise LabError(f"CNI ADD for pod {uid} on {self.node.name} returned no address")
        return ips

    def delete(self, uid: str, netns: str) -> None:
        """DEL through every plugin in reverse order (errors are logged by the caller)."""
        with self._lock:
            prev = self._results.pop(uid, None)
        for plugin in reversed(self.conflist["plugins"]):
            self._run("DEL", plugin, uid, netns, prev, check=False)

    def _run(
        self,
        command: str,
        plugin: dict[str, Any],
        uid: str,
        netns: str,
        prev: dict[str, Any] | None,
        *,
        check: bool = True,
    ) -> dict[str, Any]:
        conf = {**plugin, "name": self.conflist["name"], "cniVersion": self.conflist["cniVersion"]}
        if prev is not None:
            conf["prevResult"] = prev
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id(uid),
            "CNI_NETNS": f"{NETNS_DIR}/{netns}",
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": str(self.cni_path),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        binary = str(self.cni_path / str(plugin["type"]))
        try:
            proc = subprocess.run(
                ["ip", "netns", "exec", self.node.netns, binary],
                input=json.dumps(conf),
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LabError(f"CNI {command} {plugin['type']} on {self.node.name}: {exc}") from exc
        if proc.returncode != 0 and check:
            raise LabError(
                f"CNI {command} {plugin['type']} on {self.node.name} failed: "
                f"{_cni_error(proc.stdout) or proc.stderr.strip()[-500:]}"
            )
        if command != "ADD" or proc.returncode != 0:
            return prev or {}
        try:
            result: dict[str, Any] = json.loads(proc.stdout)
        except ValueError as exc:
            raise LabError(f"CNI ADD {plugin['type']}: unreadable result {proc.stdout!r}") from exc
        return result


def _cni_error(stdout: str) -> str:
    try:
        err = json.loads(stdout)
    except ValueError:
        return ""
    if not isinstance(err, dict):
        return ""
    return " ".join(str(err.get(k, "")) for k in ("msg", "details")).strip()

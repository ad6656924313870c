"""One real-control-plane lab for every test of this package (`--control-plane real`).

The lab (2 nodes: etcd, kube-apiserver, kube-controller-manager, flanneld,
kube-proxy, the real CNI plugins and `netpol-agent run` on each node) is
started once, before the first test, after recording the host's network
state; `test_z_down.py` takes it down and checks that nothing is left and the
host's iptables, ipsets, links, routes and conntrack settings are unchanged.
Test files run in name order, the destructive ones (API server restart, RBAC
changes) last.

The upstream programs come from `scripts/build-kubernetes` (scripts/test runs
it first); when they are missing the tests fail with the message naming it:
they never skip.
"""

from __future__ import annotations

import http.client
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.core.model import Family, Protocol
from agent.lab import lifecycle
from agent.lab.client import ApiClient, ApiStatusError, resource_path
from agent.lab.netsock import open_socket
from agent.lab.realcp import binaries
from agent.lab.state import LabConfig
from agent.lab.topology import NodeSpec
from tests.lab.conftest import RunningLab

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

HOST_SAVE_TOOLS = (
    "iptables-legacy-save",
    "iptables-nft-save",
    "ip6tables-legacy-save",
    "ip6tables-nft-save",
)
HOST_FILES = (
    "/proc/sys/net/netfilter/nf_conntrack_max",
    "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established",
    "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "/proc/sys/net/netfilter/nf_conntrack_udp_timeout",
    "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream",
    "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal",
    "/sys/module/nf_conntrack/parameters/hashsize",
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/all/route_localnet",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
)


def _run(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"<{exc}>"
    return proc.stdout


def host_network_state() -> dict[str, str]:
    """What a lab must never change in the host's own namespace (counters left out)."""
    out: dict[str, str] = {}
    for tool in HOST_SAVE_TOOLS:
        lines = _run([tool]).splitlines()
        out[tool] = "\n".join(
            re.sub(r"\[\d+:\d+\]", "", line) for line in lines if not line.startswith("#")
        )
    out["ipset list -n"] = _run(["ipset", "list", "-n"])
    out["links"] = "\n".join(
        " ".join(line.split()[1:3]) for line in _run(["ip", "-o", "link", "show"]).splitlines()
    )
    out["addresses"] = re.sub(
        r"valid_lft \S+ preferred_lft \S+", "", _run(["ip", "-o", "addr", "show"])
    )
    out["routes"] = _run(["ip", "route", "show", "table", "all"])
    for path in HOST_FILES:
        try:
            out[path] = Path(path).read_text()
        except OSError as exc:
            out[path] = f"<{exc.strerror}>"
    return out


@dataclass
class RealCluster(RunningLab):
    """The running lab plus the helpers the real-control-plane tests share."""

    host_before: dict[str, str] = field(default_factory=dict)
    bins: binaries.Binaries | None = None

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bins is not None
        proc = subprocess.run(
            [self.bins.path("kubectl"), f"--kubeconfig={self.paths.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc

    def remove(self, objects: Sequence[dict[str, Any]], *, timeout: float = 30.0) -> None:
        """Delete every object but namespaces and wait until they are gone (pods are
        deleted gracefully: the lab kubelet tears them down and finishes the deletion)."""
        client = self.client
        doomed = []
        for obj in reversed(objects):
            if obj.get("kind") == "Namespace":
                continue
            collection, name = resource_path(obj)
            try:
                client.delete(f"{collection}/{name}")
                doomed.append(f"{collection}/{name}")
            except ApiStatusError as exc:
                if exc.status != 404:
                    raise
        deadline = time.monotonic() + timeout
        for path in doomed:
            while True:
                try:
                    client.get(path)
                except ApiStatusError as exc:
                    if exc.status == 404:
                        break
                    raise
                assert time.monotonic() < deadline, f"{path} still there after {timeout:g}s"
                time.sleep(0.05)

    def node_http(self, node: NodeSpec, path: str, port: int = 9847) -> str:
        """GET http://<node ip>:<port><path> from the underlay namespace."""
        sock = open_socket(self.topo.net_netns, Family.V4, Protocol.TCP)
        try:
            sock.settimeout(5)
            sock.connect((node.ip, port))
            conn = http.client.HTTPConnection(node.ip, port, timeout=5)
            conn.sock = sock
            conn.request("GET", path)
            resp = conn.getresponse()
            return f"{resp.status} {resp.read().decode()}"
        finally:
            sock.close()

    def metric(self, node: NodeSpec, name: str, **labels: str) -> float:
        """The sum of the agent's samples of `name` whose labels include `labels`."""
        text = self.node_http(node, "/metrics").split(" ", 1)[1]
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def netns_exec(self, netns: str, *argv: str) -> str:
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"{' '.join(argv)} in {netns}: {proc.stderr}"
        return proc.stdout

    def down(self) -> lifecycle.DownReport:
        return lifecycle.down(self.config.name, base=self.base)


def wait_running(
    client: ApiClient, namespace: str, names: Sequence[str], timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """The pods once every one of them is Running with an IP."""
    deadline = time.monotonic() + timeout
    while True:
        pods = {
            p["metadata"]["name"]: p for p in client.list(f"/api/v1/namespaces/{namespace}/pods")[0]
        }
        ready = {
            n: pods[n]
            for n in names
            if n in pods
            and (pods[n].get("status") or {}).get("podIP")
            and pods[n]["status"].get("phase") == "Running"
        }
        if len(ready) == len(names):
            return ready
        assert time.monotonic() < deadline, f"pods not running: {sorted(set(names) - set(ready))}"
        time.sleep(0.1)


@pytest.fixture(scope="package")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    bins = binaries.find()  # fails (not skips) naming scripts/build-kubernetes
    base = tmp_path_factory.mktemp("realcp")
    config = LabConfig(name=f"r{secrets.token_hex(4)}", nodes=2, control_plane="real")
    before = host_network_state()
    try:
        started = time.monotonic()
        paths = lifecycle.up(config, base=base, timeout=240)
        print(f"\nreal-control-plane lab up in {time.monotonic() - started:.1f}s")
        yield RealCluster(config, paths, base, host_before=before, bins=bins)
    finally:
        lifecycle.down(config.name, base=base)

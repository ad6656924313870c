"""Issue 14 through a two-node lab with the real agents: `lab exec`, revocation of
established flows a new policy forbids, and the hold on new pods.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.core.model import Family, Protocol
from agent.lab import probe as lab_probe
from agent.lab.netsock import open_socket
from tests.lab.conftest import RunningLab
from tests.lab.flows import Flows, largest_gap, results, stop, stop_time
from tests.lab.podspecs import pod_dict
from tests.lab.test_lab import policy

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(key: str, node: str, *ports: tuple[int, str], **labels: str) -> dict[str, Any]:
    out = pod_dict(key, node=node, labels=labels or None, ports=ports or ((80, "TCP"),))
    del out["metadata"]["uid"]
    return out


def lab_cli(lab: RunningLab, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "lab",
            *argv[:1],
            "--name",
            lab.config.name,
            "--state-dir",
            str(lab.base),
            *argv[1:],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_lab_exec_runs_inside_the_pod_with_its_exit_code(lab: RunningLab) -> None:
    lab.apply([ns("wx"), pod("wx/a", "node-0"), pod("wx/b", "node-1")])
    lab_probe.settled_snapshot(lab.client, lab.topo, timeout=20)
    pods, _ = lab.client.list("/api/v1/namespaces/wx/pods")
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    out = lab_cli(lab, "exec", "-n", "wx", "a", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert out.returncode == 0, out.stderr
    assert f"inet {ips['a']}/" in out.stdout
    out = lab_cli(lab, "exec", "-n", "wx", "b", "--", "sh", "-c", "exit 7")
    assert out.returncode == 7
    out = lab_cli(lab, "exec", "-n", "wx", "nope", "--", "true")
    assert out.returncode == 1
    assert "pod wx/nope not found" in out.stderr
    assert "Traceback" not in out.stderr


def pod_ips(lab: RunningLab, namespace: str) -> dict[str, str]:
    pods, _ = lab.client.list(f"/api/v1/namespaces/{namespace}/pods")
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}


SERVER_ONLY_FROM_B = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "only-b", "namespace": "rv"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "b"}}}]}],
    },
}


def revocation_cluster(lab: RunningLab) -> tuple[Flows, subprocess.Popen[str], str]:
    """rv/server (node-0) serving TCP and UDP echo on 7000, rv/a (node-1), rv/b (node-0):
    the flows helper, the server process, and the server's address:port."""
    lab.apply(
        [
            ns("rv"),
            pod("rv/server", "node-0", app="server"),
            pod("rv/a", "node-1", role="a"),
            pod("rv/b", "node-0", role="b"),
        ]
    )
    lab_probe.settled_snapshot(lab.client, lab.topo, timeout=20)
    flows = Flows(lab.config.name, lab.base)
    return flows, flows.serve("rv", "server", 7000), f"{pod_ips(lab, 'rv')['server']}:7000"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_a_policy_applied_with_kubectl_cuts_established_flows_within_a_second(
    lab: RunningLab, tmp_path: Path
) -> None:
    flows, server, target = revocation_cluster(lab)
    procs = [server]
    try:
        cut = flows.stream("rv", "a", tcp=target, udp=target, seconds=4.0)
        kept = flows.stream("rv", "b", tcp=target, seconds=4.0)
        procs += [cut, kept]
        time.sleep(1.5)
        manifest = tmp_path / "policy.json"
        manifest.write_text(json.dumps(SERVER_ONLY_FROM_B))
        written = time.time()
        subprocess.run(
            ["kubectl", "--kubeconfig", str(lab.paths.kubeconfig), "apply", "-f", str(manifest)],
            check=True,
            capture_output=True,
        )
        cut_flows, kept_flows = results(cut), results(kept)
    finally:
        for proc in procs:
            stop(proc)
        lab.delete([SERVER_ONLY_FROM_B])
    for name in ("tcp", "udp"):
        records = cut_flows[name]
        lost = [r for r in records if r[1] < written - 0.5 and r[2] is None]
        assert not lost, f"{name} lost messages before the policy: {lost[:3]}"
        stopped = stop_time(records)
        assert stopped is not None, f"{name} flow from a was never cut"
        assert stopped - written < 1.0, f"{name} flow stopped {stopped - written:.3f}s after"
    allowed = kept_flows["tcp"]
    assert all(r[2] is not None for r in allowed), "the allowed flow lost messages"
    assert largest_gap(allowed) < 0.5, f"the allowed flow stalled {largest_gap(allowed):.3f}s"


class Hammer:
    """Opens TCP connections from a pod's namespace to one address every few ms, from
    before the destination exists; remembers when each attempt that connected started."""

    def __init__(self, netns: str, address: str, port: int = 80) -> None:
        self.netns, self.address, self.port = netns, address, port
        self.connected: list[float] = []
        self.attempts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            sock = open_socket(self.netns, Family.V4, Protocol.TCP)
            sock.settimeout(0.05)
            started = time.time()
            try:
                if sock.connect_ex((self.address, self.port)) == 0:
                    self.connected.append(started)
            except OSError:
                pass
            finally:
                sock.close()
            self.attempts += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_a_new_pod_is_unreachable_until_the_agent_programmed_it(lab: RunningLab) -> None:
    """The new pod's network is up 0.5 s before the kubelet reports its IP (as a real
    kubelet does); a friend allowed by policy and a stranger hammer its predictable
    address from the start. Nothing connects before the agent's sync that programs the
    pod; the friend connects right after it, the stranger never."""
    lab.apply(
        [
            ns("hd"),
            policy("hd", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            policy(
                "hd",
                "from-friends",
                {
                    "podSelector": {"matchLabels": {"app": "new"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}]}],
                },
            ),
            pod("hd/friend", "node-1", role="friend"),
            pod("hd/stranger", "node-1", role="stranger"),
        ]
    )
    snap = lab_probe.settled_snapshot(lab.client, lab.topo, timeout=20)
    lab_probe.wait_converged(lab.topo, snap.resource_version, timeout=20)
    node0 = lab.topo.node("node-0")
    used = {p.ips[0] for p in snap.state.pods.values() if p.node == "node-0" and p.ips}
    slot = next(i for i in range(240) if node0.pod_ip(i) not in used)
    address = node0.pod_ip(slot)  # the lab kubelet takes the lowest free slot
    netns = {p.name: lab_probe.netns_of(lab.topo, p) for p in snap.state.pods.values()}
    friend = Hammer(netns["friend"], address)
    stranger = Hammer(netns["stranger"], address)
    new = pod("hd/new", "node-0", app="new")
    new["metadata"]["annotations"] = {
        "lab.netpol-agent.io/start-delay-ms": "300",
        "lab.netpol-agent.io/status-delay-ms": "500",
    }
    try:
        lab.apply([new])
        ip_seen = None
        deadline = time.time() + 20
        while ip_seen is None and time.time() < deadline:
            status = lab.client.get("/api/v1/namespaces/hd/pods/new").get("status") or {}
            if status.get("podIP"):
                ip_seen = time.time()
                assert status["podIP"] == address
            time.sleep(0.01)
        assert ip_seen is not None
        time.sleep(1.5)
    finally:
        friend.stop()
        stranger.stop()
        lab.delete([new])
    assert friend.attempts > 50 and stranger.attempts > 20
    assert stranger.connected == []
    assert friend.connected, "the friend never got through"
    first = min(friend.connected)
    assert first > ip_seen - 0.05, f"connected {ip_seen - first:.3f}s before the IP was known"
    assert first - ip_seen < 1.0, f"allowed traffic only {first - ip_seen:.3f}s after"

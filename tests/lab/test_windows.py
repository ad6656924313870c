"""Issue 14 through a two-node lab with the real agents: `lab exec`, revocation of
established flows a new policy forbids, and the hold on new pods.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from agent.lab import probe as lab_probe
from tests.lab.conftest import RunningLab
from tests.lab.podspecs import pod_dict

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

"""helm install / upgrade / rollback / uninstall of the chart against a real kube-apiserver.

The lab's real control plane (`--control-plane real`: etcd, kube-apiserver,
kube-controller-manager built by scripts/build-kubernetes) with its two Nodes
registered; agents are not started by the lab. With Helm 4 and Helm 3, both
built from their modules, this installs deploy/helm/netpol-agent, checks what
the API server holds, upgrades a value, rolls back, and uninstalls. The
uninstall creates the cleanup DaemonSet (a post-delete hook; the real API
server admits it); it does not run here, because the lab's control plane runs
no DaemonSet controller and its kubelet no containers. Besides it, what is left
is exactly the kept Namespace.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import HELM_CHART, run_tool, upstream_tool
from tests.lab.conftest import RunningLab, start_lab

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NS = "netpol-agent"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    for running in start_lab(
        tmp_path_factory.mktemp("lab"), nodes=2, control_plane="real", agents=False
    ):
        # The lab bootstraps deploy/base's Namespace and RBAC for its own agents; none
        # run here, so remove them: the chart installs into a cluster without them.
        run(running, "kubectl", "delete", "namespace", NS, "--timeout=120s")
        run(running, "kubectl", "delete", "clusterrole,clusterrolebinding", "netpol-agent")
        yield running


def run(lab: RunningLab, program: str, *args: str) -> str:
    return run_tool(program, *args, "--kubeconfig", str(lab.paths.kubeconfig))


def get(lab: RunningLab, *what: str) -> Any:
    return json.loads(run(lab, "kubectl", "get", *what, "-o", "json"))


def agent_args(lab: RunningLab) -> list[str]:
    ds = get(lab, "-n", NS, "daemonset", "netpol-agent")
    args: list[str] = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


@pytest.mark.parametrize("helm", ["helm", "helm3"])
def test_install_upgrade_rollback_uninstall(lab: RunningLab, helm: str) -> None:
    chart = str(HELM_CHART.relative_to(REPO))
    release = f"npa-{helm}"
    run(lab, helm, "install", release, chart, "--set", "image.repository=localhost/netpol-agent")
    try:
        ns = get(lab, "namespace", NS)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
        assert get(lab, "clusterrole", "netpol-agent")["rules"]
        assert get(lab, "-n", NS, "serviceaccount", "netpol-agent")
        assert get(lab, "-n", NS, "service", "netpol-agent-metrics")["spec"]["clusterIP"] == "None"
        ds = get(lab, "-n", NS, "daemonset", "netpol-agent")
        image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith("localhost/netpol-agent:")
        assert "--drop-action=drop" in agent_args(lab)

        hooks = [d for d in yaml.safe_load_all(run(lab, helm, "get", "hooks", release)) if d]
        assert [(h["kind"], h["metadata"]["name"]) for h in hooks] == [
            ("DaemonSet", "netpol-agent-cleanup")
        ]

        run(lab, helm, "upgrade", release, chart, "--reuse-values",
            "--set", "agent.dropAction=reject")  # fmt: skip
        assert "--drop-action=reject" in agent_args(lab)
        history = json.loads(run(lab, helm, "history", release, "-o", "json"))
        assert [h["revision"] for h in history] == [1, 2]

        run(lab, helm, "rollback", release, "1")
        assert "--drop-action=drop" in agent_args(lab)
    finally:
        run(lab, helm, "uninstall", release)
    # The post-delete hook: created by Helm, admitted by the real API server (the lab
    # runs no DaemonSet controller, so it makes no pods here).
    hook = get(lab, "-n", NS, "daemonset", "netpol-agent-cleanup")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    run(lab, "kubectl", "delete", "-n", NS, "daemonset", "netpol-agent-cleanup")
    left = subprocess.run(
        [upstream_tool("kubectl"), "--kubeconfig", str(lab.paths.kubeconfig), "get",
         "-n", NS, "daemonset,serviceaccount,service", "-o", "name"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert left.strip() == "serviceaccount/default" or not left.strip()
    assert get(lab, "namespace", NS)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    run(lab, "kubectl", "delete", "namespace", NS, "--timeout=120s")

"""The DaemonSet's container settings really work: the image run as the lab runs it.

The plan comes from deploy/base/daemonset.yaml through agent/lab/container.py
(capabilities NET_ADMIN and NET_RAW only, read-only root, the xtables lock,
the node's network namespace). Each test makes its own scratch namespace
`npa-img-<hex>` and removes it, and the container, even on failure.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab.container import (
    ContainerPlan,
    plan_agent_container,
    pod_spec_from_yaml,
    prepare_host,
    remove_argv,
)
from tests.image.support import REPO, Build, podman, podman_env

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(900)]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"npa-img-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """Points at a port nothing listens on: the agent starts, serves, and waits for the API."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "none", "user": {"token": "x"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    }))  # fmt: skip
    return path


def _plan(image: Build, netns: str, kubeconfig: Path, **kw: object) -> ContainerPlan:
    spec = pod_spec_from_yaml((REPO / "deploy" / "base" / "daemonset.yaml").read_text())
    return plan_agent_container(
        pod_spec=spec,
        image=image.tag,
        netns=netns,
        kubeconfig=kubeconfig,
        node_name=f"{netns}-node",
        name=f"{netns}-agent",
        **kw,  # type: ignore[arg-type]
    )


def _in_ns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
    )


def test_cleanup_in_the_container_changes_the_node_namespace(
    image: Build, netns: str, kubeconfig: Path
) -> None:
    for binary in ("iptables-legacy", "iptables-nft"):
        assert _in_ns(netns, binary, "-w", "-N", "NPA-IMAGE-TEST").returncode == 0
    plan = _plan(image, netns, kubeconfig, args=["cleanup"])
    prepare_host(plan)
    try:
        done = subprocess.run(
            list(plan.argv), capture_output=True, text=True, timeout=120, env=podman_env()
        )
    finally:
        subprocess.run(remove_argv(plan.name), env=podman_env(), check=False)
    assert done.returncode == 0, done.stderr
    assert "removed 2 chains" in done.stdout, done.stdout
    for binary in ("iptables-legacy-save", "iptables-nft-save"):
        assert "NPA-" not in _in_ns(netns, binary).stdout


def test_the_agent_starts_and_serves_with_the_manifests_settings(
    image: Build, netns: str, kubeconfig: Path
) -> None:
    plan = _plan(image, netns, kubeconfig, detach=True)
    prepare_host(plan)
    started = subprocess.run(
        list(plan.argv), capture_output=True, text=True, timeout=120, env=podman_env()
    )
    assert started.returncode == 0, started.stderr
    try:
        body = _wait_for_metrics(netns)
        assert "netpol_build_info" in body
        state = json.loads(podman("inspect", plan.name).stdout)[0]["State"]
        assert state["Running"], state
        caps = _in_container(plan.name, "grep CapEff /proc/1/status")
        assert caps.split()[-1] == "0000000000003000"  # NET_ADMIN | NET_RAW
        assert "Read-only file system" in _in_container(plan.name, "touch /opt/x 2>&1 || true")
    finally:
        logs = podman("logs", plan.name, check=False).stderr
        subprocess.run(remove_argv(plan.name), env=podman_env(), check=False)
    assert "Traceback" not in logs, logs[-3000:]


def _in_container(name: str, script: str) -> str:
    return podman("exec", name, "/bin/sh", "-c", script).stdout


def _wait_for_metrics(netns: str, timeout: float = 60.0) -> str:
    """Poll /metrics on 127.0.0.1:9847 inside the namespace (from the host, via nsenter)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = _in_ns(netns, "python3", "-c",
                      "import urllib.request;print(urllib.request.urlopen("
                      "'http://127.0.0.1:9847/metrics', timeout=2).read().decode())")  # fmt: skip
        if done.returncode == 0:
            return done.stdout
        last = done.stderr
        time.sleep(0.5)
    raise AssertionError(f"no /metrics within {timeout} s: {last[-500:]}")

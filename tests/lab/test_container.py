"""The lab's container plan follows the DaemonSet manifest, and refuses what it cannot do.

Pure: these build `podman run` command lines from the real deploy/ manifest and
from variations of it; nothing runs. The real run is in tests/image/.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agent.lab.container import (
    KUBECONFIG_IN_CONTAINER,
    ContainerSpecError,
    plan_agent_container,
    pod_spec_from_yaml,
    remove_argv,
    stop_argv,
)
from agent.lab.podspec import expand

REPO = Path(__file__).resolve().parents[2]
KUBECONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "lab", "cluster": {"server": "https://172.18.0.1:6443",
                                            "certificate-authority-data": "Zm9v"}}],
    "users": [{"name": "agent", "user": {"token": "t0ken"}}],
    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "agent"}}],
    "current-context": "lab",
}  # fmt: skip


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(KUBECONFIG))
    return path


def _pod_spec() -> dict[str, Any]:
    text = (REPO / "deploy" / "base" / "daemonset.yaml").read_text()
    return copy.deepcopy(pod_spec_from_yaml(text))


def _plan(kubeconfig: Path, spec: dict[str, Any] | None = None, **kw: Any) -> list[str]:
    plan = plan_agent_container(
        pod_spec=spec if spec is not None else _pod_spec(),
        image="localhost/netpol-agent:dev",
        netns="npa-lab-node-0",
        kubeconfig=kubeconfig,
        node_name="node-0",
        **kw,
    )
    return list(plan.argv)


def _value(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_manifest_becomes_one_podman_run(kubeconfig: Path) -> None:
    argv = _plan(kubeconfig)
    assert argv[:2] == ["podman", "run"]
    assert _value(argv, "--runtime") == ["runc"]
    assert _value(argv, "--network") == ["ns:/run/netns/npa-lab-node-0"]
    assert _value(argv, "--cap-drop") == ["all"]
    assert _value(argv, "--cap-add") == ["NET_ADMIN,NET_RAW"]
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv
    assert "--privileged" not in argv
    assert _value(argv, "--security-opt") == ["no-new-privileges"]
    assert _value(argv, "--user") == ["0:0"]
    assert "/run/xtables.lock:/run/xtables.lock:rw" in _value(argv, "--volume")
    assert f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro" in _value(argv, "--volume")
    assert _value(argv, "--tmpfs") == [f"/tmp:rw,mode=1777,size={16 * 1024 * 1024}"]
    env = _value(argv, "--env")
    assert "NODE_NAME=node-0" in env and f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}" in env
    assert _value(argv, "--entrypoint") == ['["netpol-agent"]']
    image_at = argv.index("localhost/netpol-agent:dev")
    assert argv[image_at + 1 : image_at + 3] == ["run", "--node-name=node-0"]
    assert _value(argv, "--memory") == [str(512 * 1024 * 1024)]
    assert _value(argv, "--cpus") == ["1"]


def test_plan_carries_probes_and_host_files(kubeconfig: Path) -> None:
    plan = plan_agent_container(
        pod_spec=_pod_spec(), image="img", netns="ns", kubeconfig=kubeconfig, node_name="n"
    )
    assert plan.readiness is not None and plan.readiness.path == "/readyz"
    assert plan.liveness is not None and plan.liveness.port == 9847
    assert plan.host_files == ("/run/xtables.lock",)
    assert plan.name == "netpol-agent-n"


def test_args_can_be_replaced_and_env_extended(kubeconfig: Path) -> None:
    argv = _plan(kubeconfig, args=["cleanup"], extra_env={"NETPOL_LOG_LEVEL": "debug"})
    assert argv[-2:] == ["localhost/netpol-agent:dev", "cleanup"]
    assert "NETPOL_LOG_LEVEL=debug" in _value(argv, "--env")


def test_capabilities_not_dropped_start_from_the_cri_defaults(kubeconfig: Path) -> None:
    spec = _pod_spec()
    spec["containers"][0]["securityContext"]["capabilities"] = {
        "drop": ["MKNOD"],
        "add": ["NET_ADMIN"],
    }
    (caps,) = _value(_plan(kubeconfig, spec), "--cap-add")
    assert "NET_ADMIN" in caps.split(",") and "CHOWN" in caps.split(",")
    assert "MKNOD" not in caps.split(",")


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda s: s.update(hostNetwork=False), "spec.template.spec.hostNetwork: must be true"),
        (lambda s: s["volumes"].append({"name": "s", "secret": {"secretName": "x"}}) or
         s["containers"][0]["volumeMounts"].append({"name": "s", "mountPath": "/s"}),
         "spec.template.spec.volumes[2].secret: only hostPath and emptyDir"),
        (lambda s: s["containers"][0]["env"].append(
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}),
         "containers[0].env[1].valueFrom: configMapKeyRef is not available"),
        (lambda s: s["containers"][0]["securityContext"].update(
            seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}),
         "seccompProfile: Localhost profiles are not available"),
        (lambda s: s["containers"][0]["securityContext"]["capabilities"]["add"].append("NET_MAGIC"),
         "unknown capability NET_MAGIC"),
        (lambda s: s["containers"][0]["securityContext"].update(runAsNonRoot=True, runAsUser=0),
         "runAsNonRoot: the image runs as root"),
        (lambda s: s["containers"][0]["volumeMounts"][0].update(subPath="x"),
         "volumeMounts[0].subPath: not supported"),
        (lambda s: s.update(initContainers=[{"name": "i", "image": "x"}]),
         "initContainers: the lab runs no init containers"),
        (lambda s: s["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": 1}),
         "resources.limits.nvidia.com/gpu"),
        (lambda s: s["containers"][0].update(lifecycle={"preStop": {}}),
         "containers[0].lifecycle: not supported by the lab"),
    ],
)  # fmt: skip
def test_what_the_container_cannot_do_is_refused_with_the_field(
    kubeconfig: Path, mutate: Any, reason: str
) -> None:
    spec = _pod_spec()
    mutate(spec)
    with pytest.raises(ContainerSpecError) as info:
        _plan(kubeconfig, spec)
    assert reason in str(info.value)


def test_every_problem_is_reported_at_once(kubeconfig: Path) -> None:
    spec = _pod_spec()
    spec["hostNetwork"] = False
    spec["containers"][0]["envFrom"] = [{"configMapRef": {"name": "x"}}]
    with pytest.raises(ContainerSpecError) as info:
        _plan(kubeconfig, spec)
    assert len(info.value.problems) >= 2


def test_kubeconfig_must_be_self_contained(tmp_path: Path) -> None:
    config = copy.deepcopy(KUBECONFIG)
    config["clusters"][0]["cluster"]["certificate-authority"] = "/etc/lab/ca.crt"
    path = tmp_path / "kc"
    path.write_text(json.dumps(config))
    with pytest.raises(ContainerSpecError, match="certificate-authority-data"):
        _plan(path)


def test_missing_kubeconfig_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ContainerSpecError, match="cannot read"):
        _plan(tmp_path / "absent")


def test_status_host_ip_needs_the_node_ip(kubeconfig: Path) -> None:
    spec = _pod_spec()
    spec["containers"][0]["env"].append(
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    )
    with pytest.raises(ContainerSpecError, match="node_ip"):
        _plan(kubeconfig, spec)
    assert "IP=172.18.0.2" in _value(_plan(kubeconfig, spec, node_ip="172.18.0.2"), "--env")


def test_variable_expansion_like_kubernetes() -> None:
    env = {"A": "1"}
    assert expand("--x=$(A)", env) == "--x=1"
    assert expand("$(B)", env) == "$(B)"
    assert expand("$$(A)", env) == "$(A)"


def test_stop_and_remove_commands() -> None:
    assert stop_argv("c", timeout=3) == ["podman", "stop", "--ignore", "--time", "3", "c"]
    assert remove_argv("c") == ["podman", "rm", "--force", "--ignore", "c"]


def test_the_kind_overlay_renders_to_a_runnable_plan(kubeconfig: Path) -> None:
    from agent.lab.container import render_kustomization

    pytest.importorskip("yaml")
    try:
        text = render_kustomization(REPO / "deploy" / "overlays" / "kind-flannel")
    except Exception as exc:  # kubectl missing on this machine
        pytest.skip(str(exc))
    _plan(kubeconfig, copy.deepcopy(pod_spec_from_yaml(text)))

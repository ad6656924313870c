"""Run one lab node's agent as a container, the way the DaemonSet's pod runs on a node.

`netpol-agent lab up --image IMAGE` runs the real image with the settings of the
rendered deploy/ DaemonSet (command and args, env with NODE_NAME from the
downward API, user, capabilities, read-only root filesystem, no privilege
escalation, seccomp, the xtables lock and other volumes, memory/CPU limits),
translated into one `podman run` joined to the node's network namespace the
way `hostNetwork: true` joins the node's. The kubeconfig is mounted read-only
where a ServiceAccount token would be, and KUBECONFIG points at it.

Anything the manifest asks that this translation cannot honour (a pod network,
a Secret volume, an env var from a ConfigMap, a Localhost seccomp profile, ...)
raises ContainerSpecError listing every such field, so the lab fails with the
reason instead of running something other than what a cluster would run.

    pod_spec_from_yaml(text, name=...)        the DaemonSet's pod spec from (rendered) YAML
    plan_agent_container(pod_spec=..., ...)   -> ContainerPlan (pure: argv, host paths)
    stop_argv(name) / remove_argv(name)       podman commands (pure)
    run(plan) / stop(name) / remove(name)     run them (need podman, runc and root)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.core.errors import InputError, NetpolError
from agent.lab.podspec import (
    POD_KEYS,
    ContainerSpecError,
    Probe,
    env_vars,
    expand,
    http_probe,
    kubeconfig_problems,
    limit_flags,
    pick_container,
    security_flags,
    volume_flags,
)

__all__ = [
    "KUBECONFIG_IN_CONTAINER",
    "ContainerError",
    "ContainerPlan",
    "ContainerSpecError",
    "Probe",
    "plan_agent_container",
    "pod_spec_from_yaml",
    "podman_environ",
    "prepare_host",
    "remove",
    "remove_argv",
    "render_kustomization",
    "run",
    "stop",
    "stop_argv",
]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBECONFIG_IN_CONTAINER = f"{SERVICE_ACCOUNT_DIR}/kubeconfig"
LAB_LABEL = "io.netpol-agent.lab.node"
CONTAINERS_CONF = """\
# Written by netpol-agent's lab (agent/lab/container.py), as deploy/image/containers.conf:
# this VM refuses setrlimit, so no default ulimits; runc (crun fails on hybrid cgroups).
[containers]
default_ulimits = []
# No network unless a command asks for one (--network=host for builds, ns:... for
# lab nodes): podman's default bridge would add iptables rules to the host.
netns = "none"

[engine]
runtime = "runc"
"""


class ContainerError(NetpolError):
    """podman failed to run, stop or remove a container."""


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    """One `podman run`, and what must exist on the host first."""

    name: str
    argv: tuple[str, ...]
    host_files: tuple[str, ...] = ()  # hostPath FileOrCreate: created empty if missing
    host_dirs: tuple[str, ...] = ()  # hostPath DirectoryOrCreate
    readiness: Probe | None = None
    liveness: Probe | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # the container's env, expanded


def pod_spec_from_yaml(text: str, *, name: str = "netpol-agent") -> dict[str, Any]:
    """The pod template spec of the DaemonSet `name` in (rendered) multi-document YAML."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise InputError(f"DaemonSet manifest: not YAML: {exc}") from exc
    for doc in docs:
        if doc.get("kind") == "DaemonSet" and doc.get("metadata", {}).get("name") == name:
            spec: dict[str, Any] = doc["spec"]["template"]["spec"]
            return spec
    raise InputError(f"no DaemonSet named {name!r} in the manifest")


def render_kustomization(directory: Path) -> str:
    """`kubectl kustomize DIRECTORY` (the manifest as a cluster would receive it)."""
    try:
        done = subprocess.run(
            ["kubectl", "kustomize", str(directory)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise InputError("kubectl is needed to render the deploy/ kustomization") from exc
    if done.returncode != 0:
        raise InputError(f"kubectl kustomize {directory}: {done.stderr.strip()}")
    return done.stdout


def plan_agent_container(
    *,
    pod_spec: Mapping[str, Any],
    image: str,
    netns: str,
    kubeconfig: Path,
    node_name: str,
    node_ip: str | None = None,
    name: str | None = None,
    container: str | None = None,
    args: Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    detach: bool = False,
) -> ContainerPlan:
    """The `podman run` for the DaemonSet's container on node `node_name` (pure).

    `args` replaces the manifest's args (tests run other subcommands with the same
    settings); `extra_env` is added after the manifest's env.
    """
    problems: list[str] = []
    where = "spec.template.spec"
    for key in sorted(set(pod_spec) - POD_KEYS):
        problems.append(f"{where}.{key}: not supported by the lab")
    if pod_spec.get("hostNetwork") is not True:
        problems.append(
            f"{where}.hostNetwork: must be true: the lab joins the container to the node's "
            "network namespace (a pod network is not simulated)"
        )
    c, c_where = pick_container(pod_spec, container, problems)
    pod_name = f"netpol-agent-{node_name}"
    env = env_vars(c, c_where, node_name=node_name, node_ip=node_ip, pod_name=pod_name,
               pod_spec=pod_spec, problems=problems)  # fmt: skip
    mount_kubeconfig = pod_spec.get("automountServiceAccountToken", True) is not False
    if mount_kubeconfig:
        env.setdefault("KUBECONFIG", KUBECONFIG_IN_CONTAINER)
        problems.extend(kubeconfig_problems(kubeconfig))
    env.update(extra_env or {})
    cname = name or pod_name
    argv = ["podman", "run", "--name", cname, "--replace", "--runtime", "runc", "--pull", "never"]
    argv += ["--network", f"ns:/run/netns/{netns}", "--hostname", node_name]
    argv += ["--label", f"{LAB_LABEL}={node_name}"]
    argv += ["--detach"] if detach else ["--rm"]
    grace = pod_spec.get("terminationGracePeriodSeconds")
    if grace is not None:
        argv += ["--stop-timeout", str(int(grace))]
    argv += security_flags(pod_spec, c, c_where, problems)
    argv += limit_flags(c, c_where, problems)
    volume_argv, host_files, host_dirs = volume_flags(pod_spec, c, c_where, problems)
    argv += volume_argv
    if mount_kubeconfig:
        argv += ["--volume", f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if c.get("workingDir"):
        argv += ["--workdir", str(c["workingDir"])]
    command = [expand(str(a), env) for a in c.get("command") or []]
    run_args = (
        list(args) if args is not None else [expand(str(a), env) for a in c.get("args") or []]
    )
    if command:
        argv += ["--entrypoint", json.dumps(command)]
    argv += [image, *run_args]
    if problems:
        raise ContainerSpecError(problems)
    return ContainerPlan(
        name=cname,
        argv=tuple(argv),
        host_files=host_files,
        host_dirs=host_dirs,
        readiness=http_probe(c.get("readinessProbe")),
        liveness=http_probe(c.get("livenessProbe")),
        env=env,
    )


def stop_argv(name: str, *, timeout: int = 10) -> list[str]:
    return ["podman", "stop", "--ignore", "--time", str(timeout), name]


def remove_argv(name: str) -> list[str]:
    return ["podman", "rm", "--force", "--ignore", name]


def podman_environ(conf: Path) -> dict[str, str]:
    """The environment for podman: CONTAINERS_CONF written (if missing) at `conf`."""
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def prepare_host(plan: ContainerPlan) -> None:
    """Create the hostPath files and directories the plan mounts (FileOrCreate...)."""
    for d in plan.host_dirs:
        Path(d).mkdir(parents=True, exist_ok=True)
    for f in plan.host_files:
        path = Path(f)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)


def run(plan: ContainerPlan, *, conf: Path, timeout: float | None = None) -> str:
    """Run the plan to completion (or, detached, start it); returns podman's stdout."""
    prepare_host(plan)
    return _podman(list(plan.argv), conf=conf, timeout=timeout)


def stop(name: str, *, conf: Path, timeout: int = 10) -> None:
    _podman(stop_argv(name, timeout=timeout), conf=conf, timeout=timeout + 30)


def remove(name: str, *, conf: Path) -> None:
    _podman(remove_argv(name), conf=conf, timeout=60)


def _podman(argv: list[str], *, conf: Path, timeout: float | None) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False,
            env=podman_environ(conf),
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerError(f"{argv[0]} {argv[1]}: {exc}") from exc
    if done.returncode != 0:
        raise ContainerError(
            f"{' '.join(argv[:2])} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout

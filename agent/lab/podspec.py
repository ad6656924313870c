"""How each field of a DaemonSet's pod spec becomes a `podman run` flag, or a refusal.

The lab runs the agent's real image with the real manifest's settings
(agent/lab/container.py). This module is the translation, field by field, and
it is honest: every field it cannot reproduce faithfully is reported (with its
path, e.g. `spec.template.spec.volumes[2].secret`) instead of being dropped, and
every problem is reported at once. Pure functions: values in, flags out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.core.errors import InputError

# Capabilities a container gets from containerd/CRI-O when the manifest drops none
# (podman's own default set differs, so the plan always states the set explicitly).
CRI_DEFAULT_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
LINUX_CAPABILITIES = CRI_DEFAULT_CAPABILITIES | frozenset(
    {
        "AUDIT_CONTROL", "AUDIT_READ", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
        "DAC_READ_SEARCH", "IPC_LOCK", "IPC_OWNER", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN",
        "MAC_OVERRIDE", "NET_ADMIN", "NET_BROADCAST", "PERFMON", "SYSLOG", "SYS_ADMIN",
        "SYS_BOOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM",
    }
)  # fmt: skip

# Keys of the pod spec / container this translation honours or may safely ignore.
POD_KEYS = {
    "containers", "volumes", "hostNetwork", "securityContext", "serviceAccountName",
    "serviceAccount", "automountServiceAccountToken", "tolerations", "priorityClassName",
    "terminationGracePeriodSeconds", "dnsPolicy", "nodeSelector", "affinity", "restartPolicy",
    "schedulerName", "enableServiceLinks", "initContainers",
}  # fmt: skip
CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources",
    "securityContext", "volumeMounts", "readinessProbe", "livenessProbe", "startupProbe",
    "terminationMessagePath", "terminationMessagePolicy", "workingDir",
}  # fmt: skip
SECURITY_KEYS = {
    "privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsUser",
    "runAsGroup", "runAsNonRoot", "capabilities", "seccompProfile",
}  # fmt: skip
FIELD_REFS = (
    "spec.nodeName", "metadata.name", "metadata.namespace", "spec.serviceAccountName",
    "status.hostIP", "status.podIP",
)  # fmt: skip
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerSpecError(InputError):
    """The manifest asks for something the lab's container cannot do (lists every field)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "the DaemonSet cannot run as a lab container:\n  " + "\n  ".join(self.problems)
        )


@dataclass(frozen=True, slots=True)
class Probe:
    path: str
    port: int


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command/args: unknown refs stay, $$ is a literal $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def pick_container(
    pod_spec: Mapping[str, Any], name: str | None, problems: list[str]
) -> tuple[Mapping[str, Any], str]:
    where = "spec.template.spec"
    if pod_spec.get("initContainers"):
        problems.append(f"{where}.initContainers: the lab runs no init containers")
    containers = list(pod_spec.get("containers") or [])
    for i, c in enumerate(containers):
        if (name is None and len(containers) == 1) or c.get("name") == name:
            c_where = f"{where}.containers[{i}]"
            for key in sorted(set(c) - CONTAINER_KEYS):
                problems.append(f"{c_where}.{key}: not supported by the lab")
            return c, c_where
    problems.append(f"{where}.containers: no container named {name!r} (or not exactly one)")
    return {}, f"{where}.containers[?]"


def env_vars(
    c: Mapping[str, Any],
    where: str,
    *,
    node_name: str,
    node_ip: str | None,
    pod_name: str,
    pod_spec: Mapping[str, Any],
    problems: list[str],
) -> dict[str, str]:
    fields = {
        "spec.nodeName": node_name,
        "metadata.name": pod_name,
        "metadata.namespace": "netpol-agent",
        "spec.serviceAccountName": str(pod_spec.get("serviceAccountName", "default")),
    }
    if node_ip is not None:  # hostNetwork: the pod's IP is the node's
        fields["status.hostIP"] = fields["status.podIP"] = node_ip
    env: dict[str, str] = {}
    for i, e in enumerate(c.get("env") or []):
        e_where = f"{where}.env[{i}]"
        if "valueFrom" not in e:
            env[e["name"]] = expand(str(e.get("value", "")), env)
            continue
        ref = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
        if ref in fields:
            env[e["name"]] = fields[ref]
        elif ref in FIELD_REFS:
            problems.append(f"{e_where}.valueFrom.fieldRef: {ref} needs the node's IP (node_ip)")
        else:
            what = ref or ", ".join(e["valueFrom"])
            problems.append(f"{e_where}.valueFrom: {what} is not available in the lab")
    if c.get("envFrom"):
        problems.append(f"{where}.envFrom: not available in the lab")
    return env


def capability_flags(sc: Mapping[str, Any], where: str, problems: list[str]) -> list[str]:
    caps = sc.get("capabilities") or {}
    drop = {_cap(x) for x in caps.get("drop") or []}
    add = {_cap(x) for x in caps.get("add") or []}
    for cap in sorted((drop | add) - LINUX_CAPABILITIES - {"ALL"}):
        problems.append(f"{where}.capabilities: unknown capability {cap}")
    effective = set() if "ALL" in drop else set(CRI_DEFAULT_CAPABILITIES) - drop
    effective |= add - {"ALL"}
    if "ALL" in add:
        effective |= LINUX_CAPABILITIES
    argv = ["--cap-drop", "all"]
    if effective:
        argv += ["--cap-add", ",".join(sorted(effective))]
    return argv


def _cap(name: str) -> str:
    return str(name).upper().removeprefix("CAP_")


def security_flags(
    pod_spec: Mapping[str, Any], c: Mapping[str, Any], where: str, problems: list[str]
) -> list[str]:
    pod_sc = dict(pod_spec.get("securityContext") or {})
    sc = dict(c.get("securityContext") or {})
    s_where = f"{where}.securityContext"
    for key in sorted(set(pod_sc) - SECURITY_KEYS - {"fsGroup", "supplementalGroups"}):
        problems.append(f"spec.template.spec.securityContext.{key}: not supported by the lab")
    for key in sorted(set(sc) - SECURITY_KEYS):
        problems.append(f"{s_where}.{key}: not supported by the lab")
    merged = {k: v for k, v in pod_sc.items() if k in SECURITY_KEYS} | sc
    argv: list[str] = []
    if merged.get("privileged"):
        argv.append("--privileged")
    else:
        argv += capability_flags(sc, s_where, problems)
    if merged.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    if merged.get("readOnlyRootFilesystem"):
        argv += ["--read-only", "--read-only-tmpfs=false"]  # Kubernetes adds no tmpfs
    seccomp = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        argv += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        problems.append(f"{s_where}.seccompProfile: {seccomp} profiles are not available")
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if merged.get("runAsNonRoot") and not uid:
        problems.append(
            f"{s_where}.runAsNonRoot: the image runs as root unless runAsUser is non-zero"
        )
    if uid is not None:
        argv += ["--user", f"{int(uid)}:{int(gid if gid is not None else 0)}"]
    elif gid is not None:
        problems.append(f"{s_where}.runAsGroup: without runAsUser is not supported by the lab")
    for g in pod_sc.get("supplementalGroups") or []:
        argv += ["--group-add", str(int(g))]
    return argv


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
            "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}  # fmt: skip


def limit_flags(c: Mapping[str, Any], where: str, problems: list[str]) -> list[str]:
    limits = (c.get("resources") or {}).get("limits") or {}
    argv: list[str] = []
    for resource, value in sorted(limits.items()):
        m = _QUANTITY.match(str(value))
        if m is None or resource not in ("cpu", "memory"):
            problems.append(f"{where}.resources.limits.{resource}: {value!r} is not supported")
            continue
        number, unit = float(m.group(1)), m.group(2)
        if resource == "cpu":
            argv += ["--cpus", f"{number / 1000 if unit == 'm' else number:g}"]
        elif unit == "m":
            problems.append(f"{where}.resources.limits.memory: {value!r} (milli-bytes?)")
        else:
            argv += ["--memory", str(int(number * _FACTORS[unit]))]
    return argv


def volume_flags(
    pod_spec: Mapping[str, Any], c: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    volumes = {v.get("name"): (i, v) for i, v in enumerate(pod_spec.get("volumes") or [])}
    argv: list[str] = []
    files: list[str] = []
    dirs: list[str] = []
    for i, m in enumerate(c.get("volumeMounts") or []):
        m_where = f"{where}.volumeMounts[{i}]"
        for key in sorted(set(m) - {"name", "mountPath", "readOnly", "mountPropagation"}):
            problems.append(f"{m_where}.{key}: not supported by the lab")
        if m.get("mountPropagation", "None") != "None":
            problems.append(f"{m_where}.mountPropagation: only None is supported")
        if m.get("name") not in volumes:
            problems.append(f"{m_where}: no volume named {m.get('name')!r}")
            continue
        j, v = volumes[m["name"]]
        v_where = f"spec.template.spec.volumes[{j}]"
        target, ro = str(m["mountPath"]), bool(m.get("readOnly"))
        if "hostPath" in v:
            path, kind = str(v["hostPath"]["path"]), v["hostPath"].get("type", "")
            if kind == "FileOrCreate":
                files.append(path)
            elif kind == "DirectoryOrCreate":
                dirs.append(path)
            elif kind not in ("", "File", "Directory", "Socket"):
                problems.append(f"{v_where}.hostPath.type: {kind} is not supported by the lab")
            argv += ["--volume", f"{path}:{target}:{'ro' if ro else 'rw'}"]
        elif "emptyDir" in v:
            options = ["ro" if ro else "rw", "mode=1777"]
            size = (v["emptyDir"] or {}).get("sizeLimit")
            if size is not None:
                q = _QUANTITY.match(str(size))
                if q is None or q.group(2) == "m":
                    problems.append(f"{v_where}.emptyDir.sizeLimit: {size!r} is not a size")
                else:
                    options.append(f"size={int(float(q.group(1)) * _FACTORS[q.group(2)])}")
            argv += ["--tmpfs", f"{target}:{','.join(options)}"]
        else:
            kind = next((k for k in v if k != "name"), "?")
            problems.append(f"{v_where}.{kind}: only hostPath and emptyDir volumes are supported")
    return argv, tuple(files), tuple(dirs)


def http_probe(probe: Mapping[str, Any] | None) -> Probe | None:
    http = (probe or {}).get("httpGet")
    if not http or not isinstance(http.get("port"), int):
        return None
    return Probe(path=str(http.get("path", "/")), port=int(http["port"]))


def kubeconfig_problems(kubeconfig: Path) -> list[str]:
    """The kubeconfig must exist and be self-contained: only it is mounted."""
    try:
        data = yaml.safe_load(kubeconfig.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [f"kubeconfig {kubeconfig}: cannot read: {exc}"]
    problems = []
    for section, keys in (
        ("clusters", ("certificate-authority",)),
        ("users", ("client-certificate", "client-key", "tokenFile")),
    ):
        for entry in data.get(section) or []:
            body = entry.get(section[:-1]) or {}
            for key in keys:
                if body.get(key):
                    problems.append(
                        f"kubeconfig {kubeconfig}: {section}[{entry.get('name')}].{key} refers "
                        f"to a file the container cannot see; inline it as {key}-data"
                        if key != "tokenFile"
                        else f"kubeconfig {kubeconfig}: users[{entry.get('name')}].tokenFile "
                        "refers to a file the container cannot see; use token"
                    )
    return problems

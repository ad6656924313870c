"""Host prerequisites for bridged same-node traffic: br_netfilter and its sysctls.

Pods on one node talk across the CNI bridge; iptables sees those frames only
when br_netfilter is loaded and net.bridge.bridge-nf-call-iptables (and
-ip6tables) are 1. Without them same-node traffic bypasses every policy, so we
check, set the sysctls where we may, and otherwise fail loudly with the reason.

The checks act on the calling thread's network namespace (the sysctls are per
namespace): in production the node's, in tests a scratch namespace.

    check_host(proc_sys=..., load_module=True) -> tuple[str, ...]   what was changed
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent.core.errors import HostCheckError

PROC_SYS = Path("/proc/sys")
SYSCTLS = ("net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")


def _load_br_netfilter() -> str:
    try:
        proc = subprocess.run(
            ["modprobe", "br_netfilter"], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        return str(exc)
    return proc.stderr.strip() if proc.returncode else ""


def check_host(*, proc_sys: Path = PROC_SYS, load_module: bool = True) -> tuple[str, ...]:
    """Ensure br_netfilter is present and both bridge-nf-call sysctls are 1.

    Returns a description of each change made; raises HostCheckError naming the
    problem and its reason when the host cannot be put right.
    """
    changes: list[str] = []
    bridge = proc_sys / "net" / "bridge"
    if not bridge.is_dir():
        reason = _load_br_netfilter() if load_module else "module loading disabled"
        if not bridge.is_dir():
            raise HostCheckError(
                "br_netfilter is not loaded (no /proc/sys/net/bridge): same-node pod traffic "
                "would bypass every policy; load it with `modprobe br_netfilter` "
                f"({reason or 'modprobe gave no reason'})"
            )
        changes.append("loaded br_netfilter")
    for key in SYSCTLS:
        path = proc_sys / key
        name = key.replace("/", ".")
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise HostCheckError(f"cannot read {name}: {exc.strerror or exc}") from exc
        if value == "1":
            continue
        try:
            path.write_text("1\n")
        except OSError as exc:
            raise HostCheckError(
                f"{name} is {value}, must be 1 for policies to see same-node pod traffic, "
                f"and setting it failed: {exc.strerror or exc} "
                f"(set it on the node: sysctl -w {name}=1)"
            ) from exc
        changes.append(f"set {name}=1 (was {value})")
    return tuple(changes)

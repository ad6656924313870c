"""Helpers shared by the kernel tests: normalised iptables-save, backends, foreign rules."""

from __future__ import annotations

import os
import re
import subprocess

from agent.core.model import Family
from agent.dataplane.backend import Backend, select_backend
from agent.dataplane.executor import Executor
from agent.dataplane.pyiptc import PyIptcExecutor
from agent.sandbox.setns import current_netns_id

BACKEND_NAMES = ("nft", "legacy", "python-iptables")
FAMILIES = (Family.V4, Family.V6)
_COUNTERS = re.compile(r"\[\d+:\d+\]")


# The namespace the test process started in (imported at collection, outside any setns).
HOST_NETNS = os.stat("/proc/thread-self/ns/net").st_ino


def assert_not_host() -> None:
    """Kernel-changing test code must run inside a scratch namespace, never the host's."""
    assert current_netns_id() != HOST_NETNS, "running in the test process's own namespace"


def backend(name: str) -> Backend:
    return select_backend(name)


def executor(name: str) -> Executor | PyIptcExecutor:
    chosen = backend(name)
    return PyIptcExecutor(chosen) if chosen.in_process else Executor(chosen)


def saved(mode: str, family: Family, *table: str) -> str:
    """`iptables-save` of the calling thread's namespace, counters zeroed, comments dropped."""
    assert_not_host()
    base = "ip6tables" if family is Family.V6 else "iptables"
    args = [f"{base}-{mode}-save", *(("-t", table[0]) if table else ())]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return "\n".join(
        _COUNTERS.sub("[0:0]", line) for line in out.splitlines() if not line.startswith("#")
    )


def ipset_names() -> list[str]:
    out = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=True)
    return sorted(out.stdout.split())


def foreign_rules(mode: str) -> None:
    """Rules that are not ours, as a Docker/kube-proxy host has them: cleanup must keep them."""
    assert_not_host()
    for family in FAMILIES:
        base = "ip6tables" if family is Family.V6 else "iptables"
        payload = (
            "*filter\n:FORWARD DROP [0:0]\n:KUBE-FORWARD - [0:0]\n"
            "-A FORWARD -m comment --comment kube -j KUBE-FORWARD\n"
            "-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\nCOMMIT\n"
            "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
        )
        subprocess.run(
            [f"{base}-{mode}-restore", "--noflush"], input=payload, text=True, check=True
        )
    subprocess.run(["ipset", "-exist", "create", "KUBE-foreign", "hash:ip"], check=True)

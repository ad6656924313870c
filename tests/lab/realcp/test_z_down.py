"""`lab down` leaves nothing behind, and the host's own network never changed.

Last test of the package: it takes the shared lab down itself, then checks that no
process of the lab runs, no lab namespace and no file (etcd data, certificates, CNI
state) is left, and that the host's iptables (both variants, both families), ipsets,
links, addresses, routes and conntrack settings equal what they were before
`lab up` -- kube-proxy and flanneld ran only inside node namespaces.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from agent.lab import topology
from tests.lab.realcp.conftest import RealCluster, host_network_state


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_down_leaves_nothing_and_the_host_is_unchanged(real_lab: RealCluster) -> None:
    root = real_lab.paths.root
    report = real_lab.down()
    assert report.namespaces, "down found no namespaces: was the lab up?"
    assert topology.lab_namespaces(real_lab.config.name) == []
    assert not root.exists(), f"{root} left behind"
    assert _processes_mentioning(str(root)) == []
    after = host_network_state()
    changed = {
        key: "\n".join(
            difflib.unified_diff(
                real_lab.host_before[key].splitlines(), after[key].splitlines(), lineterm=""
            )
        )
        for key in after
        if after[key] != real_lab.host_before.get(key)
    }
    assert not changed, "the host's network changed:\n" + "\n".join(
        f"{key}:\n{diff}" for key, diff in changed.items()
    )

"""Flannel's and kube-proxy's rules coexist with ours on a real node.

Our jumps stay first in FORWARD, INPUT and OUTPUT; every rule that is not ours
(KUBE-*, FLANNEL-*, CNI-*, the built-in chains' other rules, all tables) is the
same, in the same order, before our syncs, after them and after `netpol-agent
cleanup`; and the agent repairs its hooks after the cleanup.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

from agent.core.naming import TOP_FORWARD, TOP_INPUT, TOP_OUTPUT
from tests.lab.realcp.conftest import RealCluster, wait_running

NS = "coexist"


def _objects(allow: str) -> list[dict[str, Any]]:
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": NS, "labels": {"app": f"p{i}"}},
            "spec": {
                "nodeName": f"node-{i}",
                "containers": [{"name": "c", "image": "lab", "ports": [{"containerPort": 80}]}],
            },
        }
        for i in (0, 1)
    ]
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only", "namespace": NS},
        "spec": {
            "podSelector": {},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": allow}}}]}],
        },
    }
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, *pods, policy]


def _save(lab: RealCluster, netns: str) -> str:
    return lab.netns_exec(netns, "iptables-save")


def theirs(save: str) -> list[str]:
    """Every line that is not ours, counters and comments removed."""
    return [
        re.sub(r"\[\d+:\d+\]", "", line)
        for line in save.splitlines()
        if line and not line.startswith("#") and "NPA-" not in line
    ]


def first_rules(save: str) -> dict[str, str]:
    """The first rule of each built-in filter chain."""
    table = save.split("*filter", 1)[1].split("COMMIT", 1)[0]
    out: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("-A "):
            chain = line.split()[1]
            out.setdefault(chain, line)
    return out


def _ours_first(save: str) -> bool:
    first = first_rules(save)
    return all(
        first.get(chain, "").endswith(f"-j {top}")
        for chain, top in (("FORWARD", TOP_FORWARD), ("INPUT", TOP_INPUT), ("OUTPUT", TOP_OUTPUT))
    )


def test_their_rules_survive_our_syncs_and_cleanup(real_lab: RealCluster) -> None:
    node = real_lab.topo.nodes[0]
    real_lab.apply(_objects("p1"))
    try:
        wait_running(real_lab.client, NS, ["p0", "p1"])
        real_lab.probe()
        save = _save(real_lab, node.netns)
        assert _ours_first(save), first_rules(save)
        before = theirs(save)
        joined = "\n".join(before)
        for needle in ("-j KUBE-FORWARD", "-j FLANNEL-FWD", "-j KUBE-SERVICES",
                       "-j FLANNEL-POSTRTG", ":KUBE-POSTROUTING"):  # fmt: skip
            assert needle in joined, f"{needle} missing: kube-proxy/flanneld did not program"

        real_lab.apply(_objects("p0")[-1:])  # a policy change: our incremental sync
        real_lab.probe()
        after_sync = _save(real_lab, node.netns)
        assert _ours_first(after_sync), first_rules(after_sync)
        assert theirs(after_sync) == before

        cleaned = real_lab.netns_exec(node.netns, sys.executable, "-m", "agent", "cleanup")
        assert re.search(r"removed [1-9]\d* chains", cleaned), cleaned
        assert theirs(_save(real_lab, node.netns)) == before

        deadline = time.monotonic() + 30  # the tamper check restores our hooks
        while not _ours_first(save := _save(real_lab, node.netns)):
            assert time.monotonic() < deadline, f"hooks not restored: {first_rules(save)}"
            time.sleep(0.5)
        assert theirs(save) == before
    finally:
        real_lab.remove(_objects("p0"))

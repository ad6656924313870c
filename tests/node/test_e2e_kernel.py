"""End to end: `netpol-agent run` as a process inside a node namespace, real packets.

See tests/node/e2e_kit.py for the setup (API server listening inside the node
namespace, pods bridged into cni0). We check: a deny policy blocks real traffic
and deleting it restores it; a relabel moves a pod in and out of a policy;
SIGKILL mid-stream and a restart never let a forbidden connection through
(probed continuously); SIGTERM exits promptly leaving the rules; `iptables -F`
on our chains is repaired within the resync interval.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.lab.apiserver import ApiServer
from agent.lab.apiserver.resources import NETWORK_POLICIES
from agent.sandbox import netns
from agent.sandbox.sockets import EchoServers, Probe, probe_many
from agent.sandbox.topology import build_node
from tests.node.e2e_kit import (
    RESYNC,
    AgentProcess,
    Cluster,
    api_in_namespace,
    deny,
    pod_body,
    store_create,
    wait_for,
)

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    node = build_node(0, purpose="e2e")
    servers = EchoServers()
    api: ApiServer | None = None
    agent: AgentProcess | None = None
    try:
        a, b = node.add_pod("a"), node.add_pod("b")
        servers.tcp(b.netns, 80)
        servers.tcp(a.netns, 80)
        api = api_in_namespace(node.netns, bookmark_interval=0.05)
        store_create(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        store_create(
            api,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "node-0"},
                "spec": {
                    "podCIDR": "10.244.0.0/24",
                    "podCIDRs": ["10.244.0.0/24", "fd00:10:244:0::/64"],
                },
                "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]},
            },
        )
        store_create(api, pod_body(a, {"app": "a"}))
        store_create(api, pod_body(b, {"app": "b"}))
        agent = AgentProcess(
            netns=node.netns,
            api=api,
            kubeconfig=api.write_kubeconfig(tmp_path / "kubeconfig"),
            log=tmp_path / "agent.log",
        )
        agent.start()
        agent.wait_converged()
        yield Cluster(node=node, api=api, a=a, b=b, agent=agent)
    finally:
        if agent is not None and agent.proc is not None:
            agent.kill()
        if api is not None:
            api.stop()
        servers.close()
        node.close()
        assert not netns.exists(node.netns)


def test_deny_policy_blocks_and_delete_restores(cluster: Cluster) -> None:
    assert cluster.a_to_b()
    store_create(cluster.api, deny("deny-b", {"app": "b"}))
    cluster.agent.wait_converged()
    assert not cluster.a_to_b()
    assert probe_many([Probe(cluster.b.netns, cluster.a.ipv4, 80)])[0]  # a is not isolated
    families = {
        f.name: f for f in text_string_to_metric_families(cluster.agent.get("/metrics") or "")
    }
    drops = {
        (s.labels["namespace"], s.labels["pod"], s.labels["direction"]): s.value
        for s in families["netpol_dropped_packets"].samples
        if s.name == "netpol_dropped_packets_total"
    }
    assert drops.get(("x", "b", "ingress"), 0) >= 1
    assert cluster.agent.get("/readyz") == "ok\n" and cluster.agent.get("/healthz") == "ok\n"
    cluster.api.store.delete(NETWORK_POLICIES, "x", "deny-b")
    cluster.agent.wait_converged()
    assert cluster.a_to_b()


def test_relabel_moves_a_pod_in_and_out_of_a_policy(cluster: Cluster) -> None:
    store_create(cluster.api, deny("deny-web", {"role": "web"}))
    cluster.agent.wait_converged()
    assert cluster.a_to_b()
    cluster.set_labels(cluster.b, {"app": "b", "role": "web"})
    cluster.agent.wait_converged()
    assert not cluster.a_to_b()
    cluster.set_labels(cluster.b, {"app": "b"})
    cluster.agent.wait_converged()
    assert cluster.a_to_b()


def test_invalid_policy_fails_closed_and_others_still_apply(cluster: Cluster) -> None:
    bad = deny("bad-b", {"app": "b"})
    bad["spec"]["ingress"] = [{"ports": [{"port": 80, "endPort": 70}]}]  # endPort < port
    # the API server would refuse it (422); an older/laxer server might not: store it raw
    bad["metadata"].update(uid="uid-bad-b", creationTimestamp="2026-01-01T00:00:00Z")
    cluster.api.store.create(NETWORK_POLICIES, bad)
    store_create(cluster.api, deny("deny-a", {"app": "a"}))
    cluster.agent.wait_converged()
    assert not cluster.a_to_b()  # the invalid policy still isolates b and allows nothing
    assert not probe_many([Probe(cluster.b.netns, cluster.a.ipv4, 80)])[0]  # the valid one applies
    st = cluster.agent.statusz() or {}
    assert st["invalid_policies"] == 1
    assert "x/bad-b" in cluster.agent.log.read_text()


def _drops(cluster: Cluster) -> float:
    families = {
        f.name: f for f in text_string_to_metric_families(cluster.agent.get("/metrics") or "")
    }
    return sum(
        s.value
        for s in families["netpol_dropped_packets"].samples
        if s.name == "netpol_dropped_packets_total" and s.labels["pod"] == "b"
    )


def test_drop_counters_survive_the_periodic_full_resync(cluster: Cluster) -> None:
    store_create(cluster.api, deny("deny-b", {"app": "b"}))
    cluster.agent.wait_converged()
    for _ in range(3):
        assert not cluster.a_to_b(timeout=0.3)
    wait_for(lambda: _drops(cluster) >= 3, 10)  # the scrape cache lasts 5 s
    before = _drops(cluster)
    time.sleep(RESYNC + 5.5)  # a full resync rewrote the drop chain, the cache expired
    assert _drops(cluster) >= before


def test_sigkill_and_restart_never_open_a_hole(cluster: Cluster) -> None:
    store_create(cluster.api, deny("deny-b", {"app": "b"}))
    cluster.agent.wait_converged()
    assert not cluster.a_to_b()
    leaks: list[float] = []
    probes = 0
    stop = threading.Event()

    def probe_forever() -> None:
        nonlocal probes
        while not stop.is_set():
            if cluster.a_to_b(timeout=0.2):
                leaks.append(time.monotonic())
            probes += 1

    def churn() -> None:
        """Keep the agent busy rewriting chains and sets, so kills land mid-apply."""
        n = 0
        while not stop.is_set():
            n += 1
            cluster.set_labels(cluster.a, {"app": "a", "v": str(n)})
            if n % 2:
                store_create(cluster.api, deny(f"other-{n}", {"app": f"x{n}"}))
            else:
                cluster.api.store.delete(NETWORK_POLICIES, "x", f"other-{n - 1}")
            time.sleep(0.01)

    threads = [threading.Thread(target=f, daemon=True) for f in (probe_forever, churn)]
    for t in threads:
        t.start()
    try:
        for delay in (0.2, 0.45, 0.7):
            time.sleep(delay)
            assert cluster.agent.kill(signal.SIGKILL) == -signal.SIGKILL
            time.sleep(0.2)  # the cluster keeps changing while the agent is down
            cluster.agent.start()
            wait_for(lambda: bool((cluster.agent.statusz() or {}).get("ready")), 20)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    cluster.agent.wait_converged()
    assert not cluster.a_to_b()
    assert probes >= 10
    assert leaks == [], f"{len(leaks)} of {probes} forbidden probes got through"


def test_sigterm_exits_promptly_and_leaves_rules(cluster: Cluster) -> None:
    store_create(cluster.api, deny("deny-b", {"app": "b"}))
    cluster.agent.wait_converged()
    began = time.monotonic()
    assert cluster.agent.kill(signal.SIGTERM) == 0
    assert time.monotonic() - began < 5
    assert not cluster.a_to_b()  # still enforced with no agent running


def test_flushing_our_chains_is_repaired_within_the_resync_interval(cluster: Cluster) -> None:
    store_create(cluster.api, deny("deny-b", {"app": "b"}))
    cluster.agent.wait_converged()
    assert not cluster.a_to_b()
    flushed = 0
    for tool in ("iptables-legacy", "iptables-nft"):
        save = netns.run(cluster.node.netns, f"{tool}-save", "-t", "filter", check=False)
        for line in save.stdout.splitlines():
            if line.startswith(":NPA-"):
                netns.run(cluster.node.netns, tool, "-w", "-F", line[1:].split()[0])
                flushed += 1
    assert flushed > 0
    began = time.monotonic()
    assert cluster.a_to_b()  # the hole someone opened
    wait_for(
        lambda: not cluster.a_to_b(timeout=0.2),
        RESYNC + 2.0,
        lambda: cluster.agent.log.read_text()[-3000:],
    )
    assert time.monotonic() - began <= RESYNC + 2.0
    text = cluster.agent.get("/metrics") or ""
    assert (
        "netpol_tamper_detected_total 1.0" in text
        or 'netpol_sync_duration_seconds_count{kind="full"' in text
    )

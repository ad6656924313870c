"""The sandbox itself: namespace lifecycle, the stale sweep, setns, the node builder, probes."""

from __future__ import annotations

import os
import re
import threading

import pytest

from agent.sandbox import netns
from agent.sandbox.setns import current_netns_id, inside, netns_id
from agent.sandbox.sockets import EchoServers, Probe, echo_ok, open_tcp, probe_many
from agent.sandbox.topology import NodeSandbox

pytestmark = pytest.mark.kernel


def test_names_are_unique_and_prefixed() -> None:
    names = {netns.new_name("t") for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"npa-t-[0-9a-f]{8}", n) for n in names)
    with pytest.raises(ValueError):
        netns.new_name("Bad_Purpose")


def test_context_manager_removes_namespace_even_on_error() -> None:
    with pytest.raises(RuntimeError), netns.netns("t") as name:
        assert netns.exists(name)
        raise RuntimeError("boom")
    assert not netns.exists(name)
    assert not (netns.OWNER_DIR / name).exists()


def test_sweep_removes_namespaces_of_dead_owners_only() -> None:
    mine = netns.create("t")
    orphan = netns.create("t")
    try:
        # Pretend a dead process created `orphan`: pid 2**22 + 1 is beyond pid_max.
        (netns.OWNER_DIR / orphan).write_text(f"{2**22 + 1} 12345\n")
        removed = netns.sweep_stale()
        assert orphan in removed
        assert not netns.exists(orphan)
        assert netns.exists(mine)
    finally:
        netns.remove(mine)
        netns.remove(orphan)


def test_refuses_foreign_names() -> None:
    with pytest.raises(ValueError):
        netns.remove("default")
    with pytest.raises(ValueError), inside("default"):
        pass


def test_setns_is_per_thread(agent_ns: str) -> None:
    home = current_netns_id()
    seen: list[int] = []

    def worker() -> None:
        with inside(agent_ns):
            seen.append(current_netns_id())
        seen.append(current_netns_id())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [netns_id(agent_ns), home]
    assert current_netns_id() == home


def test_node_builder_addresses_and_sysctls(node: NodeSandbox) -> None:
    a = node.add_pod("a")
    b = node.add_pod("b")
    assert (a.ipv4, a.ipv6, b.ipv4, b.ipv6) == (
        "10.244.0.10",
        "fd00:10:244::a",
        "10.244.0.11",
        "fd00:10:244::b",
    )
    assert node.gateways == ("10.244.0.1", "fd00:10:244::1")
    out = netns.run(node.netns, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables")
    assert out.stdout.strip() == "1"
    route = netns.run(a.netns, "ip", "route", "show", "default").stdout
    assert "via 10.244.0.1" in route
    node.close()
    assert not netns.exists(a.netns) and not netns.exists(node.netns)


def test_probes_tcp_udp_both_families(node: NodeSandbox) -> None:
    a = node.add_pod("a")
    b = node.add_pod("b")
    with EchoServers() as servers:
        for port in (80, 81):
            servers.tcp(b.netns, port)
            servers.udp(b.netns, port)
        probes = [
            Probe(a.netns, ip, port, proto)
            for ip in b.ips
            for port in (80, 82)
            for proto in ("TCP", "UDP")
        ]
        probes.append(Probe(node.netns, b.ipv4, 81))  # the node (bridge gateway) to a pod
        results = probe_many(probes, timeout=0.5)
        assert results == [True, True, False, False, True, True, False, False, True]
        conn = open_tcp(a.netns, b.ipv6, 80)
        try:
            assert echo_ok(conn)
        finally:
            conn.close()


def test_no_namespace_leaks_from_this_process() -> None:
    mine = [
        name
        for name in os.listdir(netns.OWNER_DIR)
        if (netns.OWNER_DIR / name).read_text().split()[0] == str(os.getpid())
    ]
    assert mine == []

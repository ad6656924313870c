"""An egress-isolated pod still reaches its own node, and only its own node, over real TCP.

Kubernetes: "traffic to and from the node where a Pod is running is always
allowed". node-0 is the usual Flannel-like node namespace (cni0, gateway
10.244.0.1 / fd00:10:244::1); "another node" is a second scratch namespace on a
veth from node-0 (node-0 172.18.0.2, node-1 172.18.0.3, routing 10.244.0.0/24
back through node-0), so a pod's packet to it is routed out through FORWARD
exactly as to a real remote node, while its packets to 10.244.0.1 or 172.18.0.2
are delivered locally (INPUT). The kernel's verdicts must match both evaluators.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.compile import compile_ruleset
from agent.core.model import ClusterState, Node, Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.core.trace import RulesetEvaluator
from agent.sandbox import netns
from agent.sandbox.sockets import Probe, echo_ok, open_tcp, probe_many
from agent.sandbox.topology import add_address, add_veth
from tests.builders import make_policy, make_state
from tests.kernel.harness import KernelNode, kernel_node

pytestmark = pytest.mark.kernel

NODE0 = Node("node-0", ("172.18.0.2",), ("10.244.0.0/24", "fd00:10:244::/64"))
NODE1 = Node("node-1", ("172.18.0.3",), ("10.244.1.0/24",))
DESTINATIONS = ("10.244.0.1", "fd00:10:244::1", "172.18.0.2", "172.18.0.3")
DENY_EGRESS: tuple[str, dict[str, Any]] = (
    "x/deny-egress",
    {"podSelector": {}, "policyTypes": ["Egress"]},
)
TO_NODE1: tuple[str, dict[str, Any]] = (
    "x/to-node-1",
    {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "172.18.0.3/32"}}]}],
    },
)


def _state(node: KernelNode, *policies: tuple[str, dict[str, Any]]) -> ClusterState:
    built = (make_policy(k, spec) for k, spec in policies)
    return make_state(*node.namespaces, *node.pods.values(), *built, NODE0, NODE1)


def _kernel(node: KernelNode, state: ClusterState) -> dict[str, bool]:
    """Apply `state` on node-0; which destinations x/a reaches on 80/TCP, and what the
    reference evaluator and the compiled ruleset say, which must be the same."""
    node.apply_ruleset(compile_ruleset(state, node="node-0", options=node.options))
    src = node.pod_sandboxes["x/a"].netns
    got = probe_many([Probe(src, dst, 80, "TCP") for dst in DESTINATIONS], timeout=0.5)
    ref, rules = ReferenceEvaluator(state), RulesetEvaluator(state)
    pod = node.pods["x/a"]
    expected = [ref.allowed(pod, dst, 80, Protocol.TCP) for dst in DESTINATIONS]
    traced = [rules.allowed(pod, dst, 80, Protocol.TCP) for dst in DESTINATIONS]
    assert got == expected == traced, (DESTINATIONS, got, expected, traced)
    return dict(zip(DESTINATIONS, got, strict=True))


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_egress_isolated_pod_reaches_its_own_node_not_another(backend: str) -> None:
    with kernel_node(backend, "x") as node, netns.netns("node1") as remote:
        node.add_pod("x/a", "pod=a")
        add_veth(node.sandbox.netns, "eth1", remote, "eth0")
        add_address(node.sandbox.netns, "eth1", "172.18.0.2/24")
        add_address(remote, "eth0", "172.18.0.3/24")
        netns.ip(remote, "route", "add", "10.244.0.0/24", "via", "172.18.0.2")
        for ns in (node.sandbox.netns, remote):
            node.servers.tcp(ns, 80)

        # Not isolated: everything answers (the topology routes both ways).
        assert all(_kernel(node, _state(node)).values())

        # Isolated for egress with no rule: its own node only.
        reached = _kernel(node, _state(node, DENY_EGRESS))
        assert reached == {
            "10.244.0.1": True,
            "fd00:10:244::1": True,
            "172.18.0.2": True,
            "172.18.0.3": False,
        }
        conn = open_tcp(node.pod_sandboxes["x/a"].netns, "10.244.0.1", 80)
        try:
            assert echo_ok(conn)  # a whole TCP exchange with the bridge gateway
        finally:
            conn.close()

        # The other node is reachable as soon as a policy allows it.
        assert all(_kernel(node, _state(node, DENY_EGRESS, TO_NODE1)).values())

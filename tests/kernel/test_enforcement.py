"""Real packets between pod namespaces on a Flannel-like node, judged by the reference evaluator.

Every test builds node-0 (cni0 bridge, br_netfilter on) with pod namespaces
serving TCP/UDP echo on 80 and 81, applies the compiled ruleset with the real
Applier from inside the node namespace, and probes every pair in IPv4 and IPv6.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.model import Family
from agent.sandbox.sockets import Probe, echo_ok, open_tcp, probe_many
from tests.builders import make_policy, sel
from tests.kernel.harness import FAMILIES, kernel_node

pytestmark = pytest.mark.kernel

BACKENDS = ("nft", "legacy", "python-iptables")

V4_POD_NET = "10.244.0.0/24"
V6_POD_NET = "fd00:10:244::/64"

SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "no policies": [],
    "deny all ingress in x": [("x/deny", {"podSelector": {}, "policyTypes": ["Ingress"]})],
    "allow x/a to x/b on 80/TCP": [
        (
            "x/allow-a",
            {
                "podSelector": sel("pod=b"),
                "ingress": [{"from": [{"podSelector": sel("pod=a")}], "ports": [{"port": 80}]}],
            },
        )
    ],
    "egress of x only to ns y on UDP 81": [
        (
            "x/egress",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": sel("ns=y")}],
                        "ports": [{"port": 81, "protocol": "UDP"}],
                    }
                ],
            },
        )
    ],
    "ipBlock with except, both families": [
        (
            "y/blocks",
            {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [
                            {"ipBlock": {"cidr": V4_POD_NET, "except": ["10.244.0.10/32"]}},
                            {"ipBlock": {"cidr": V6_POD_NET, "except": ["fd00:10:244::a/128"]}},
                        ]
                    }
                ],
            },
        )
    ],
    "port range and named port": [
        (
            "x/range",
            {
                "podSelector": sel("pod=a"),
                "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}]}],
            },
        ),
        (
            "x/named",
            {"podSelector": sel("pod=b"), "ingress": [{"ports": [{"port": "http"}]}]},
        ),
    ],
    "ingress and egress together, namespace and pod selectors ANDed": [
        (
            "x/both",
            {
                "podSelector": sel("pod=a"),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [{"namespaceSelector": sel("ns=y"), "podSelector": sel("pod=a")}]}
                ],
                "egress": [{"to": [{"podSelector": sel("pod=b")}], "ports": [{"port": 81}]}],
            },
        )
    ],
}


def three_pods(node: Any) -> None:
    node.add_pod("x/a", "pod=a", ports=((80, "TCP", "http"),))
    node.add_pod("x/b", "pod=b", ports=((81, "TCP", "http"),))
    node.add_pod("y/a", "pod=a")


# python-iptables writes byte-identical rules (test_applier compares iptables-save), so
# it needs only a sample of the packet tests.
SCENARIO_CASES = [(b, s) for s in SCENARIOS for b in ("nft", "legacy")] + [
    ("python-iptables", "allow x/a to x/b on 80/TCP"),
    ("python-iptables", "ipBlock with except, both families"),
]


@pytest.mark.parametrize(("backend", "scenario"), SCENARIO_CASES)
def test_scenario_matches_reference(backend: str, scenario: str) -> None:
    with kernel_node(backend, "x", "y") as node:
        three_pods(node)
        state = node.state(make_policy(k, spec) for k, spec in SCENARIOS[scenario])
        result = node.apply(state)
        assert result.full
        node.verify(state)
        with node.agent() as applier:
            assert not applier.tampered()


@pytest.mark.parametrize("backend", BACKENDS)
def test_return_traffic_flows_reverse_connections_blocked(backend: str) -> None:
    with kernel_node(backend, "x") as node:
        three_pods(node)
        policies = [
            make_policy("x/deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            make_policy(
                "x/b-from-a",
                {
                    "podSelector": sel("pod=b"),
                    "ingress": [{"from": [{"podSelector": sel("pod=a")}]}],
                },
            ),
        ]
        node.apply(node.state(policies))
        a, b = node.pod_sandboxes["x/a"], node.pod_sandboxes["x/b"]
        for family in FAMILIES:
            a_ip, b_ip = (a.ipv4, b.ipv4) if family is Family.V4 else (a.ipv6, b.ipv6)
            conn = open_tcp(a.netns, b_ip, 80)
            try:
                assert echo_ok(conn)  # the replies (b -> a) ride conntrack
            finally:
                conn.close()
            forward = probe_many([Probe(a.netns, b_ip, 81, "UDP")], timeout=1.0)
            reverse = probe_many(
                [Probe(b.netns, a_ip, 80, "TCP"), Probe(b.netns, a_ip, 81, "UDP")], timeout=0.4
            )
            assert forward == [True]  # the UDP echo comes back
            assert reverse == [False, False]


@pytest.mark.parametrize("backend", BACKENDS)
def test_policy_change_keeps_established_connections(backend: str) -> None:
    with kernel_node(backend, "x", "y") as node:
        three_pods(node)
        allow_a = make_policy(
            "x/b-from-a",
            {"podSelector": sel("pod=b"), "ingress": [{"from": [{"podSelector": sel("pod=a")}]}]},
        )
        first = node.state([allow_a])
        node.apply(first)
        b = node.pod_sandboxes["x/b"]
        conns = [open_tcp(node.pod_sandboxes["x/a"].netns, ip, 80) for ip in (b.ipv4, b.ipv6)]
        try:
            # Change: b now also isolated for egress and y/a isolated for ingress from x.
            second = node.state(
                [
                    allow_a,
                    make_policy(
                        "x/b-egress",
                        {
                            "podSelector": sel("pod=b"),
                            "policyTypes": ["Egress"],
                            "egress": [{"to": [{"namespaceSelector": sel("ns=y")}]}],
                        },
                    ),
                    make_policy(
                        "y/only-80",
                        {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]},
                    ),
                ]
            )
            result = node.apply(second)
            assert not result.full and result.changed
            assert all(echo_ok(c) for c in conns)
            node.verify(second)
            assert all(echo_ok(c) for c in conns)
        finally:
            for c in conns:
                c.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_policy_drop_does_not_eat_allowed_traffic(backend: str) -> None:
    with kernel_node(backend, "x", "y") as node:
        three_pods(node)
        with node.agent() as applier:
            for family in FAMILIES:
                applier.executor.iptables(family, "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n")
        # every pod isolated for ingress, so every pod-to-pod packet gets a verdict from us
        policies = [
            make_policy("x/deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            make_policy("y/deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            make_policy(
                "x/from-y",
                {
                    "podSelector": {},
                    "ingress": [{"from": [{"namespaceSelector": sel("ns=y")}]}],
                },
            ),
            make_policy("y/web", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
        ]
        state = node.state(policies)
        node.apply(state)
        node.verify(state)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_restart_full_apply_never_opens_a_gap(backend: str) -> None:
    """A restarted agent's full apply must not flush: blocked traffic stays blocked throughout."""
    import socket
    import threading

    from agent.dataplane.applier import Applier
    from agent.dataplane.backend import select_backend
    from agent.sandbox.setns import inside

    with kernel_node(backend, "x", "y") as node:
        three_pods(node)
        state = node.state([make_policy("x/deny", {"podSelector": {}, "policyTypes": ["Ingress"]})])
        ruleset = node.compile(state)
        node.apply_ruleset(ruleset)
        target = node.pod_sandboxes["x/a"].ipv4
        with inside(node.pod_sandboxes["y/a"].netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((target, 80))
        sock.setblocking(False)
        leaked: list[bytes] = []
        stop = threading.Event()

        def blast() -> None:
            while not stop.is_set():
                try:
                    sock.send(b"gap?")
                    leaked.append(sock.recv(100))
                except OSError:
                    pass

        thread = threading.Thread(target=blast)
        thread.start()
        try:
            for _ in range(5):
                with inside(node.sandbox.netns):
                    assert Applier(select_backend(backend)).apply(ruleset).full
        finally:
            stop.set()
            thread.join()
            sock.close()
        assert leaked == []


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_reject_drop_action_blocks_the_same_flows(backend: str) -> None:
    from agent.core.compile import CompileOptions

    with kernel_node(backend, "x", "y") as node:
        node.options = CompileOptions(drop_action="reject")
        three_pods(node)
        state = node.state(
            make_policy(k, spec) for k, spec in SCENARIOS["allow x/a to x/b on 80/TCP"]
        )
        node.apply(state)
        assert "REJECT" in node.compile(state).table(Family.V4).render()
        node.verify(state)

"""Generated scenarios: random policies over four real pods, the kernel vs the reference.

A seeded generator (deterministic, so a failure names its seed) draws 1-3
policies mixing pod/namespace selectors, ipBlocks with excepts (both families),
ports, port ranges, named ports and both policy types; then every pod pair
(and the node) is probed on 80/81 TCP/UDP over IPv4 and IPv6.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.core.model import NetworkPolicy
from tests.builders import make_policy, sel
from tests.kernel.harness import KernelNode, kernel_node

pytestmark = pytest.mark.kernel

POD_IPS4 = ("10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.0.13")
POD_IPS6 = ("fd00:10:244::a", "fd00:10:244::b", "fd00:10:244::c", "fd00:10:244::d")


def _peer(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["pod", "ns", "both", "block4", "block6", "external"])
    if kind == "pod":
        return {"podSelector": rng.choice([{}, sel("pod=a"), sel("pod=b")])}
    if kind == "ns":
        return {"namespaceSelector": rng.choice([{}, sel("ns=x"), sel("ns=y")])}
    if kind == "both":
        return {"namespaceSelector": sel(rng.choice(["ns=x", "ns=y"])), "podSelector": sel("pod=a")}
    if kind == "block4":
        return {"ipBlock": {"cidr": "10.244.0.0/24", "except": [f"{rng.choice(POD_IPS4)}/32"]}}
    if kind == "block6":
        return {"ipBlock": {"cidr": "fd00:10:244::/64", "except": [f"{rng.choice(POD_IPS6)}/128"]}}
    return {"ipBlock": {"cidr": "192.0.2.0/24"}}


def _port(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["one", "one", "range", "proto", "named"])
    proto = rng.choice(["TCP", "UDP"])
    if kind == "one":
        return {"port": rng.choice([80, 81]), "protocol": proto}
    if kind == "range":
        return {"port": 80, "endPort": 81, "protocol": proto}
    if kind == "proto":
        return {"protocol": proto}
    return {"port": "http", "protocol": "TCP"}


def _rules(rng: random.Random, way: str) -> list[dict[str, Any]]:
    rules = []
    for _ in range(rng.randint(0, 2)):
        rule: dict[str, Any] = {}
        peers = [_peer(rng) for _ in range(rng.randint(0, 2))]
        ports = [_port(rng) for _ in range(rng.randint(0, 2))]
        if peers:
            rule[way] = peers
        if ports:
            rule["ports"] = ports
        rules.append(rule)
    return rules


def generate(seed: int) -> list[NetworkPolicy]:
    rng = random.Random(seed)
    out = []
    for i in range(rng.randint(1, 3)):
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        spec: dict[str, Any] = {
            "podSelector": rng.choice([{}, sel("pod=a"), sel("pod=b")]),
            "policyTypes": types,
        }
        if "Ingress" in types:
            spec["ingress"] = _rules(rng, "from")
        if "Egress" in types:
            spec["egress"] = _rules(rng, "to")
        out.append(make_policy(f"{rng.choice('xy')}/gen-{i}", spec))
    return out


def four_pods(node: KernelNode) -> None:
    node.add_pod("x/a", "pod=a", ports=((80, "TCP", "http"),))
    node.add_pod("x/b", "pod=b", ports=((81, "TCP", "http"),))
    node.add_pod("y/a", "pod=a", ports=((81, "TCP", "http"),))
    node.add_pod("y/b", "pod=b")


CASES = [("nft", seed) for seed in range(1, 5)] + [("legacy", seed) for seed in range(5, 9)]
CASES += [("python-iptables", seed) for seed in (9, 10)]


@pytest.mark.parametrize(("backend", "seed"), CASES)
def test_generated_scenario_matches_reference(backend: str, seed: int) -> None:
    with kernel_node(backend, "x", "y") as node:
        four_pods(node)
        policies = generate(seed)
        state = node.state(policies)
        node.apply(state)
        node.verify(state)
        # and incrementally onto the next seed's policies
        state = node.state(generate(seed + 100))
        assert not node.apply(state).full
        node.verify(state)

"""Generated ClusterNetworkPolicy scenarios over four real pods: the kernel vs the reference.

A seeded generator (a failure names its seed) draws 1-3 ClusterNetworkPolicies of both
tiers (namespace or pod subjects; Accept/Deny/Pass rules with namespaces, pods and
networks peers, ports, ranges and named ports), next to the NetworkPolicies of
tests/kernel/test_generated.py's generator for the same seed; every pod pair (and the
node) is probed on 80/81 TCP/UDP over IPv4 and IPv6 with real packets.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from agent.core.policyapi.cnpmodel import ClusterNetworkPolicy
from tests.builders import make_cnp, sel
from tests.kernel.harness import kernel_node
from tests.kernel.test_generated import POD_IPS4, four_pods, generate

pytestmark = pytest.mark.kernel

NS = [{}, sel("ns=x"), sel("ns=y")]
PODS = [{}, sel("pod=a"), sel("pod=b")]


def _peer(rng: random.Random, egress: bool) -> dict[str, Any]:
    kinds = ["ns", "pods", "pods"] + (["net4", "net6", "net0"] if egress else [])
    kind = rng.choice(kinds)
    if kind == "ns":
        return {"namespaces": rng.choice(NS)}
    if kind == "pods":
        return {"pods": {"namespaceSelector": rng.choice(NS), "podSelector": rng.choice(PODS)}}
    if kind == "net4":
        return {"networks": [f"{rng.choice(POD_IPS4)}/32"]}
    if kind == "net6":
        return {"networks": ["fd00:10:244::/64"]}
    return {"networks": ["0.0.0.0/0"]}


def _protocol(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["one", "range", "named"])
    proto = rng.choice(["tcp", "udp"])
    if kind == "one":
        return {proto: {"destinationPort": {"number": rng.choice([80, 81])}}}
    if kind == "range":
        return {proto: {"destinationPort": {"range": {"start": 80, "end": 81}}}}
    return {"destinationNamedPort": "http"}


def _rules(rng: random.Random, egress: bool) -> list[dict[str, Any]]:
    rules = []
    for i in range(rng.randint(0, 3)):
        peers = [_peer(rng, egress) for _ in range(rng.randint(1, 2))]
        rule: dict[str, Any] = {
            "name": f"r{i}",
            "action": rng.choice(["Accept", "Deny", "Pass"]),
            "to" if egress else "from": peers,
        }
        if rng.random() < 0.5 and not any("networks" in p for p in peers):
            rule["protocols"] = [_protocol(rng) for _ in range(rng.randint(1, 2))]
        elif rng.random() < 0.5:
            rule["protocols"] = [
                p for p in (_protocol(rng), _protocol(rng)) if "destinationNamedPort" not in p
            ] or [{"tcp": {"destinationPort": {"number": 80}}}]
        rules.append(rule)
    return rules


def generate_cnps(seed: int) -> list[ClusterNetworkPolicy]:
    rng = random.Random(seed)
    out = []
    for i in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            subject: dict[str, Any] = {"namespaces": rng.choice(NS)}
        else:
            subject = {
                "pods": {"namespaceSelector": rng.choice(NS), "podSelector": rng.choice(PODS)}
            }
        cnp = make_cnp(
            f"gen-{i}",
            tier=rng.choice(["Admin", "Baseline"]),
            priority=rng.choice([1, 10, 10]),
            subject=subject,
            ingress=_rules(rng, egress=False),
            egress=_rules(rng, egress=True),
        )
        assert cnp.valid, cnp.errors
        out.append(cnp)
    return out


CASES = [("nft", seed) for seed in range(1, 5)] + [("legacy", seed) for seed in (5, 6)]
CASES += [("python-iptables", seed) for seed in (7, 8)]


@pytest.mark.parametrize(("backend", "seed"), CASES)
def test_generated_cluster_policies_match_reference(backend: str, seed: int) -> None:
    with kernel_node(backend, "x", "y") as node:
        four_pods(node)
        cnps = {c.name: c for c in generate_cnps(seed)}
        state = replace(node.state(generate(seed) if seed % 2 else []), cluster_policies=cnps)
        node.apply(state)
        node.verify(state)
        # and incrementally onto the next seed's policies
        cnps = {c.name: c for c in generate_cnps(seed + 100)}
        state = replace(node.state(generate(seed + 100)), cluster_policies=cnps)
        node.apply(state)
        node.verify(state)

"""Generate a synthetic cluster as manifests, for timing `netpol-agent reachability`.

    python -m tests.perf.engine_bench --pods 1000 --policies 200 --out /tmp/npa-1000
    time netpol-agent reachability -f /tmp/npa-1000 --port 80 >/dev/null

Pods spread over namespaces of 50 (labels app, tier; namespaces labelled
team); policies mix default-deny, podSelector, namespaceSelector, both ANDed,
matchExpressions, ipBlock with except, named ports, ranges and egress rules,
so every code path of the evaluator is exercised. Deterministic for a seed.
With `--time` it also times the engine in process (load, evaluator, table).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

TIERS = ("web", "api", "db")
TEAMS = ("red", "blue", "green")


def cluster(pods: int, policies: int, seed: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    n_ns = max(3, (pods + 49) // 50)
    objs: list[dict[str, Any]] = []
    for i in range(n_ns):
        labels = {"team": TEAMS[i % 3], "ns": f"ns{i}"}
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"ns{i}", "labels": labels},
            }
        )
    for i in range(pods):
        ns = f"ns{i % n_ns}"
        node = i % 4
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "namespace": ns,
                    "name": f"pod{i}",
                    "labels": {"app": f"app{i % 10}", "tier": TIERS[i % 3]},
                },
                "spec": {
                    "nodeName": f"node-{node}",
                    "containers": [
                        {
                            "name": "main",
                            "ports": [
                                {"containerPort": 80, "name": "http"},
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                            ],
                        }
                    ],
                },
                "status": {
                    "podIP": f"10.244.{node}.{10 + i // 4 % 240}"
                    if i < 960
                    else f"10.245.{node}.{i % 250}"
                },
            }
        )
    for j in range(policies):
        ns = f"ns{j % n_ns}"
        objs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"namespace": ns, "name": f"pol{j}"},
                "spec": _spec(j, rnd),
            }
        )
    return objs


def _spec(j: int, rnd: random.Random) -> dict[str, Any]:
    app = {"matchLabels": {"app": f"app{rnd.randrange(10)}"}}
    kind = j % 8
    if kind == 0:
        return {"podSelector": {}, "policyTypes": ["Ingress"]}
    if kind == 1:
        return {
            "podSelector": app,
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": rnd.choice(TIERS)}}}]}],
        }
    if kind == 2:
        return {
            "podSelector": app,
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"team": rnd.choice(TEAMS)}}}],
                    "ports": [{"port": 80}],
                }
            ],
        }
    if kind == 3:
        peer = {
            "namespaceSelector": {
                "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["red"]}]
            },
            "podSelector": {"matchLabels": {"tier": "web"}},
        }
        return {
            "podSelector": {"matchLabels": {"tier": "api"}},
            "ingress": [{"from": [peer], "ports": [{"port": "http"}]}],
        }
    if kind == 4:
        block = {"cidr": "10.244.0.0/16", "except": [f"10.244.{rnd.randrange(4)}.0/24"]}
        return {
            "podSelector": app,
            "ingress": [{"from": [{"ipBlock": block}], "ports": [{"port": 80, "endPort": 90}]}],
        }
    if kind == 5:
        return {
            "podSelector": app,
            "egress": [
                {
                    "to": [
                        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}
                    ],
                    "ports": [{"port": 80}],
                },
                {"ports": [{"port": 53, "protocol": "UDP"}]},
            ],
        }
    if kind == 6:
        return {
            "podSelector": {
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]
            },
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"tier": "api"}}},
                        {"namespaceSelector": {"matchLabels": {"team": "blue"}}},
                    ]
                }
            ],
        }
    return {
        "podSelector": app,
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{}],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.245.0.0/16"]}}]}],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=9)
    ap.add_argument("--policies", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--out", type=Path, help="write one JSON manifest file (a List) into this directory"
    )
    ap.add_argument(
        "--time", action="store_true", help="time the engine in process for port 80/TCP"
    )
    args = ap.parse_args()
    objs = cluster(args.pods, args.policies, args.seed)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cluster.json").write_text(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
        )
    if args.time:
        from agent.core.convert import state_from_dicts
        from agent.core.model import Protocol
        from agent.core.semantics import ReferenceEvaluator
        from agent.core.table import compute_table

        t0 = time.perf_counter()
        state = state_from_dicts(objs)
        t1 = time.perf_counter()
        ev = ReferenceEvaluator(state)
        t2 = time.perf_counter()
        pods = [p for p in state.pods.values() if p.is_networked]
        table = compute_table(ev.allowed, pods, [(80, Protocol.TCP)])
        t3 = time.perf_counter()
        allowed = sum(v for row in table.blocks[0].allowed.values() for v in row.values())
        print(
            f"pods={len(pods)} policies={len(state.policies)} pairs={len(pods) ** 2} allowed={allowed} "
            f"convert={t1 - t0:.3f}s evaluator={t2 - t1:.3f}s table={t3 - t2:.3f}s"
        )


if __name__ == "__main__":
    main()

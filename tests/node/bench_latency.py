"""Event-to-kernel latency of `netpol-agent run` at scale (not a test; run as root).

    .venv/bin/python -m tests.node.bench_latency --pods 10000 --policies 1000 --samples 50

A node namespace, the lab API server listening inside it, the agent as a process
inside it (real compile, real iptables-restore/ipset in that namespace). The
cluster: `--pods` pods spread over 100 nodes (1/100 of them on this node),
100 namespaces, `--policies` policies with pod/namespace selector peers, named
ports and ipBlocks. Each sample changes one object in the API server's store and
measures, from just before the write, until the agent's /statusz reports a
synced resourceVersion >= the write's (i.e. after the apply that includes it).
The API server sends bookmarks every 10 ms so other kinds do not hold the
minimum back. Samples: a remote pod's label (peer-set membership changes), a
local pod's label (it moves in/out of policies), a policy's port (its chain
is rewritten). The agent's own sync time (snapshot, compile, apply: no watch
delivery, no bookmark wait) is printed per kind of change too, from its log.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.lab.apiserver import ApiServer
from agent.lab.apiserver.resources import NETWORK_POLICIES, PODS
from agent.sandbox.topology import build_node
from tests.node.e2e_kit import AgentProcess, api_in_namespace, store_create, update

NODES = 100
NAMESPACES = 100


def populate(api: ApiServer, *, pods: int, policies: int) -> None:
    for j in range(NAMESPACES):
        store_create(
            api,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"ns{j}", "labels": {"team": f"team{j % 10}"}},
            },
        )
    store_create(
        api,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-0"},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]},
        },
    )
    for i in range(pods):
        node, k = i % NODES, i // NODES
        ip = f"10.{100 + node // 100}.{node % 100}.{k}" if node else f"10.244.0.{10 + k}"
        store_create(
            api,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "namespace": f"ns{i % NAMESPACES}",
                    "name": f"p{i}",
                    "labels": {"app": f"app{i % 50}", "tier": f"t{i % 5}"},
                },
                "spec": {
                    "nodeName": f"node-{node}",
                    "containers": [
                        {
                            "name": "c",
                            "image": "i",
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ],
                },
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
            },
        )
    for k in range(policies):
        store_create(
            api,
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"namespace": f"ns{k % NAMESPACES}", "name": f"pol{k}"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": f"app{k % 50}"}},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {
                            "from": [
                                {"podSelector": {"matchLabels": {"tier": f"t{k % 5}"}}},
                                {"namespaceSelector": {"matchLabels": {"team": f"team{k % 10}"}}},
                            ],
                            "ports": [{"port": 80}, {"port": "http"}],
                        }
                    ],
                    "egress": [
                        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.99.0.0/16"]}}]}
                    ],
                },
            },
        )


def measure(agent: AgentProcess, change: Callable[[int], int], samples: int) -> list[float]:
    out = []
    for n in range(samples):
        began = time.perf_counter()
        rv = change(n)
        while not agent.synced(rv):
            time.sleep(0.002)
        out.append(time.perf_counter() - began)
        time.sleep(0.1)
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def describe(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<28} n={len(ms):<4} p50={quantile(ms, 0.5):8.1f} ms  "
        f"p99={quantile(ms, 0.99):8.1f} ms  mean={statistics.mean(ms):8.1f} ms  max={max(ms):8.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="npa-bench-") as tmp,
        build_node(0, purpose="bench") as node,
    ):
        api = api_in_namespace(node.netns, bookmark_interval=0.01, history_limit=200_000)
        try:
            t = time.perf_counter()
            populate(api, pods=args.pods, policies=args.policies)
            print(
                f"populated {args.pods} pods, {args.policies} policies in {time.perf_counter() - t:.1f}s"
            )
            agent = AgentProcess(
                netns=node.netns,
                api=api,
                kubeconfig=api.write_kubeconfig(Path(tmp) / "kc"),
                log=Path(tmp) / "agent.log",
                resync=3600,
                log_level="debug",
            )
            t = time.perf_counter()
            agent.start()
            agent.wait_converged(timeout=300)
            print(
                f"agent started and converged (list + first full sync) in {time.perf_counter() - t:.1f}s"
            )
            st = agent.statusz() or {}
            print(f"local pods {st.get('local_pods')}, objects {st.get('objects')}")
            metrics = agent.get("/metrics") or ""
            for name in (
                "netpol_owned_chains",
                "netpol_owned_rules",
                "netpol_owned_ipsets",
                "netpol_owned_ipset_entries",
            ):
                m = re.search(rf"^{name} (\S+)$", metrics, re.M)
                print(f"  {name} = {m.group(1) if m else '?'}")

            def remote_pod(n: int) -> int:
                i = 1 + (n * 7) % (args.pods - 1)
                i += 1 if i % NODES == 0 else 0

                def change(obj: dict[str, Any]) -> None:
                    obj["metadata"]["labels"]["tier"] = f"t{(i + 1) % 5}"  # a new pod each time

                return update(api, PODS, f"ns{i % NAMESPACES}", f"p{i}", change)

            def local_pod(n: int) -> int:
                i = NODES * (n % (args.pods // NODES))

                def change(obj: dict[str, Any]) -> None:
                    obj["metadata"]["labels"]["app"] = (
                        f"app{(i + 1 + n % 49) % 50}"  # never a no-op
                    )

                return update(api, PODS, f"ns{i % NAMESPACES}", f"p{i}", change)

            def policy(n: int) -> int:
                k = (n * 13) % args.policies

                def change(obj: dict[str, Any]) -> None:
                    obj["spec"]["ingress"][0]["ports"][0]["port"] = 80 + 1 + n

                return update(api, NETWORK_POLICIES, f"ns{k % NAMESPACES}", f"pol{k}", change)

            results = {
                "pod label (remote peer)": measure(agent, remote_pod, args.samples),
                "pod label (local pod)": measure(agent, local_pod, args.samples),
                "policy change": measure(agent, policy, args.samples),
            }
            for name, values in results.items():
                print(describe(name, values))
            if agent.proc is not None:
                status = Path(f"/proc/{agent.proc.pid}/status").read_text()
                rss = re.search(r"VmRSS:\s+(\d+) kB", status)
                print(f"agent resident memory: {int(rss.group(1)) // 1024 if rss else '?'} MiB")
            syncs = [
                float(s)
                for s in re.findall(r"synced sync=incremental seconds=(\S+)", agent.log.read_text())
            ]
            if syncs:
                print(describe("agent sync (incremental)", syncs))
            if len(syncs) == len(results) * args.samples:  # one sync per sample, in order
                for k, name in enumerate(results):
                    part = syncs[k * args.samples : (k + 1) * args.samples]
                    print(describe(f"  agent sync: {name}", part))
            agent.kill()
        finally:
            api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

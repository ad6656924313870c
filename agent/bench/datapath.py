"""Stage 4: what enforcement costs packets: two pod namespaces on one bridged node, with no
rules at all vs the agent's ruleset for the 1k-policy cluster (100 policies select the server).

A third condition, the same cluster without those policies (the server
isolated by nothing), measures what an unselected pod pays. The size knobs
(`local_pods`, `selecting`) make the same run use e.g. 250 local pods and
1,000 policies selecting the server. Besides the rates, the stage reports the
rules a new packet evaluates (the packet tracer's count on the compiled
ruleset: the kernel walks the same rules), for the measured cluster and for
the same cluster with 10 and 250 local pods.

The node and pods are `agent.sandbox.topology` namespaces (bridge netfilter on,
as on a real node). The cluster is the synthetic one with `policies - 100`
policies, plus namespace `bench-dp` holding the two real pods and 100
policies selecting the server; the last of them (in chain order) is the one
allowing the client, so a new connection walks every policy chain. Traffic
comes from `agent.bench.loadgen` processes (one per end, so each has a core):
new TCP connections per second, UDP packets per second (one flow) and the
throughput of one established TCP stream. Conditions alternate for `rounds`
rounds; the medians are compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agent.bench.cluster import NODE, TEAMS, ClusterSpec, generate, namespace, pod, policy
from agent.bench.results import Goal, Result, median
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.convert import state_from_dicts
from agent.core.model import Protocol
from agent.core.ruleset import Ruleset
from agent.core.trace import Packet, trace
from agent.dataplane.applier import Applier
from agent.dataplane.backend import Backend
from agent.sandbox.setns import inside
from agent.sandbox.topology import NodeSandbox, PodSandbox, build_node

Obj = dict[str, Any]
PORT_CONNECT, PORT_STREAM, PORT_UDP = 5201, 5202, 5203
DP_NAMESPACE = "bench-dp"
CONNECT_GOAL = Goal(">=", 0.9)
UDP_GOAL = Goal(">=", 0.9)
STREAM_GOAL = Goal(">=", 0.98)
LARGE_GOAL = Goal(">=", 0.85)  # 250 local pods / 1,000 policies selecting the server
UNSELECTED_GOAL = Goal(">=", 0.97)


def dp_objects(
    *,
    client: PodSandbox,
    server: PodSandbox,
    selecting: int,
    policies: int,
    pods: int,
    seed: int,
    local_pods: int = 100,
) -> list[Obj]:
    """The cluster of this stage: the synthetic one plus the two real pods and their policies."""
    base = generate(
        ClusterSpec(
            pods=max(0, pods - 2),
            policies=max(0, policies - selecting),
            local_pods=local_pods,
            seed=seed,
            first_local_host=20,
        )
    )
    objs = [*base.objects(), namespace(DP_NAMESPACE, {"purpose": "bench"})]
    for p, app in ((client, "bench-client"), (server, "bench-server")):
        objs.append(
            pod(DP_NAMESPACE, p.name, labels={"app": app}, node=NODE, ips=list(p.ips), ports=[])
        )
    for n in range(selecting):
        if n == selecting - 1:
            peers: list[Obj] = [{"podSelector": {"matchLabels": {"app": "bench-client"}}}]
            ports: list[Obj] = [
                {"protocol": proto, "port": PORT_CONNECT, "endPort": PORT_UDP}
                for proto in ("TCP", "UDP")
            ]
        else:
            peers = [
                {
                    "namespaceSelector": {"matchLabels": {"team": TEAMS[n % len(TEAMS)]}},
                    "podSelector": {"matchLabels": {"tier": "frontend"}},
                }
            ]
            ports = [{"port": 6000 + n}]
        spec = {
            "podSelector": {"matchLabels": {"app": "bench-server"}},
            "ingress": [{"from": peers, "ports": ports}],
        }
        objs.append(policy(DP_NAMESPACE, f"dp-sel-{n:03d}", spec))
    return objs


def _start(ns: str, *args: str) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "agent.bench.loadgen", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=timeout)
        raise RuntimeError(f"loadgen {proc.args!r}: no output: {err.strip()}")
    return dict(json.loads(line))


def _pair(
    server: list[str], client: list[str], s_ns: str, c_ns: str, seconds: float
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    srv = _start(s_ns, *server)
    try:
        _line(srv, 10)  # ready
        cli = _start(c_ns, *client)
        out, err = cli.communicate(timeout=seconds + 30)
        if cli.returncode != 0:
            raise RuntimeError(f"loadgen {client}: {err.strip()}")
        client_result = dict(json.loads(out.strip().splitlines()[-1]))
        server_result: dict[str, Any] | None = None
        if server[0] != "tcp-accept":  # the only server that never reports
            try:
                server_result = _line(srv, seconds + 10)
            except (RuntimeError, ValueError):
                server_result = None
        return client_result, server_result
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait(timeout=10)


def measure(client: PodSandbox, server: PodSandbox, seconds: float) -> dict[str, float]:
    dst, s_ns, c_ns = server.ipv4, server.netns, client.netns
    t = f"{seconds:g}"
    conn, _ = _pair(
        ["tcp-accept", str(PORT_CONNECT)],
        ["tcp-connect", dst, str(PORT_CONNECT), t],
        s_ns,
        c_ns,
        seconds,
    )
    _, udp = _pair(
        ["udp-sink", str(PORT_UDP), t],
        ["udp-blast", dst, str(PORT_UDP), f"{seconds + 1:g}"],
        s_ns,
        c_ns,
        seconds,
    )
    stream, _ = _pair(
        ["tcp-sink", str(PORT_STREAM)],
        ["tcp-stream", dst, str(PORT_STREAM), t],
        s_ns,
        c_ns,
        seconds,
    )
    return {
        "tcp_connections_per_s": float(conn["per_second"]),
        "tcp_connect_failures": float(conn["failures"]),
        "udp_packets_per_s": float(udp["per_second"]) if udp else 0.0,
        "tcp_stream_bytes_per_s": float(stream["bytes_per_second"]),
    }


def run_datapath(
    backends: Sequence[Backend],
    *,
    pods: int,
    policies: int,
    seconds: float,
    rounds: int = 2,
    seed: int = 1,
    local_pods: int = 100,
    selecting: int = 100,
    log: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    out: list[Result] = []
    selecting = min(selecting, policies)
    large = local_pods >= 250 or selecting >= 1000
    with build_node(0, purpose="dp") as node:
        client, server = node.add_pod("client"), node.add_pod("server")

        def cluster(local: int) -> list[Obj]:
            return dp_objects(
                client=client,
                server=server,
                selecting=selecting,
                policies=policies,
                pods=pods,
                seed=seed,
                local_pods=local,
            )

        objs = cluster(local_pods)
        unselected = [o for o in objs if not o["metadata"]["name"].startswith("dp-sel-")]
        rulesets = {
            "policies": compile_ruleset(
                state_from_dicts(objs), node=NODE, options=CompileOptions()
            ),
            "unselected": compile_ruleset(
                state_from_dicts(unselected), node=NODE, options=CompileOptions()
            ),
        }
        out += _rules_per_packet(rulesets, client, server, cluster, log)
        label = f"{local_pods} local, {selecting} of {policies} policies select the server"
        for backend in backends:
            out += _one_backend(
                node, backend, rulesets, client, server, seconds, rounds, log, label, large
            )
    return out


def _rules_per_packet(
    rulesets: dict[str, Ruleset],
    client: PodSandbox,
    server: PodSandbox,
    cluster: Callable[[int], list[Obj]],
    log: Callable[[str], None],
) -> list[Result]:
    """Rules a new TCP packet client -> server evaluates (the tracer's count)."""

    def count(ruleset: Ruleset) -> int:
        syn = Packet(client.ipv4, server.ipv4, Protocol.TCP, PORT_CONNECT)
        return trace(ruleset, syn).evaluated

    out = [
        Result("datapath", "-", f"rules per new packet, server {cond}", count(rs), "", None)
        for cond, rs in (("isolated", rulesets["policies"]), ("unselected", rulesets["unselected"]))
    ]
    for local in (10, 250):
        rs = compile_ruleset(state_from_dicts(cluster(local)), node=NODE, options=CompileOptions())
        n = count(rs)
        log(f"datapath: a new packet evaluates {n} rules with {local} local pods")
        out.append(Result("datapath", "-", f"rules per new packet, {local} local pods", n, ""))
    return out


def round_ratios(
    none: Sequence[dict[str, float]], rules: Sequence[dict[str, float]], key: str
) -> list[float]:
    """Per round: the rate with rules over the no-rules rate of the same round, averaged
    with the next round's (the machine's load drifts; adjacent runs share most of it)."""
    out: list[float] = []
    for r, with_rules in enumerate(rules):
        near = [none[r][key]] + ([none[r + 1][key]] if r + 1 < len(none) else [])
        base = sum(near) / len(near)
        if base:
            out.append(with_rules[key] / base)
    return out


def _one_backend(
    node: NodeSandbox,
    backend: Backend,
    rulesets: dict[str, Ruleset],
    client: PodSandbox,
    server: PodSandbox,
    seconds: float,
    rounds: int,
    log: Callable[[str], None],
    with_label: str,
    large: bool = False,
) -> list[Result]:
    runs: dict[str, list[dict[str, float]]] = {"none": [], **{c: [] for c in rulesets}}
    conditions: list[str] = ["none", *rulesets]
    for r in range(rounds):
        # rotate the order each round so that no condition always follows another
        for condition in conditions[r % len(conditions) :] + conditions[: r % len(conditions)]:
            if condition == "none":
                runs["none"].append(measure(client, server, seconds))
                continue
            applier = Applier(backend, revoke_fast_path=False)  # fresh namespace each time
            with inside(node.netns):
                applier.apply(rulesets[condition])
            try:
                runs[condition].append(measure(client, server, seconds))
            finally:
                with inside(node.netns):
                    applier.cleanup()
    med = {c: {k: median([r[k] for r in rs]) for k in rs[0]} for c, rs in runs.items()}
    log(f"datapath {backend.name}: {json.dumps(med)}")
    detail: dict[str, object] = {"runs": runs, "seconds": seconds}
    name = backend.name
    out: list[Result] = []
    for key, label, unit, goal in (
        ("tcp_connections_per_s", "new TCP connections", "/s", CONNECT_GOAL),
        ("udp_packets_per_s", "UDP packets (one-way flow)", "/s", UDP_GOAL),
        ("tcp_stream_bytes_per_s", "TCP stream throughput", "MB/s", STREAM_GOAL),
    ):
        if large:
            goal = LARGE_GOAL
        scale = 1e-6 if unit == "MB/s" else 1.0
        base, with_rules = med["none"][key], med["policies"][key]
        out.append(Result("datapath", name, f"{label}, no rules", base * scale, unit, None, detail))
        out.append(
            Result(
                "datapath", name, f"{label}, {with_label}", with_rules * scale, unit, None, detail
            )
        )
        for condition, suffix, cond_goal in (
            ("policies", "", goal),
            ("unselected", ", server unselected", UNSELECTED_GOAL),
        ):
            ratios = round_ratios(runs["none"], runs[condition], key)
            spread = {"ratios": [round(x, 3) for x in ratios]}
            value = median(ratios)
            out.append(
                Result("datapath", name, f"{label} ratio{suffix}", value, "x", cond_goal, spread)
            )
            lo, hi = (min(ratios), max(ratios)) if ratios else (0.0, 0.0)
            for bound, v in (("lowest", lo), ("highest", hi)):
                name_ = f"{label} ratio{suffix}, {bound} round"
                out.append(Result("datapath", name, name_, v, "x", None, spread))
    failures = med["policies"]["tcp_connect_failures"]
    if failures:
        out.append(
            Result(
                "datapath", name, "TCP connect failures with policies", failures, "", None, detail
            )
        )
    return out

"""Stage 3: event-to-kernel latency through the real agent pipeline, vs the bare kernel tools.

The whole agent runs in this process (`agent.node.agent.Agent`): its watchers
list and watch the lab API server over HTTP with the official client, its
store, pacer and reconciler decide when to sync, `compile_ruleset` builds the
ruleset and the `Applier` programs a scratch node namespace (see `tap`). Each
event is written straight into the API server's store; latency runs from
just before that write until the apply of the first state holding it returns.
Between events we wait out the agent's minimum sync interval, so the figure
is the pipeline's, not the rate limiter's.

After each event the same plan (previous -> new ruleset) is replayed into a
twin namespace holding the same rules with nothing but the kernel tools
(`ipset restore`, `iptables-restore --noflush` of only the changed chains):
the kernel's own cost of that change.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.bench import labapi
from agent.bench.cluster import NODE, Manifests
from agent.bench.coldstart import Payload, bare_apply
from agent.bench.events import KINDS, EventSource
from agent.bench.results import Goal, Result, quantile
from agent.bench.tap import Tap
from agent.core.errors import NetpolError
from agent.core.render import plan
from agent.core.ruleset import Ruleset
from agent.dataplane.backend import Backend
from agent.dataplane.executor import Executor
from agent.sandbox import netns
from agent.sandbox.setns import inside

EVENT_TIMEOUT = 30.0
SLOW_MS = 50.0  # events slower than this are itemised in the result detail
POD_GOAL = Goal("<=", 20.0)
POLICY_GOAL = Goal("<=", 50.0)
NO_RULES = Goal("<=", 0)


@dataclass
class Samples:
    latency_ms: list[float] = field(default_factory=list)
    compile_ms: list[float] = field(default_factory=list)
    apply_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    rules: list[int] = field(default_factory=list)
    chains: list[int] = field(default_factory=list)
    set_entries: list[int] = field(default_factory=list)
    missed: int = 0
    slow: list[dict[str, float]] = field(default_factory=list)  # events over SLOW_MS: why


class Twin:
    """A namespace kept equal to the agent's, changed only by the bare kernel tools."""

    def __init__(self, backend: Backend, name: str, first: Ruleset) -> None:
        self.backend, self.name, self.current = backend, name, first
        with inside(name):
            bare_apply(backend, Payload.full(first))

    def replay(self, desired: Ruleset) -> float:
        p = plan(self.current, desired)
        ex = Executor(self.backend)
        with inside(self.name):
            t = time.perf_counter()
            ex.ipset(p.ipset_before)
            for family in sorted(p.iptables):
                ex.iptables(family, p.iptables[family])
            ex.ipset(p.ipset_after)
            seconds = time.perf_counter() - t
        self.current = desired
        return seconds


def run_incremental(
    backend: Backend,
    manifests: Manifests,
    *,
    events: int,
    label: str = "",
    log: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    from agent.kube.client import KubeApiSource, load_api_client
    from agent.kube.decode import decode
    from agent.node.agent import Agent
    from agent.node.engine import compiler_for, ruleset_stats
    from agent.node.settings import Settings

    settings = Settings(node_name=NODE, backend=backend.name, resync_interval=3600.0)
    samples = {kind: Samples() for kind in KINDS}
    with (
        tempfile.TemporaryDirectory(prefix="npa-bench-") as tmp,
        netns.netns("inc") as node_ns,
        netns.netns("twin") as twin_ns,
    ):
        api = labapi.start_api()
        agent = None
        try:
            labapi.fill(api, manifests.objects())
            kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
            tap = Tap(backend, node_ns)
            source = KubeApiSource(load_api_client(str(kubeconfig)), node_name=NODE)
            agent = Agent(
                settings=settings,
                source=source,
                decode=decode,
                compiler=tap.compiler(compiler_for(settings)),
                dataplane=tap,
                ruleset_stats=ruleset_stats,
                serve_http=False,
            )
            t = time.perf_counter()
            agent.start()
            deadline = time.monotonic() + 300
            while not tap.records and time.monotonic() < deadline:
                time.sleep(0.01)
            if not tap.records:
                raise NetpolError("the in-process agent did not apply within 300 s")
            log(f"incremental {backend.name}: agent synced in {time.perf_counter() - t:.1f} s")
            twin = Twin(backend, twin_ns, tap.records[-1].ruleset)
            replayed = len(tap.records)
            source_events = EventSource(api, manifests)
            for n in range(events):
                for event in source_events.round(n):
                    pause = (
                        tap.last_start + settings.min_sync_interval + 0.002 - time.perf_counter()
                    )
                    if pause > 0:
                        time.sleep(pause)
                    check, write = event.prepare()
                    tap.expect(check)
                    began = time.perf_counter()
                    write()
                    record = tap.wait(EVENT_TIMEOUT)
                    s = samples[event.kind]
                    if record is None:
                        s.missed += 1
                        continue
                    latency = (record.done - began) * 1000
                    s.latency_ms.append(latency)
                    if latency > SLOW_MS:  # where did the time go?
                        s.slow.append(
                            {
                                "latency_ms": round(latency, 1),
                                "waited_ms": round((record.started - began) * 1000, 1),
                                "compile_ms": round(record.compile_s * 1000, 1),
                                "apply_ms": round(record.apply_s * 1000, 1),
                                "full": float(record.result.full),
                            }
                        )
                    s.compile_ms.append(record.compile_s * 1000)
                    s.apply_ms.append(record.apply_s * 1000)
                    c = record.result.counts
                    s.rules.append(c.rules_written)
                    s.chains.append(c.chains_written + c.chains_deleted)
                    s.set_entries.append(c.set_entries_added + c.set_entries_removed)
                    for other in tap.records[replayed:]:
                        seconds = twin.replay(other.ruleset)
                        if other is record:
                            s.bare_ms.append(seconds * 1000)
                    replayed = len(tap.records)
                if (n + 1) % 50 == 0:
                    log(f"incremental {backend.name}: {n + 1}/{events} rounds")
        finally:
            if agent is not None:
                agent.stop()
            api.stop()
    return _results(backend.name, samples, label)


def _results(backend: str, samples: dict[str, Samples], label: str) -> list[Result]:
    out: list[Result] = []
    suffix = f" {label}" if label else ""
    for kind, s in samples.items():
        pod = kind.startswith("pod-")
        goal = (POD_GOAL if pod else POLICY_GOAL) if backend == "nft" else None
        detail: dict[str, Any] = {
            "events": len(s.latency_ms),
            "missed": s.missed,
            "latency_p50_ms": round(quantile(s.latency_ms, 0.5), 2),
            "latency_p99_ms": round(quantile(s.latency_ms, 0.99), 2),
            "latency_max_ms": round(max(s.latency_ms, default=0.0), 2),
            "latency_over_100ms": sum(1 for v in s.latency_ms if v > 100),
            "latency_over_1s": sum(1 for v in s.latency_ms if v > 1000),
            "slow_events": s.slow[:20],
            "compile_p50_ms": round(quantile(s.compile_ms, 0.5), 2),
            "apply_p50_ms": round(quantile(s.apply_ms, 0.5), 2),
            "apply_p99_ms": round(quantile(s.apply_ms, 0.99), 2),
            "bare_p50_ms": round(quantile(s.bare_ms, 0.5), 2),
            "bare_p99_ms": round(quantile(s.bare_ms, 0.99), 2),
            "rules_written_p50": quantile([float(r) for r in s.rules], 0.5),
            "rules_written_max": max(s.rules, default=0),
            "chains_written_max": max(s.chains, default=0),
            "set_entries_changed_max": max(s.set_entries, default=0),
            "latencies_ms": [round(v, 1) for v in s.latency_ms],
        }
        name = f"{kind}{suffix}"
        out += [
            Result(
                "incremental", backend, f"{name} p50", detail["latency_p50_ms"], "ms", None, detail
            ),
            Result(
                "incremental", backend, f"{name} p99", detail["latency_p99_ms"], "ms", goal, detail
            ),
            Result(
                "incremental",
                backend,
                f"{name} rules rewritten (max)",
                float(detail["rules_written_max"]),
                "rules",
                NO_RULES if pod and backend == "nft" else None,
                detail,
            ),
            Result(
                "incremental",
                backend,
                f"{name} bare tools p50",
                detail["bare_p50_ms"],
                "ms",
                None,
                detail,
            ),
        ]
    return out

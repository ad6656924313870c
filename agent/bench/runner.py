"""Runs the chosen benchmark stages for the chosen backends and gathers one Report.

A stage that cannot run (not root, a missing tool, a part of the agent that
fails) is recorded in `Report.problems` with the reason, and the others still
run: a partial measurement beats none.

    run(BenchConfig(...), log=print) -> Report
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from agent.bench.cluster import NODE, ClusterSpec, generate
from agent.bench.coldstart import run_cold
from agent.bench.compiling import DEFAULT_SIZES, Size, run_compile
from agent.bench.datapath import run_datapath
from agent.bench.dropflood import run_drop_flood
from agent.bench.incremental import run_incremental
from agent.bench.memory import run_memory
from agent.bench.results import Report, Result, machine
from agent.core.compile import CompileOptions, compile_ruleset
from agent.dataplane.backend import select_backend

STAGES = ("compile", "cold", "incremental", "datapath", "memory")
KERNEL_STAGES = ("cold", "incremental", "datapath", "memory")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    pods: int = 10_000
    policies: int = 1_000
    local_pods: int = 100
    backends: tuple[str, ...] = ("nft", "legacy")
    events: int = 200
    stages: tuple[str, ...] = STAGES
    compile_sizes: tuple[Size, ...] = DEFAULT_SIZES
    seconds: float = 3.0  # per datapath measurement
    rounds: int = 2  # datapath: alternations of no-rules / policies
    seed: int = 1
    drop_flood: bool = False  # datapath: also the cost of logging drops under a flood
    datapath_local_pods: int = 100  # the datapath stage's local pods (e.g. 250)
    datapath_selecting: int = 100  # policies selecting the datapath stage's server (e.g. 1000)

    def problems(self) -> list[str]:
        out = []
        if self.pods < 10 or self.policies < 0 or not 1 <= self.local_pods <= 200:
            out.append("--pods must be >= 10, --policies >= 0, --local-pods 1..200")
        if self.local_pods > self.pods:
            out.append("--local-pods must not exceed --pods")
        if not 2 <= self.datapath_local_pods <= 1000 or self.datapath_selecting < 1:
            out.append("--datapath-local-pods must be 2..1000, --datapath-selecting >= 1")
        if self.events < 1:
            out.append("--events must be >= 1")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            out.append(
                f"--only: unknown stage(s) {', '.join(unknown)} (choose from {', '.join(STAGES)})"
            )
        bad = [b for b in self.backends if b not in ("nft", "legacy")]
        if bad:
            out.append(f"--backend: {', '.join(bad)} (choose nft, legacy or both)")
        return out


def run(config: BenchConfig, *, log: Callable[[str], None] = lambda s: None) -> Report:
    report = Report(machine=machine(), config=_config_view(config))
    started = time.perf_counter()

    def stage(name: str, backend: str, body: Callable[[], list[Result]]) -> None:
        t = time.perf_counter()
        try:
            report.results.extend(body())
        except Exception as exc:
            log(traceback.format_exc())
            report.problems.append(f"{name} ({backend}): {type(exc).__name__}: {exc}")
        log(f"{name} ({backend}) took {time.perf_counter() - t:.1f} s")

    if "compile" in config.stages:
        stage("compile", "-", lambda: run_compile(config.compile_sizes, seed=config.seed, log=log))
    kernel = [s for s in config.stages if s in KERNEL_STAGES]
    if kernel and os.geteuid() != 0:
        report.problems.append(f"{', '.join(kernel)}: need root (network namespaces, iptables)")
        kernel = []
    if kernel:
        spec = ClusterSpec(config.pods, config.policies, config.local_pods, config.seed)
        manifests = generate(spec)
        label = f"@ {_k(config.pods)}/{_k(config.policies)}/{config.local_pods}"
        ruleset = compile_ruleset(manifests.state(), node=NODE, options=CompileOptions())
        backends = [select_backend(b) for b in config.backends]
        for b in backends:
            if "cold" in kernel:
                stage("cold", b.name, partial(run_cold, b, ruleset, label=label, log=log))
            if "incremental" in kernel:
                run_inc = partial(run_incremental, b, manifests, events=config.events, log=log)
                stage("incremental", b.name, run_inc)
        if "datapath" in kernel:
            stage(
                "datapath",
                "+".join(config.backends),
                lambda: run_datapath(
                    backends,
                    pods=config.pods,
                    policies=config.policies,
                    seconds=config.seconds,
                    rounds=config.rounds,
                    seed=config.seed,
                    local_pods=config.datapath_local_pods,
                    selecting=config.datapath_selecting,
                    log=log,
                ),
            )
        if "datapath" in kernel and config.drop_flood:
            stage(
                "datapath",
                "+".join(config.backends),
                lambda: run_drop_flood(
                    backends,
                    pods=config.pods,
                    policies=config.policies,
                    seconds=config.seconds,
                    rounds=config.rounds,
                    seed=config.seed,
                    log=log,
                ),
            )
        if "memory" in kernel:
            for b in backends:
                stage("memory", b.name, partial(run_memory, b, manifests, label=label, log=log))
    report.config["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _config_view(config: BenchConfig) -> dict[str, object]:
    view = asdict(config)
    view["compile_sizes"] = [f"{s.pods}x{s.policies}x{s.local_pods}" for s in config.compile_sizes]
    view["backends"] = list(config.backends)
    view["stages"] = list(config.stages)
    return view

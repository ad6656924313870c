"""Stage 1: how long compile_ruleset takes for one node, and its peak memory (tracemalloc).

Pure: no kernel, no namespaces. Time is the median of `repeat` runs without
tracing; peak memory is one further run under tracemalloc (which slows it),
counting only what compiling allocates beyond the already converted state.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.bench.cluster import NODE, ClusterSpec, generate
from agent.bench.results import Result, median
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import ClusterState


@dataclass(frozen=True, slots=True)
class Size:
    pods: int
    policies: int
    local_pods: int

    @property
    def label(self) -> str:
        return f"{_k(self.pods)} pods/{_k(self.policies)} policies/{self.local_pods} local"


DEFAULT_SIZES = (Size(1_000, 100, 10), Size(10_000, 1_000, 100), Size(50_000, 5_000, 100))


def parse_sizes(text: str) -> tuple[Size, ...]:
    """`1000x100x10,10000x1000x100` -> sizes (pods x policies x local pods)."""
    sizes = []
    for part in text.split(","):
        fields = part.strip().lower().split("x")
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise ValueError(f"size {part!r}: expected PODSxPOLICIESxLOCAL, e.g. 10000x1000x100")
        sizes.append(Size(int(fields[0]), int(fields[1]), int(fields[2])))
    return tuple(sizes)


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def measure_compile(
    state: ClusterState, *, repeat: int = 3, options: CompileOptions | None = None
) -> tuple[list[float], int, dict[str, int]]:
    """(seconds per run, peak traced bytes, ruleset size) for compiling `state` for node-0."""
    opts = options or CompileOptions()
    seconds = []
    ruleset = None
    for _ in range(repeat):
        t = time.perf_counter()
        ruleset = compile_ruleset(state, node=NODE, options=opts)
        seconds.append(time.perf_counter() - t)
    assert ruleset is not None
    size = {
        "chains": sum(len(t.chains) for t in ruleset.tables.values()),
        "rules": sum(t.rule_count() for t in ruleset.tables.values()),
        "ipsets": len(ruleset.sets),
        "ipset_entries": sum(len(s.members) + len(s.nomatch) for s in ruleset.sets.values()),
    }
    del ruleset
    tracemalloc.start()
    try:
        compile_ruleset(state, node=NODE, options=opts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak, size


def run_compile(
    sizes: Sequence[Size], *, seed: int = 1, log: Callable[[str], None] = lambda s: None
) -> list[Result]:
    out: list[Result] = []
    for size in sizes:
        log(f"compile: generating {size.label}")
        state = generate(
            ClusterSpec(
                pods=size.pods, policies=size.policies, local_pods=size.local_pods, seed=seed
            )
        ).state()
        repeat = 3 if size.pods <= 20_000 else 2
        seconds, peak, ruleset = measure_compile(state, repeat=repeat)
        detail = {"runs_s": [round(s, 4) for s in seconds], **ruleset, **_sizes(size)}
        out.append(
            Result("compile", "-", f"time {size.label}", median(seconds) * 1000, "ms", None, detail)
        )
        out.append(
            Result("compile", "-", f"peak memory {size.label}", peak / 2**20, "MiB", None, detail)
        )
        log(f"compile: {size.label}: {median(seconds) * 1000:.0f} ms, peak {peak / 2**20:.1f} MiB")
    return out


def _sizes(size: Size) -> dict[str, int]:
    return {"pods": size.pods, "policies": size.policies, "local_pods": size.local_pods}

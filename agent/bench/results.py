"""Benchmark results as plain values, their statistics, and the two output formats.

Every stage returns `Result` rows (one measured figure each, with the goal it is
held against when the issue sets one), so the CLI, the smoke test and
docs/performance.md all read the same shape.

    quantile(values, q) -> float          nearest-rank quantile (q in 0..1)
    Result(stage, backend, name, value, unit, goal=None, detail={})
    Report(machine, config, results).as_json() / .as_table()
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


@dataclass(frozen=True, slots=True)
class Goal:
    """`value <op> limit` must hold; op is "<=" or ">="."""

    op: str
    limit: float

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


@dataclass(frozen=True, slots=True)
class Result:
    stage: str
    backend: str  # "nft", "legacy" or "-" (backend independent)
    name: str
    value: float
    unit: str
    goal: Goal | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["goal"] = str(self.goal) if self.goal else None
        out["met"] = self.met
        return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # stages that could not run, and why

    def as_json(self) -> str:
        return json.dumps(
            {
                "machine": self.machine,
                "config": self.config,
                "results": [r.as_dict() for r in self.results],
                "problems": self.problems,
            },
            indent=2,
        )

    def as_table(self) -> str:
        lines = [
            "machine: " + ", ".join(f"{k}={v}" for k, v in self.machine.items()),
            "config:  " + ", ".join(f"{k}={v}" for k, v in self.config.items()),
            "",
        ]
        header = ("stage", "backend", "measurement", "value", "goal", "met")
        rows = [header]
        for r in self.results:
            met = "-" if r.met is None else ("yes" if r.met else "NO")
            rows.append(
                (r.stage, r.backend, r.name, f"{_fmt(r.value)} {r.unit}", str(r.goal or ""), met)
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        for problem in self.problems:
            lines.append(f"NOT MEASURED: {problem}")
        return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"

"""The engine's performance goals (docs/performance.md, "Policy engine"), as tests.

Budgets are the goals of the issue; the best of a few runs is taken so a busy
machine does not fail them by accident.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.core.convert import state_from_dicts
from agent.core.model import Protocol
from agent.core.semantics import ReferenceEvaluator
from agent.core.table import compute_table
from tests.perf.engine_bench import cluster

pytestmark = pytest.mark.slow


def test_small_model_under_a_second_with_interpreter_start(tmp_path: Path) -> None:
    out = tmp_path / "m"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.perf.engine_bench",
            "--pods",
            "9",
            "--policies",
            "20",
            "--out",
            str(out),
        ],
        check=True,
    )
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "agent", "reachability", "-f", str(out)],
            capture_output=True,
            text=True,
        )
        best = min(best, time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr
    assert best < 1.0


def test_thousand_pods_two_hundred_policies_under_ten_seconds() -> None:
    t0 = time.perf_counter()
    state = state_from_dicts(cluster(1000, 200))
    ev = ReferenceEvaluator(state)
    table = compute_table(
        ev.allowed, [p for p in state.pods.values() if p.is_networked], [(80, Protocol.TCP)]
    )
    elapsed = time.perf_counter() - t0
    assert len(table.pods) == 1000
    assert elapsed < 10.0

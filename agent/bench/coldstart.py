"""Stage 2: the agent's first full apply vs the bare kernel tools loading the same payload.

Each run gets a fresh scratch namespace. The agent side is `Applier.apply`
exactly as on a start (it reads what the kernel holds, plans, runs `ipset
restore`, one `iptables-restore --noflush --wait` per family, hooks at
position 1). The bare side runs the identical text, rendered beforehand, with
nothing else: `ipset restore` then `iptables-restore --noflush --wait` per
family. The ratio of the medians is the agent's overhead over the kernel's
own cost on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.bench.results import Goal, Result, median
from agent.core.model import Family
from agent.core.render import plan
from agent.core.ruleset import Ruleset
from agent.dataplane.applier import Applier
from agent.dataplane.backend import Backend
from agent.dataplane.executor import Executor
from agent.sandbox import netns
from agent.sandbox.setns import inside

COLD_GOAL = Goal("<=", 1.3)


@dataclass(frozen=True, slots=True)
class Payload:
    """The full restore text for a ruleset, as the bare tools get it."""

    ipset_before: str
    iptables: dict[Family, str]
    ipset_after: str

    @classmethod
    def full(cls, ruleset: Ruleset) -> Payload:
        p = plan(None, ruleset)
        return cls(p.ipset_before, {f: p.payload(f, {}) for f in ruleset.tables}, p.ipset_after)


def bare_apply(backend: Backend, payload: Payload) -> float:
    """Seconds for the kernel tools alone to load `payload` (caller is inside the namespace)."""
    ex = Executor(backend)
    t = time.perf_counter()
    ex.ipset(payload.ipset_before)
    for family in sorted(payload.iptables):
        ex.iptables(family, payload.iptables[family])
    ex.ipset(payload.ipset_after)
    return time.perf_counter() - t


def agent_apply(backend: Backend, ruleset: Ruleset) -> float:
    applier = Applier(backend)
    t = time.perf_counter()
    applier.apply(ruleset)
    return time.perf_counter() - t


def run_cold(
    backend: Backend,
    ruleset: Ruleset,
    *,
    repeat: int = 3,
    label: str = "",
    log: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    payload = Payload.full(ruleset)
    agent_s: list[float] = []
    bare_s: list[float] = []
    for _ in range(repeat):
        with netns.netns("cold") as ns, inside(ns):
            agent_s.append(agent_apply(backend, ruleset))
        with netns.netns("bare") as ns, inside(ns):
            bare_s.append(bare_apply(backend, payload))
    agent, bare = median(agent_s), median(bare_s)
    rules = sum(t.rule_count() for t in ruleset.tables.values())
    detail = {
        "agent_runs_s": [round(s, 4) for s in agent_s],
        "bare_runs_s": [round(s, 4) for s in bare_s],
        "rules": rules,
        "ipsets": len(ruleset.sets),
        "ipset_entries": sum(len(s.members) + len(s.nomatch) for s in ruleset.sets.values()),
    }
    log(f"cold {backend.name}: agent {agent * 1000:.0f} ms, bare {bare * 1000:.0f} ms")
    suffix = f" {label}" if label else ""
    name = backend.name
    return [
        Result("cold", name, f"agent first full apply{suffix}", agent * 1000, "ms", None, detail),
        Result(
            "cold", name, f"bare ipset+iptables-restore{suffix}", bare * 1000, "ms", None, detail
        ),
        Result("cold", name, f"ratio agent/bare{suffix}", agent / bare, "x", COLD_GOAL, detail),
    ]

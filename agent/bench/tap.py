"""A tap on the node agent's two edges (compiler, dataplane) for timing events to the kernel.

The in-process `agent.node.agent.Agent` takes its compiler and dataplane as
arguments. `Tap.compiler(inner)` wraps the real compile closure and notes
whether the state being compiled already holds the event under test;
`Tap` itself is the Dataplane: the agent's own `ApplierDataplane` (full syncs
`Applier.apply`, the others `apply_quick`), run with the calling thread inside
the node's scratch namespace (so every iptables-restore, ipset and netlink
call lands there), recording each apply's result. When the apply of a state holding the event
returns, the event is in the kernel: `wait()` hands back that record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.core.model import ClusterState
from agent.core.ruleset import Ruleset
from agent.dataplane.applier import Applier, ApplyResult
from agent.dataplane.backend import Backend
from agent.node.engine import ApplierDataplane
from agent.sandbox.setns import inside

Check = Callable[[ClusterState], bool]


@dataclass(frozen=True, slots=True)
class Applied:
    ruleset: Ruleset
    result: ApplyResult
    hit: bool  # the compiled state held the awaited event
    compile_s: float
    apply_s: float
    started: float  # perf_counter at compile start
    done: float  # perf_counter when the apply returned


class _RecordingApplier(Applier):
    """The real Applier, keeping the result of its last apply for the tap."""

    last: ApplyResult | None = None

    def apply(self, desired: Ruleset) -> ApplyResult:
        self.last = super().apply(desired)
        return self.last

    def apply_quick(self, desired: Ruleset) -> ApplyResult:
        self.last = super().apply_quick(desired)
        return self.last


class Tap:
    def __init__(self, backend: Backend, netns: str) -> None:
        # as the agent by default: revocation (its own thread) revokes the fast path
        self.applier = _RecordingApplier(backend, revoke_fast_path=False)
        self.dataplane = ApplierDataplane(self.applier)
        self.netns = netns
        self.records: list[Applied] = []
        self._lock = threading.Lock()
        self._expect: Check | None = None
        self._hit = threading.Event()
        self._pending: tuple[bool, float, float] = (False, 0.0, 0.0)
        self.last_start = 0.0

    # -- the edges the agent calls (reconcile thread) --------------------------------------
    def compiler(self, inner: Callable[[ClusterState], Ruleset]) -> Callable[[ClusterState], Any]:
        def compile_and_note(state: ClusterState) -> Ruleset:
            started = time.perf_counter()
            self.last_start = started
            with self._lock:
                expect = self._expect
            hit = bool(expect and expect(state))
            t = time.perf_counter()
            ruleset = inner(state)
            self._pending = (hit, time.perf_counter() - t, started)
            return ruleset

        return compile_and_note

    def apply(self, desired: Any, *, full: bool) -> None:
        hit, compile_s, started = self._pending
        self._pending = (False, 0.0, 0.0)
        with inside(self.netns):
            t = time.perf_counter()
            self.dataplane.apply(desired, full=full)
            done = time.perf_counter()
        result = self.applier.last
        assert result is not None
        record = Applied(desired, result, hit, compile_s, done - t, started, done)
        with self._lock:
            self.records.append(record)
            if hit:
                self._expect = None
                self._hit.set()

    def tampered(self) -> bool:
        with inside(self.netns):
            return self.dataplane.tampered()

    # -- the benchmark's side -------------------------------------------------------------
    def expect(self, check: Check) -> None:
        with self._lock:
            self._expect = check
            self._hit.clear()

    def set_expect(self, check: Check) -> None:
        with self._lock:
            self._expect = check

    def wait(self, timeout: float) -> Applied | None:
        if not self._hit.wait(timeout):
            with self._lock:
                self._expect = None
            return None
        with self._lock:
            for record in reversed(self.records):
                if record.hit:
                    return record
        return None

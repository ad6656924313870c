"""The reconciler drives the NodeCompiler: full compile on full syncs and after a failure,
incremental in between, always equal to compile_ruleset of the synced state."""

from __future__ import annotations

from typing import Any

from agent.core.compile import compile_ruleset
from agent.core.convert import pod_from_dict
from agent.core.errors import ApplyError
from agent.kube.api import Kind
from agent.node.engine import NodeCompiler
from agent.node.reconcile import StatefulCompiler
from tests.node.fakes import pod_dict
from tests.node.test_incremental import rig


def _inner(compiler: Any) -> Any:
    assert isinstance(compiler, NodeCompiler) and isinstance(compiler, StatefulCompiler)
    return compiler.inner


def test_syncs_between_full_ones_are_incremental_and_equal_the_full_compile() -> None:
    rec, store, dp, clock = rig()
    inner = _inner(rec.compiler)
    assert not inner.last_incremental  # the first sync compiled in full
    for n, label in enumerate(("frontend", "backend", "frontend")):
        c = pod_from_dict(
            pod_dict("x", "c", labels={"app": "c", "tier": label}, ip="10.244.1.10", node="node-1")
        )
        store.upsert(Kind.PODS, c.uid, c, str(2 + n))
        clock.advance(1)
        rec.step()
        assert inner.last_incremental
        state = store.snapshot().state
        want = compile_ruleset(state, node="node-0", options=inner.options)
        assert dp.previous == want


def test_a_failed_sync_resets_the_compiler_and_the_retry_compiles_in_full() -> None:
    rec, store, dp, clock = rig()
    inner = _inner(rec.compiler)
    real_apply = dp.apply
    calls = {"n": 0}

    def flaky(desired: Any, *, full: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ApplyError("ipset restore failed")
        real_apply(desired, full=full)

    dp.apply = flaky  # type: ignore[method-assign]
    c = pod_from_dict(pod_dict("x", "c", labels={"app": "d"}, ip="10.244.1.10", node="node-1"))
    store.upsert(Kind.PODS, c.uid, c, "2")
    clock.advance(1)
    rec.step()
    assert calls["n"] == 1 and not inner.has_baseline  # reset: nothing stale survives
    assert rec.status().consecutive_failures == 1
    clock.advance(5)
    rec.step()
    assert calls["n"] == 2 and not inner.last_incremental
    assert dp.previous == compile_ruleset(
        store.snapshot().state, node="node-0", options=inner.options
    )

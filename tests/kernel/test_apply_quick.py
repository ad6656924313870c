"""The agent's incremental path against a real kernel: IncrementalCompiler + Applier.apply_quick.

Thirty local pods, isolation toggled pod by pod (so the top and drop chains are
patched in place with -D/-I rather than rewritten), pods added and deleted, a
policy changed: after every step the kernel must hold exactly what a fresh full
apply of the full compile gives, on every backend.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.incremental import IncrementalCompiler
from agent.core.model import ClusterState, Labels
from agent.dataplane.applier import Applier
from agent.dataplane.backend import select_backend
from agent.sandbox import netns
from agent.sandbox.setns import inside
from tests.builders import make_ns, make_pod, make_policy, make_state, sel
from tests.kernel.kit import BACKEND_NAMES
from tests.kernel.test_applier import NODE, fresh_full_snapshot, snapshot

pytestmark = pytest.mark.kernel
OPTIONS = CompileOptions()


def _base() -> ClusterState:
    pods = [
        make_pod(
            f"x/p{i}", "iso=yes", "pod=a", ip=(f"10.244.0.{10 + i}", f"fd00:10:244::{10 + i:x}")
        )
        for i in range(30)
    ]
    remote = make_pod("x/r", "pod=a", ip=("10.244.1.10",), node="node-1")
    deny = make_policy(
        "x/deny",
        {
            "podSelector": sel("iso=yes"),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": sel("pod=a")}], "ports": [{"port": 80}]}],
        },
    )
    return make_state(make_ns("x"), NODE, *pods, remote, deny)


def _relabel(state: ClusterState, key: str, labels: dict[str, str]) -> ClusterState:
    pods = {
        u: replace(p, labels=Labels(labels)) if p.key == key else p for u, p in state.pods.items()
    }
    return replace(state, pods=pods)


def _sequence() -> list[ClusterState]:
    states = [_base()]
    for i in (3, 17, 29):  # pods leave isolation one by one: top and drop chains patched
        states.append(_relabel(states[-1], f"x/p{i}", {"pod": "a"}))
    states.append(_relabel(states[-1], "x/p17", {"iso": "yes", "pod": "a"}))  # and come back
    states.append(_relabel(states[-1], "x/r", {"pod": "b"}))  # a remote peer leaves a set
    pods = dict(states[-1].pods)
    del pods["uid-x-p5"]
    states.append(replace(states[-1], pods=pods))
    policies = dict(states[-1].policies)
    policies["x/deny"] = make_policy("x/deny", {"podSelector": sel("iso=yes")})
    states.append(replace(states[-1], policies=policies))
    return states


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_incremental_quick_applies_equal_a_fresh_full_apply(backend: str) -> None:
    compiler = IncrementalCompiler(node="node-0", options=OPTIONS)
    with netns.netns("quick") as inc_ns, netns.netns("full") as full_ns:
        with inside(inc_ns):
            incremental = Applier(select_backend(backend))
        patched = 0
        for step, st in enumerate(_sequence()):
            ruleset = compiler.compile(st, full=step == 0)
            assert ruleset == compile_ruleset(st, node="node-0", options=OPTIONS)
            with inside(inc_ns):
                result = incremental.apply_quick(ruleset)
                assert result.full == (step == 0)
                got = snapshot(incremental.backend.mode)
            want = fresh_full_snapshot(backend, full_ns, ruleset)
            assert got == want, f"step {step}"
            if 1 <= step <= 4:  # 30 pods x 2 directions in the top and drop chains
                patched += int(result.counts.rules_written <= 20)
        assert patched == 4  # every isolation toggle was a handful of -D/-I lines
        if backend != "python-iptables":  # netlink was consulted (these batches are all
            netlink = incremental._netlink  # over its 16 entries: ipset restore took them)
            assert netlink is not None and not netlink.broken

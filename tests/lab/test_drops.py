"""`lab drops` after a probe names exactly the table's blocked pairs, with the isolating policy.

A two-node lab with the real agents (NFLOG on their drop paths): the
default-deny example is applied and probed; every blocked cell of the probe
table must show up as a drop event at the destination's node (ingress, the
destination pod, the source pod as peer, protocol and port, the policy), and
no event may name a pair the table shows open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab import drops
from agent.lab.apply import load_objects
from tests.lab.conftest import RunningLab, start_lab

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "001-deny-all-ingress"


def drop_keys(events: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (e["action"], e["direction"], e["pod"], e["peer"], e["protocol"], e["port"]) for e in events
    }


def test_probe_against_default_deny_gives_exactly_the_blocked_pairs(lab: RunningLab) -> None:
    objects = load_objects([EXAMPLE])
    lab.apply(objects)
    try:
        table, diff = lab.probe(timeout=0.5)
        assert diff.empty
        blocked = {
            ("drop", "ingress", dst, src, b.protocol.value, b.port)
            for b in table.blocks
            for src, row in b.allowed.items()
            for dst, ok in row.items()
            if not ok and src != dst
        }
        assert blocked, "the example blocks something"
        deadline = time.monotonic() + 10
        while True:
            events, problems = drops.gather(lab.topo)
            assert not problems
            events = [e for e in events if e["action"] == "drop"]  # in any test order
            if drop_keys(events) >= blocked or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert drop_keys(events) == blocked
        assert {tuple(e["policies"]) for e in events} == {("default/deny-all-ingress",)}
        assert {e["node"] for e in events} == {"node-0"}  # database lives on node-0
        assert all(e["count"] >= 1 and e["first"] <= e["last"] for e in events)

        # the CLI prints the same, one JSON object per line with the documented keys
        out = lab.cli("drops", "-o", "json")
        lines = [json.loads(line) for line in out.splitlines()]
        lines = [line for line in lines if line["action"] == "drop"]
        assert lines and all(list(line) == list(drops.KEYS) for line in lines)
        assert drop_keys(lines) == blocked
    finally:
        lab.delete(objects)


def test_audited_policy_leaves_cells_open_and_reports_them_as_audit(lab: RunningLab) -> None:
    objects = load_objects([EXAMPLE])
    for obj in objects:
        if obj.get("kind") == "NetworkPolicy":
            obj["metadata"]["annotations"] = {"netpol-agent.io/enforcement": "audit"}
    enforced = load_objects([EXAMPLE])
    lab.apply(objects)
    try:
        table, diff = lab.probe(timeout=0.5)
        assert diff.empty
        assert all(ok for b in table.blocks for row in b.allowed.values() for ok in row.values())
        # the cells the enforced policy blocks are exactly the ones reported as audit
        from agent.core.convert import state_from_dicts
        from agent.core.semantics import ReferenceEvaluator

        ref = ReferenceEvaluator(state_from_dicts(enforced))
        pods = {p.key: p for p in ref.pods.values()}
        would = {
            ("audit", "ingress", dst, src, b.protocol.value, b.port)
            for b in table.blocks
            for src in b.allowed
            for dst in b.allowed[src]
            if src != dst and not ref.allowed(pods[src], pods[dst], b.port, b.protocol)
        }
        assert would
        deadline = time.monotonic() + 10
        while True:
            events, _ = drops.gather(lab.topo)
            audits = [e for e in events if e["action"] == "audit"]
            if drop_keys(audits) >= would or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert drop_keys(audits) == would
        assert {tuple(e["policies"]) for e in audits} == {("default/deny-all-ingress",)}
    finally:
        lab.delete(objects)


def test_a_restarted_agent_binds_the_group_again(lab: RunningLab) -> None:
    """Kill node-0's agent; the one the supervisor starts reports new drops."""
    import os
    import signal

    from agent.lab.probe import fetch_statusz
    from agent.lab.state import alive_pid

    objects = load_objects([EXAMPLE])
    lab.apply(objects)
    try:
        pid = alive_pid(lab.paths.agent_pid("node-0"))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        node0 = next(n for n in lab.topo.nodes if n.name == "node-0")

        def restarted() -> bool:
            new = alive_pid(lab.paths.agent_pid("node-0"))
            try:
                return new not in (None, pid) and bool(fetch_statusz(lab.topo, node0)["ready"])
            except (OSError, ValueError):
                return False

        deadline = time.monotonic() + 30
        while not restarted():
            assert time.monotonic() < deadline, "node-0's agent did not come back"
            time.sleep(0.3)
        since = time.time()
        lab.probe(timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            events, _ = drops.gather(lab.topo)
            fresh = [e for e in events if e["node"] == "node-0" and e["first"] >= since - 1]
            if fresh or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert fresh, "no drop event from the restarted agent"
        assert {e["policies"][0] for e in fresh} == {"default/deny-all-ingress"}
    finally:
        lab.delete(objects)


@pytest.fixture(scope="module")
def audit_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    yield from start_lab(
        tmp_path_factory.mktemp("lab"), nodes=2, agent_args=("--enforcement", "audit")
    )


def test_run_enforcement_audit_audits_every_policy(audit_lab: RunningLab) -> None:
    """`netpol-agent run --enforcement audit` on every node: nothing blocked, all reported."""
    objects = load_objects([EXAMPLE])
    audit_lab.apply(objects)
    try:
        table, _ = audit_lab.probe(timeout=0.5)
        assert all(ok for b in table.blocks for row in b.allowed.values() for ok in row.values())
        deadline = time.monotonic() + 10
        while True:
            events, _ = drops.gather(audit_lab.topo)
            if events or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert events and {e["action"] for e in events} == {"audit"}
        assert {tuple(e["policies"]) for e in events} == {("default/deny-all-ingress",)}
    finally:
        audit_lab.delete(objects)

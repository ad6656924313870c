"""Every scenario in examples/, probed through a two-node lab, agrees with the engine.

One lab for all scenarios: each is applied, probed over TCP and UDP (every pod
also gets the UDP twin of its TCP containerPorts, so UDP cells test protocol
matching instead of being trivially blocked), compared cell for cell with the
ReferenceEvaluator, and deleted again.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agent.core.model import Protocol
from agent.core.table import format_diff, format_table
from agent.lab.apply import load_objects
from agent.lab.netsock import sctp_supported
from tests.lab.conftest import RunningLab

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIOS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []


def with_udp_twins(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Pod":
            for container in obj["spec"].get("containers") or []:
                ports = container.get("ports") or []
                have = {(p["containerPort"], p.get("protocol", "TCP")) for p in ports}
                for p in list(ports):
                    if (
                        p.get("protocol", "TCP") == "TCP"
                        and (p["containerPort"], "UDP") not in have
                    ):
                        twin = {"containerPort": p["containerPort"], "protocol": "UDP"}
                        if p.get("name"):
                            twin["name"] = f"{p['name']}-u"[:15]
                        ports.append(twin)
        out.append(obj)
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_scenario_agrees_with_engine(lab: RunningLab, scenario: Path) -> None:
    objects = with_udp_twins(load_objects([scenario]))
    lab.apply(objects)
    try:
        table, diff = lab.probe()
        protocols = {b.protocol for b in table.blocks}
        assert Protocol.UDP in protocols or not sctp_supported()
        assert diff.empty, f"{scenario.name}:\n{format_diff(diff)}\nkernel:\n{format_table(table)}"
    finally:
        lab.delete(objects)

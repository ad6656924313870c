"""`lab drops -o table`: one row per event, ports and policies readable."""

from __future__ import annotations

from typing import Any

from agent.lab.drops import KEYS, format_table


def test_table_rows() -> None:
    events: list[dict[str, Any]] = [
        dict(zip(KEYS, ("node-0", "drop", "ingress", "x/a", "y/b", "TCP", 80, ["x/deny"], 3, 1.0, 2.0), strict=True)),
        dict(zip(KEYS, ("node-1", "audit", "egress", "x/c", "10.0.0.1", "ICMP", None, [], 1, 1.0, 1.0), strict=True)),
    ]  # fmt: skip
    lines = format_table(events).splitlines()
    assert lines[0].split() == [
        "NODE", "ACTION", "DIR", "POD", "PEER", "PROTO", "PORT", "COUNT", "LAST", "POLICIES",
    ]  # fmt: skip
    assert lines[1].split()[:8] == ["node-0", "drop", "ingress", "x/a", "y/b", "TCP", "80", "3"]
    assert lines[1].split()[-1] == "x/deny"
    assert lines[2].split()[6] == "-" and lines[2].split()[-1] == "-"

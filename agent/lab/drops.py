"""`netpol-agent lab drops`: every lab node's recent drop and audit events, gathered.

Each agent serves its recent events at /drops (agent.node.droplog); this reads
them from every node over the underlay, like `lab status` reads /statusz, and
prints one JSON object per line (keys `node action direction pod peer protocol
port policies count first last`) or a table. A node whose agent cannot be
reached is named on stderr and left out; the others still print.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from agent.lab.probe import fetch_json
from agent.lab.topology import Topology

KEYS = (
    "node",
    "action",
    "direction",
    "pod",
    "peer",
    "protocol",
    "port",
    "policies",
    "count",
    "first",
    "last",
)


def gather(topo: Topology) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every node's events (oldest first per node), and the nodes that could not be read."""
    events: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    for node in topo.nodes:
        try:
            body = fetch_json(topo, node, "/drops")
        except (OSError, ValueError) as exc:
            problems[node.name] = f"unreachable: {exc}"
            continue
        raw = body.get("events") if isinstance(body, Mapping) else None
        if not isinstance(raw, list):
            problems[node.name] = "no events list in /drops"
            continue
        events += [{k: e.get(k) for k in KEYS} for e in raw if isinstance(e, Mapping)]
    return events, problems


def format_table(events: Iterable[Mapping[str, Any]]) -> str:
    rows = [("NODE", "ACTION", "DIR", "POD", "PEER", "PROTO", "PORT", "COUNT", "LAST", "POLICIES")]
    for e in events:
        rows.append(
            (
                str(e["node"]),
                str(e["action"]),
                str(e["direction"]),
                str(e["pod"]),
                str(e["peer"]),
                str(e["protocol"]),
                "-" if e["port"] is None else str(e["port"]),
                str(e["count"]),
                time.strftime("%H:%M:%S", time.localtime(float(e["last"] or 0))),
                ",".join(e["policies"] or ()) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )

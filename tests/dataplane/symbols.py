"""Readable stand-ins for hashed kernel names, so expected payloads can be written by hand.

`NPA-I-KTREFQC5WNKIQ6SF` becomes `NPA-I[x/a]`, `NPA-PI-...` becomes `NPA-PI[x/allow]`
and `npa-s4-...` becomes `npa-s4[pods {pod=b|} in ns=x]` (the set's description).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from agent.core import naming
from agent.core.model import ClusterState
from agent.core.ruleset import Ruleset

GOLDEN = Path(__file__).parent / "golden"


def symbol_table(state: ClusterState, *rulesets: Ruleset | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pod in state.pods.values():
        for d, tag in (("ingress", "I"), ("egress", "E")):
            out[naming.pod_chain(d, pod.uid)] = f"NPA-{tag}[{pod.key}]"
    for pol in state.policies.values():
        for d, tag in (("ingress", "PI"), ("egress", "PE")):
            out[naming.policy_chain(d, pol.key)] = f"NPA-{tag}[{pol.key}]"
    for rs in rulesets:
        if rs is None:
            continue
        for name, s in rs.sets.items():
            out[name] = f"{name[:6]}[{s.description}]"
            out[naming.temp_set_name(name)] = f"npa-t{name[4:6]}[{s.description}]"
    return out


def symbolize(text: str, table: dict[str, str]) -> str:
    return re.sub(r"\b(NPA-[A-Z0-9-]+|npa-[a-z0-9-]+)", lambda m: table.get(m[1], m[1]), text)


def assert_text(expected: str, actual: str, what: str = "payload") -> None:
    """Compare texts line by line; on failure show a unified diff."""
    if expected.strip() == actual.strip():
        return
    diff = "\n".join(
        difflib.unified_diff(
            expected.strip().splitlines(),
            actual.strip().splitlines(),
            "expected",
            "actual",
            lineterm="",
        )
    )
    raise AssertionError(f"{what} differs:\n{diff}\n--- actual in full:\n{actual}")


def assert_golden(name: str, actual: str) -> None:
    """Compare with tests/dataplane/golden/<name>.txt (NPA_UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("NPA_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
    if not path.exists():
        raise AssertionError(f"{path} missing: run with NPA_UPDATE_GOLDEN=1 to create it")
    assert_text(path.read_text(), actual, f"golden {path.name}")

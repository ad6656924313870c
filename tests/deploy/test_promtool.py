"""The PrometheusRule's alerts, checked and unit-tested by the real `promtool`.

`promtool check rules` validates the rule groups as Prometheus loads them, and
`promtool test rules` runs deploy/monitoring/tests/alerts.test.yaml: every
alert has a case where it fires (exact labels and rendered annotations) and
one where it stays silent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.support import DEPLOY, find, render

TESTS = DEPLOY / "monitoring" / "tests" / "alerts.test.yaml"


def _promtool() -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool missing: scripts/setup installs Debian's prometheus package"
    return tool


def _rules_file(tmp_path: Path) -> Path:
    rule = find(render("deploy/monitoring"), "PrometheusRule", "netpol-agent")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_check_rules(tmp_path: Path) -> None:
    out = _run("check", "rules", str(_rules_file(tmp_path)), cwd=tmp_path)
    assert "SUCCESS" in out


def test_every_alert_fires_and_stays_silent_in_the_unit_tests() -> None:
    rule = find(render("deploy/monitoring"), "PrometheusRule", "netpol-agent")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    cases = [
        case
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts - fires == set(), "alerts without a firing case"
    assert alerts - silent == set(), "alerts without a silent case"


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    _rules_file(tmp_path)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    out = _run("test", "rules", TESTS.name, cwd=tmp_path)
    assert "SUCCESS" in out

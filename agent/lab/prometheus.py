"""`lab up --prometheus`: a real Prometheus scraping every lab agent as deploy/monitoring does.

Debian's `prometheus` runs inside the lab's underlay namespace (where the
agents' metrics addresses are), listening on that namespace's 127.0.0.1:9090;
a relay in the lab process makes it reachable on the host's 127.0.0.1 (a free
port, written to `prometheus.json` and shown by `lab status`). Nothing of it
touches the host's network.

What it is configured with mirrors the monitoring manifests:

- one scrape job named like the metrics Service (`netpol-agent-metrics`, the
  `job` label the ServiceMonitor gives and the alerts select on), every node's
  agent a target labelled `node` (the ServiceMonitor's relabelling of the pod's
  node name), `honor_labels` (its honorLabels), path /metrics;
- the rule groups of deploy/monitoring/prometheusrule.yaml, loaded as they are,
  except that `--alert-for` replaces every `for:` so a test sees alerts fire
  within seconds; the scrape and evaluation interval is `--prometheus-interval`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from agent.core.errors import InputError
from agent.lab.relay import Relay
from agent.lab.state import LabPaths
from agent.lab.topology import LabError, Topology

log = logging.getLogger(__name__)

JOB = "netpol-agent-metrics"  # the metrics Service (deploy/base/service.yaml)
PORT = 9090  # inside the underlay namespace, on its loopback
METRICS_PORT = 9847
READY_TIMEOUT = 30.0


def rules_file() -> Path:
    """deploy/monitoring/prometheusrule.yaml of the source tree this package runs from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "prometheusrule.yaml"


def rule_groups(path: Path, *, alert_for: str = "") -> dict[str, Any]:
    """The PrometheusRule's `spec` (a Prometheus rules file), `for:` replaced if asked."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the PrometheusRule: {exc}") from exc
    spec = doc.get("spec") if isinstance(doc, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("groups"), list):
        raise InputError(f"{path}: no spec.groups in the PrometheusRule")
    if alert_for:
        for group in spec["groups"]:
            for rule in group.get("rules", []):
                if "alert" in rule:
                    rule["for"] = alert_for
    return spec


def config(topo: Topology, *, interval: float, rules: Path) -> dict[str, Any]:
    """prometheus.yml: one job over every node's agent, labelled like the ServiceMonitor does."""
    every = f"{max(interval, 0.1):g}s"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "metrics_path": "/metrics",
                "scrape_interval": every,
                "scrape_timeout": every,
                "static_configs": [
                    {"targets": [f"{node.ip}:{METRICS_PORT}"], "labels": {"node": node.name}}
                    for node in topo.nodes
                ],
            }
        ],
    }


class LabPrometheus:
    """The Prometheus process of one lab and its host-side relay."""

    def __init__(self, *, topo: Topology, paths: LabPaths, interval: float, alert_for: str) -> None:
        self.topo, self.paths = topo, paths
        self.interval, self.alert_for = interval, alert_for
        self.dir = paths.root / "prometheus"
        self._proc: subprocess.Popen[bytes] | None = None
        self._relay: Relay | None = None

    @property
    def url(self) -> str:
        assert self._relay is not None
        return f"http://127.0.0.1:{self._relay.port}"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        rules = self.dir / "rules.yaml"
        rules.write_text(yaml.safe_dump(rule_groups(rules_file(), alert_for=self.alert_for)))
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config(self.topo, interval=self.interval, rules=rules)))
        netns = self.topo.net_netns
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        argv = [
            "ip", "netns", "exec", netns, "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORT}",
            "--storage.tsdb.retention.time=1d",
        ]  # fmt: skip
        with (self.paths.logs / "prometheus.log").open("ab") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self._relay = Relay(
            netns=None, listen=("127.0.0.1", 0), target=("127.0.0.1", PORT), target_netns=netns
        )
        self._wait_ready()
        (self.paths.root / "prometheus.json").write_text(json.dumps({"url": self.url}))
        log.info("prometheus ready at %s", self.url)
        return self.url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise LabError(
                    f"prometheus exited with {code}; see {self.paths.logs / 'prometheus.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise LabError(f"prometheus not ready within {READY_TIMEOUT:g}s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def address(paths: LabPaths) -> str | None:
    """The host-side URL of a running lab's Prometheus, if it has one."""
    try:
        data = json.loads((paths.root / "prometheus.json").read_text())
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) else None

"""Alerts and the Grafana dashboard are built on metrics the agent really exports.

Every PromQL expression parses (promql-parser), and every `netpol_*` name in it
is a series agent/node/metrics.py exposes (families expanded to the sample
names Prometheus sees: `_total` for counters, `_bucket/_sum/_count` for
histograms). The Prometheus Operator objects get a structural check, as their
CRD schemas are not bundled with kubernetes-validate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from agent.node.droplog import DropMetrics
from agent.node.metrics import DropCount, Metrics, StateCollector, StateView
from tests.deploy.support import DEPLOY, Doc, find, render

NAME = re.compile(r"\b(netpol_[a-z0-9_]+)\b")


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    DropMetrics(registry)
    drops = [DropCount(namespace="x", pod="a", direction="ingress", packets=1, bytes=60)]
    registry.register(StateCollector(lambda: StateView(), lambda: drops))
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def _rules() -> list[Doc]:
    rule = find(render("deploy/monitoring"), "PrometheusRule", "netpol-agent")
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def _dashboard() -> dict[str, Any]:
    text = (DEPLOY / "monitoring" / "grafana-dashboard.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def _parse(expr: str) -> None:
    # Grafana's $__rate_interval and $node are substituted before Prometheus sees them.
    concrete = expr.replace("$__rate_interval", "1m").replace("$node", ".*")
    promql_parser.parse(concrete)


def test_series_names_include_the_documented_basics() -> None:
    names = exported_series()
    assert {"netpol_sync_duration_seconds_bucket", "netpol_dropped_packets_total"} <= names


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_alert_expression_parses_and_uses_real_metrics(rule: Doc) -> None:
    _parse(rule["expr"])
    unknown = set(NAME.findall(rule["expr"])) - exported_series()
    assert not unknown, f"{rule['alert']} uses metrics the agent does not export: {unknown}"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_alerts_the_issue_asks_for() -> None:
    by_name = {r["alert"]: r["expr"] for r in _rules()}
    assert "netpol_sync_failures_total" in by_name["NetpolAgentSyncFailing"]
    no_sync = by_name["NetpolAgentNoRecentSync"]
    assert "netpol_last_successful_sync_timestamp_seconds" in no_sync and "300" in no_sync
    assert "netpol_dropped_packets_total" in by_name["NetpolDropsRisingSharply"]
    assert "netpol_policies_invalid" in by_name["NetpolInvalidPolicies"]


@pytest.mark.parametrize("title,expr", _dashboard_exprs())
def test_dashboard_query_parses_and_uses_real_metrics(title: str, expr: str) -> None:
    _parse(expr)
    names = set(NAME.findall(expr))
    assert names, f"panel {title!r} queries no netpol metric"
    unknown = names - exported_series()
    assert not unknown, f"panel {title!r} uses metrics the agent does not export: {unknown}"


def test_dashboard_covers_latency_drops_and_kernel_objects() -> None:
    exprs = " ".join(e for _, e in _dashboard_exprs())
    for needed in (
        "netpol_sync_duration_seconds_bucket",  # sync latency
        "netpol_event_to_kernel_seconds_bucket",  # programming latency
        "sum by (namespace, direction) (rate(netpol_dropped_packets_total",  # per namespace
        "sum by (namespace, pod, direction) (rate(netpol_dropped_packets_total",  # per pod
        "netpol_owned_rules",
        "netpol_owned_ipsets",
    ):
        assert needed in exprs, needed
    ids = [p["id"] for p in _panels(_dashboard()["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_is_shipped_as_a_sidecar_configmap() -> None:
    cm = find(render("deploy/monitoring"), "ConfigMap", "netpol-agent-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["netpol-agent.json"]) == _dashboard()


def test_service_monitor_scrapes_the_metrics_service() -> None:
    base = render("deploy/base")
    service = find(base, "Service", "netpol-agent-metrics")
    monitor = find(render("deploy/monitoring"), "ServiceMonitor", "netpol-agent")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # Keep the drop counters' own namespace/pod labels (see servicemonitor.yaml).
    assert endpoint["honorLabels"] is True


def test_alert_job_label_is_the_metrics_service() -> None:
    down = next(r for r in _rules() if r["alert"] == "NetpolAgentDown")
    service = find(render("deploy/base"), "Service", "netpol-agent-metrics")
    assert f'job="{service["metadata"]["name"]}"' in down["expr"]

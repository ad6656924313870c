"""Every Prometheus metric of the agent, in one module, registered into a passed registry.

Event-driven metrics (sync durations, latencies, watch events, failures) are
updated by the reconciler and watchers through `Metrics`; state-derived
gauges (policies, selected pods, owned chains/rules/set entries, kernel drop
counters) are computed at scrape time by `StateCollector` from a view the
agent provides, so they can never drift from the state they describe.
Names use base units and the `netpol_` prefix; docs/metrics.md lists them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.kube.api import Kind

SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The event-driven metrics. Also implements the watchers' WatchObserver."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sync_duration = Histogram(
            "netpol_sync_duration_seconds",
            "Time to compile the cluster state and program the kernel, per sync.",
            ["kind", "result"],
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.event_to_kernel = Histogram(
            "netpol_event_to_kernel_seconds",
            "From a watch event changing the state to the kernel enforcing it.",
            ["resource"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "netpol_last_successful_sync_timestamp_seconds",
            "Unix time of the last sync that programmed the kernel successfully.",
            registry=registry,
        )
        self.sync_failures = Counter(
            "netpol_sync_failures",
            "Failed syncs by the phase that failed (compile, apply, tamper_check, after_apply).",
            ["phase"],
            registry=registry,
        )
        self.tamper_detected = Counter(
            "netpol_tamper_detected",
            "Times the canary check found our rules changed behind our back.",
            registry=registry,
        )
        self.watch_events = Counter(
            "netpol_watch_events",
            "Watch events received, by resource and event type.",
            ["resource", "type"],
            registry=registry,
        )
        self.watch_restarts = Counter(
            "netpol_watch_restarts",
            "Watches restarted, by resource and reason (gone, error, rejected, bug).",
            ["resource", "reason"],
            registry=registry,
        )
        self.build_info = Gauge(
            "netpol_build_info",
            "Always 1; labels carry the version.",
            ["version", "python_version"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        for kind in Kind:
            for reason in ("gone", "error"):
                self.watch_restarts.labels(kind.value, reason)
        for phase in ("compile", "apply", "tamper_check", "after_apply"):
            self.sync_failures.labels(phase)

    # WatchObserver
    def watch_event(self, kind: Kind, event_type: str) -> None:
        self.watch_events.labels(kind.value, event_type).inc()

    def watch_restart(self, kind: Kind, reason: str) -> None:
        self.watch_restarts.labels(kind.value, reason).inc()


@dataclass(frozen=True, slots=True)
class DropCount:
    namespace: str
    pod: str
    direction: str  # "ingress" | "egress"
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class StateView:
    """What the collector reports; built by the agent from its last applied state."""

    ready: bool = False
    objects: Mapping[str, int] = field(default_factory=dict)  # resource -> count
    policies: int = 0
    invalid_policies: int = 0
    local_pods: int = 0
    selected_local_pods: Mapping[str, int] = field(default_factory=dict)  # direction -> n
    owned_chains: int = 0
    owned_rules: int = 0
    owned_ipsets: int = 0
    owned_ipset_entries: int = 0
    synced_resource_version: int = 0


class StateCollector(Collector):
    """State-derived gauges, and the kernel's drop counters, read at scrape time."""

    def __init__(
        self,
        view: Callable[[], StateView],
        drops: Callable[[], Iterable[DropCount]] | None = None,
    ) -> None:
        self._view = view
        self._drops = drops

    def describe(self) -> Iterable[Metric]:
        return []  # dynamic: do not let the registry call collect() at registration

    def collect(self) -> Iterator[Metric]:
        v = self._view()
        yield _gauge(
            "netpol_ready", "1 once every kind was listed and a sync succeeded.", int(v.ready)
        )
        objects = GaugeMetricFamily(
            "netpol_cluster_objects", "Objects the agent holds, by resource.", labels=["resource"]
        )
        for resource, count in sorted(v.objects.items()):
            objects.add_metric([resource], count)
        yield objects
        yield _gauge("netpol_policies", "NetworkPolicies in the cluster.", v.policies)
        yield _gauge(
            "netpol_policies_invalid",
            "NetworkPolicies that failed validation (they fail closed).",
            v.invalid_policies,
        )
        yield _gauge("netpol_local_pods", "Networked pods on this node.", v.local_pods)
        selected = GaugeMetricFamily(
            "netpol_local_pods_selected",
            "Local pods isolated by at least one policy, by direction.",
            labels=["direction"],
        )
        for direction in ("ingress", "egress"):
            selected.add_metric([direction], v.selected_local_pods.get(direction, 0))
        yield selected
        yield _gauge(
            "netpol_owned_chains", "iptables chains we own (NPA-*), all families.", v.owned_chains
        )
        yield _gauge(
            "netpol_owned_rules", "iptables rules in chains we own, all families.", v.owned_rules
        )
        yield _gauge("netpol_owned_ipsets", "ipsets we own (npa-*).", v.owned_ipsets)
        yield _gauge(
            "netpol_owned_ipset_entries", "Entries in ipsets we own.", v.owned_ipset_entries
        )
        yield _gauge(
            "netpol_synced_resource_version",
            "Newest resourceVersion (min over kinds) the kernel is known to reflect.",
            v.synced_resource_version,
        )
        if self._drops is not None:
            yield from _drop_families(self._drops())


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _drop_families(drops: Iterable[DropCount]) -> Iterator[Metric]:
    labels = ["namespace", "pod", "direction"]
    packets = CounterMetricFamily(
        "netpol_dropped_packets",
        "Packets dropped by policy, per local pod and direction (kernel counters).",
        labels=labels,
    )
    octets = CounterMetricFamily(
        "netpol_dropped_bytes",
        "Bytes dropped by policy, per local pod and direction (kernel counters).",
        labels=labels,
    )
    for d in drops:
        packets.add_metric([d.namespace, d.pod, d.direction], d.packets)
        octets.add_metric([d.namespace, d.pod, d.direction], d.bytes)
    yield packets
    yield octets

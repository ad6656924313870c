"""The reconciler with a fake dataplane and fake time: gating, coalescing, failures, health."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.core.convert import namespace_from_dict, node_from_dict, pod_from_dict, policy_from_dict
from agent.core.model import ClusterState
from agent.kube.api import Kind
from agent.node.metrics import Metrics
from agent.node.pacing import Action, Backoff, Pacer
from agent.node.reconcile import Reconciler
from agent.node.state import Store
from tests.node.fakes import FakeClock, FakeDataplane, node_dict, ns_dict, pod_dict, policy_dict


class Rig:
    def __init__(self, **pacer: float) -> None:
        self.clock = FakeClock()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.dataplane = FakeDataplane()
        self.compiled: list[ClusterState] = []
        self.store = Store(clock=self.clock.monotonic)
        self.pacer = Pacer(
            now=self.clock.now,
            backoff=Backoff(1.0, 8.0, jitter=0.0),
            min_interval=pacer.get("min_interval", 0.5),
            resync_interval=pacer.get("resync_interval", 60.0),
            tamper_interval=pacer.get("tamper_interval", 10.0),
        )
        self.rec = Reconciler(
            node_name="node-0",
            store=self.store,
            compiler=self.compile,
            dataplane=self.dataplane,
            pacer=self.pacer,
            clock=self.clock,
            metrics=self.metrics,
            healthz_threshold=30.0,
        )
        self.store.set_on_change(self.rec.notify)

    def compile(self, state: ClusterState) -> Any:
        self.compiled.append(state)
        return ("ruleset", len(self.compiled))

    def list_all(self, rv: str = "10") -> None:
        self.store.replace(Kind.NAMESPACES, {"x": namespace_from_dict(ns_dict("x"))}, rv)
        self.store.replace(
            Kind.PODS, {"uid-x-a": pod_from_dict(pod_dict("x", "a", labels={"app": "a"}))}, rv
        )
        self.store.replace(Kind.NETWORK_POLICIES, {}, rv)
        self.store.replace(Kind.CLUSTER_NETWORK_POLICIES, {}, rv)
        self.store.replace(Kind.NODES, {"node-0": node_from_dict(node_dict("node-0"))}, rv)

    def run_until_idle(self, limit: int = 20) -> list[Action]:
        """Step until nothing is due now; returns the sync actions taken."""
        actions = []
        for _ in range(limit):
            before = len(self.dataplane.applied) + self.pacer.failures
            next_at = self.rec.step()
            if next_at > self.clock.now:
                break
            if len(self.dataplane.applied) + self.pacer.failures != before:
                actions.append(
                    Action.FULL_SYNC
                    if self.dataplane.applied and self.dataplane.applied[-1][1]
                    else Action.INCREMENTAL_SYNC
                )
        return actions

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def test_nothing_written_until_every_kind_listed() -> None:
    rig = Rig()
    rig.store.replace(Kind.PODS, {}, "5")
    rig.store.replace(Kind.NAMESPACES, {}, "5")
    rig.store.replace(Kind.NETWORK_POLICIES, {}, "5")
    rig.store.replace(Kind.CLUSTER_NETWORK_POLICIES, {}, "5")
    assert rig.rec.step() == float("inf")
    assert rig.dataplane.applied == [] and rig.compiled == []
    assert rig.rec.ready() == (False, "waiting for the first list of nodes")
    assert rig.rec.healthy()[0]
    rig.store.replace(Kind.NODES, {}, "5")
    rig.rec.step()
    assert [full for _, full in rig.dataplane.applied] == [True]
    assert rig.rec.ready() == (True, "ok")
    assert rig.rec.statusz()["synced_resource_version"] == "5"


def test_burst_of_pod_events_coalesces_into_one_sync() -> None:
    rig = Rig()
    rig.list_all()
    rig.rec.step()
    for i in range(1000):
        pod = pod_from_dict(pod_dict("x", f"p{i}", ip=f"10.244.{i // 200}.{10 + i % 200}"))
        rig.store.upsert(Kind.PODS, pod.uid, pod, str(11 + i))
    rig.clock.advance(0.5)
    rig.run_until_idle()
    assert len(rig.dataplane.applied) == 2  # the initial full sync, then one for the burst
    assert rig.dataplane.applied[1][1] is False  # incremental
    assert len(rig.compiled[-1].pods) == 1001
    assert rig.rec.status().synced_resource_version == 10  # min over kinds: the others
    for kind in (Kind.NAMESPACES, Kind.NETWORK_POLICIES, Kind.NODES, Kind.CLUSTER_NETWORK_POLICIES):
        rig.store.bookmark(kind, "1010")
    rig.rec.step()
    assert rig.rec.status().synced_resource_version == 1010
    assert rig.sample("netpol_event_to_kernel_seconds_count", resource="pods") == 1001


def test_no_op_updates_and_bookmarks_advance_without_syncing() -> None:
    rig = Rig()
    rig.list_all()
    rig.rec.step()
    same = pod_from_dict(pod_dict("x", "a", labels={"app": "a"}))
    rig.store.upsert(Kind.PODS, same.uid, same, "20")
    for kind in (Kind.NAMESPACES, Kind.NETWORK_POLICIES, Kind.NODES, Kind.CLUSTER_NETWORK_POLICIES):
        rig.store.bookmark(kind, "21")
    rig.clock.advance(1)
    rig.run_until_idle()
    assert len(rig.dataplane.applied) == 1
    assert rig.rec.statusz()["synced_resource_version"] == "20"


def test_failed_sync_keeps_old_rules_backs_off_and_retries_full() -> None:
    rig = Rig()
    rig.list_all()
    rig.rec.step()
    first = rig.dataplane.current
    rig.dataplane.fail = 2
    pol = policy_from_dict(policy_dict("x", "deny"))
    rig.store.upsert(Kind.NETWORK_POLICIES, pol.key, pol, "30")
    rig.clock.advance(1)
    rig.rec.step()
    assert rig.dataplane.current == first  # old rules stay
    assert rig.rec.status().synced_resource_version == 10
    assert rig.sample("netpol_sync_failures_total", phase="apply") == 1
    assert rig.rec.step() > rig.clock.now  # backing off
    rig.clock.advance(1.0)
    rig.rec.step()  # fails again
    rig.clock.advance(2.0)
    rig.rec.step()
    assert rig.dataplane.applied[-1][1] is True  # retried as a full sync
    assert "x/deny" in rig.compiled[-1].policies
    assert rig.rec.status().consecutive_failures == 0
    assert (
        rig.sample("netpol_sync_duration_seconds_count", kind="incremental", result="failure") == 1
    )
    assert rig.sample("netpol_sync_duration_seconds_count", kind="full", result="success") == 2


def test_compile_error_is_a_failed_sync_not_a_crash() -> None:
    rig = Rig()
    rig.list_all()

    def boom(state: ClusterState) -> Any:
        raise ValueError("compiler bug")

    rig.rec.compiler = boom
    rig.rec.step()
    assert rig.dataplane.applied == []
    assert rig.sample("netpol_sync_failures_total", phase="compile") == 1
    assert "compile: compiler bug" in rig.rec.ready()[1]


def test_tamper_check_forces_a_full_sync() -> None:
    rig = Rig()
    rig.list_all()
    rig.rec.step()
    rig.clock.advance(10)
    rig.dataplane.tamper = True
    rig.run_until_idle()
    assert [full for _, full in rig.dataplane.applied] == [True, True]
    assert rig.sample("netpol_tamper_detected_total") == 1


def test_periodic_resync_is_full() -> None:
    rig = Rig(tamper_interval=1000)
    rig.list_all()
    rig.rec.step()
    rig.clock.advance(60)
    rig.run_until_idle()
    assert [full for _, full in rig.dataplane.applied] == [True, True]


def test_invalid_policy_logged_once_with_policy_and_field(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    rig.list_all()
    bad = policy_dict("x", "bad", ingress=[{"ports": [{"port": 99999}]}])
    pol = policy_from_dict(bad)
    assert not pol.valid
    rig.store.upsert(Kind.NETWORK_POLICIES, pol.key, pol, "11")
    with caplog.at_level(logging.ERROR):
        rig.rec.step()
        pod = pod_from_dict(pod_dict("x", "b", ip="10.244.0.11"))
        rig.store.upsert(Kind.PODS, pod.uid, pod, "12")
        rig.clock.advance(1)
        rig.rec.step()
    records = [r for r in caplog.records if r.__dict__.get("policy") == "x/bad"]
    assert len(records) == 1
    assert records[0].__dict__["field"].startswith("spec.ingress[0].ports[0]")
    assert rig.rec.status().view.invalid_policies == 1
    assert len(rig.dataplane.applied) == 2  # the invalid policy did not stop the syncs


def test_healthz_fails_when_a_due_sync_keeps_failing() -> None:
    rig = Rig()
    rig.list_all()
    rig.dataplane.fail = 1000
    for _ in range(10):
        rig.rec.step()
        rig.clock.advance(8)
    ok, why = rig.rec.healthy()
    assert not ok and "no successful sync" in why
    rig.dataplane.fail = 0
    rig.clock.advance(8)
    rig.rec.step()
    assert rig.rec.healthy() == (True, "ok")


def test_selected_local_pods_by_direction() -> None:
    rig = Rig()
    rig.list_all()
    remote = pod_from_dict(pod_dict("x", "r", labels={"app": "a"}, node="node-1", ip="10.244.1.10"))
    rig.store.upsert(Kind.PODS, remote.uid, remote, "11")
    pol = policy_from_dict(
        policy_dict("x", "p", selector={"app": "a"}, types=("Ingress", "Egress"))
    )
    rig.store.upsert(Kind.NETWORK_POLICIES, pol.key, pol, "12")
    rig.rec.step()
    view = rig.rec.status().view
    assert view.local_pods == 1 and view.policies == 1
    assert dict(view.selected_local_pods) == {"ingress": 1, "egress": 1}


def test_missing_node_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    rig.list_all()
    rig.store.delete(Kind.NODES, "node-0", "11")
    with caplog.at_level(logging.WARNING):
        rig.rec.step()
        pod = pod_from_dict(pod_dict("x", "b", ip="10.244.0.11"))
        rig.store.upsert(Kind.PODS, pod.uid, pod, "12")
        rig.clock.advance(1)
        rig.rec.step()
    assert len([r for r in caplog.records if "check --node-name" in r.getMessage()]) == 1


def test_refused_watch_makes_readyz_fail_and_statusz_tracks_kinds() -> None:
    rig = Rig()
    rig.list_all()
    rig.rec.step()
    assert rig.rec.ready() == (True, "ok")
    synced = rig.rec.statusz()["synced_resource_versions"]
    assert synced["pods"] and all(v.isdigit() for v in synced.values())
    rig.rec.note_watch_problem(Kind.PODS, "HTTP 403: watch pods: forbidden")
    ok, why = rig.rec.ready()
    assert not ok and "pods: HTTP 403: watch pods: forbidden" in why
    assert rig.dataplane.applied  # nothing flushed, nothing re-applied for it
    rig.rec.note_watch_problem(Kind.PODS, None)
    assert rig.rec.ready() == (True, "ok")

"""The rendered agent DaemonSet has the properties the install promises.

Least privilege (NET_ADMIN and NET_RAW only, not privileged, read-only root),
hostNetwork, NODE_NAME from the downward API, the shared xtables lock, runs on
every node, health probes on the metrics port, one node at a time on update.
Checked on the base and on every overlay, after rendering.
"""

from __future__ import annotations

import pytest

from tests.deploy.support import Doc, containers, find, render

RENDERED = ("deploy/base", "deploy/overlays/kind-flannel")
METRICS_PORT = 9847
CONTROL_PLANE_TAINTS = (
    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
)


def _daemonset(directory: str) -> Doc:
    return find(render(directory), "DaemonSet", "netpol-agent")


def _agent(directory: str) -> Doc:
    spec = _daemonset(directory)["spec"]["template"]["spec"]
    (agent,) = spec["containers"]
    result: Doc = agent
    return result


def _tolerates(tolerations: list[Doc], taint: Doc) -> bool:
    """Kubernetes' toleration matching (v1.Toleration.ToleratesTaint)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


@pytest.mark.parametrize("directory", RENDERED)
class TestAgentDaemonSet:
    def test_capabilities_are_exactly_net_admin_and_net_raw(self, directory: str) -> None:
        sc = _agent(directory)["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sorted(sc["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]

    def test_not_privileged_and_no_escalation(self, directory: str) -> None:
        sc = _agent(directory)["securityContext"]
        assert sc.get("privileged", False) is False
        assert sc["allowPrivilegeEscalation"] is False
        pod = _daemonset(directory)["spec"]["template"]["spec"]
        assert not pod.get("hostPID") and not pod.get("hostIPC")

    def test_read_only_root_filesystem(self, directory: str) -> None:
        assert _agent(directory)["securityContext"]["readOnlyRootFilesystem"] is True

    def test_host_network(self, directory: str) -> None:
        assert _daemonset(directory)["spec"]["template"]["spec"]["hostNetwork"] is True

    def test_xtables_lock_is_the_hosts(self, directory: str) -> None:
        pod = _daemonset(directory)["spec"]["template"]["spec"]
        (mount,) = [
            m for m in _agent(directory)["volumeMounts"] if m["mountPath"] == "/run/xtables.lock"
        ]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["hostPath"] == {"path": "/run/xtables.lock", "type": "FileOrCreate"}
        assert not mount.get("readOnly", False)

    def test_node_name_from_the_downward_api(self, directory: str) -> None:
        env = {e["name"]: e for e in _agent(directory)["env"]}
        assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}

    def test_runs_on_every_node_including_control_planes(self, directory: str) -> None:
        pod = _daemonset(directory)["spec"]["template"]["spec"]
        for taint in CONTROL_PLANE_TAINTS:
            assert _tolerates(pod["tolerations"], taint), taint
        assert "nodeSelector" not in pod and "affinity" not in pod

    def test_priority_class(self, directory: str) -> None:
        pod = _daemonset(directory)["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "system-node-critical"

    def test_probes_on_healthz_and_readyz(self, directory: str) -> None:
        agent = _agent(directory)
        assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": METRICS_PORT}
        assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": METRICS_PORT}
        ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
        assert ports == {"metrics": METRICS_PORT}
        assert f"--metrics-bind-address=0.0.0.0:{METRICS_PORT}" in agent["args"]

    def test_rolling_update_one_node_at_a_time(self, directory: str) -> None:
        strategy = _daemonset(directory)["spec"]["updateStrategy"]
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}

    def test_requests_and_limits(self, directory: str) -> None:
        resources = _agent(directory)["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert set(resources["limits"]) == {"cpu", "memory"}

    def test_selector_matches_template_and_metrics_service(self, directory: str) -> None:
        docs = render(directory)
        ds = find(docs, "DaemonSet", "netpol-agent")
        labels = ds["spec"]["template"]["metadata"]["labels"]
        assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
        service = find(docs, "Service", "netpol-agent-metrics")
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["port"] == METRICS_PORT

    def test_service_account_is_bound(self, directory: str) -> None:
        docs = render(directory)
        ds = find(docs, "DaemonSet", "netpol-agent")
        sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
        namespace = ds["metadata"]["namespace"]
        binding = find(docs, "ClusterRoleBinding", "netpol-agent")
        assert {"kind": "ServiceAccount", "name": sa, "namespace": namespace} in binding["subjects"]
        find(docs, "ServiceAccount", sa)
        find(docs, "Namespace", namespace)


def test_kind_overlay_uses_the_locally_built_image() -> None:
    agent = _agent("deploy/overlays/kind-flannel")
    assert agent["image"] == "localhost/netpol-agent:dev"
    assert agent["imagePullPolicy"] == "Never"


@pytest.mark.parametrize("directory", ["deploy/cleanup", "deploy/overlays/kind-flannel/cleanup"])
def test_cleanup_daemonset_is_least_privileged_too(directory: str) -> None:
    ds = find(render(directory), "DaemonSet", "netpol-agent-cleanup")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["automountServiceAccountToken"] is False
    assert _tolerates(pod["tolerations"], CONTROL_PLANE_TAINTS[0])
    (init,) = pod["initContainers"]
    assert init["command"] == ["netpol-agent"] and init["args"][0] == "cleanup"
    assert sorted(init["securityContext"]["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    for c in containers(pod):
        sc = c["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc.get("privileged", False) is False
        assert sc["readOnlyRootFilesystem"] is True
    # Not selected by the metrics Service: it serves nothing.
    assert ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "cleanup"

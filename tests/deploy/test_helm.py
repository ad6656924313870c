"""The Helm chart: lint-clean, valid objects, and for default values exactly deploy/base.

Rendered with the real `helm` (Helm 4, and Helm 3 as `helm3`, both built from
their Go modules by scripts/build-kubernetes). The chart may differ from the kustomize base only by
Helm's own instructions (`helm.sh/*` annotations) and by what values ask for;
with monitoring on it adds exactly deploy/monitoring's objects. Every flag a
value turns on must parse and validate in the agent's own CLI and settings.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agent.cli import build_parser
from agent.cli.run import FLAG_FIELDS
from agent.node import settings as settings_mod
from tests.deploy.support import (
    HELM_CHART,
    REPO,
    Doc,
    containers,
    find,
    render,
    run_tool,
    validate,
)

MONITORING_ON = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
)
# Every value that changes the rendering, at once.
EVERYTHING = (
    *MONITORING_ON,
    "image.repository=registry.example/netpol-agent",
    "image.tag=1.2.3",
    "image.pullPolicy=Always",
    "imagePullSecrets[0].name=pull",
    "namespace.name=npa-system",
    "agent.backend=nft",
    "agent.resyncInterval=120",
    "agent.dropAction=reject",
    "agent.enforcement=audit",
    "agent.newPods=allow",
    "agent.revokeEstablished=false",
    "agent.nflogGroup=7",
    "agent.markBit=20",
    "agent.connmarkBit=23",
    "agent.allowCIDRs[0]=192.0.2.0/24",
    "agent.metricsPort=9900",
    "agent.logLevel=debug",
    "agent.extraArgs[0]=--log-format=text",
    "agent.extraEnv[0].name=NETPOL_LOG_LEVEL",
    "agent.extraEnv[0].value=debug",
    "nodeSelector.kubernetes\\.io/os=linux",
    "podLabels.team=net",
    "podAnnotations.note=x",
    "maxUnavailable=2",
    "priorityClassName=",
)


# Helm 4, and Helm 3 (built as helm3): the chart must work with both.
HELMS = ("helm", "helm3")


def helm(*args: str, program: str = "helm") -> str:
    return run_tool(program, *args)


def template(*sets: str, program: str = "helm") -> list[Doc]:
    args = ["template", "netpol-agent", str(HELM_CHART.relative_to(REPO))]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args, program=program)) if d is not None]


def without_helm_annotations(doc: Doc) -> Doc:
    """`doc` minus Helm's own instructions (helm.sh/* annotations)."""
    meta = dict(doc["metadata"])
    annotations = {
        k: v for k, v in meta.pop("annotations", {}).items() if not k.startswith("helm.sh/")
    }
    if annotations:
        meta["annotations"] = annotations
    return {**doc, "metadata": meta}


def is_hook(doc: Doc) -> bool:
    return "helm.sh/hook" in doc["metadata"].get("annotations", {})


def by_identity(docs: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    """The objects an install creates (not the hooks), by kind, namespace and name."""
    out: dict[tuple[str, str, str], Doc] = {}
    for doc in docs:
        if is_hook(doc):
            continue
        meta = doc["metadata"]
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in out, f"rendered twice: {key}"
        out[key] = without_helm_annotations(doc)
    return out


def agent_args(docs: list[Doc]) -> list[str]:
    ds = find(docs, "DaemonSet", "netpol-agent")
    (agent,) = ds["spec"]["template"]["spec"]["containers"]
    args: list[str] = agent["args"]
    return args


@pytest.mark.parametrize("program", HELMS)
def test_chart_lints_clean(program: str) -> None:
    chart = str(HELM_CHART.relative_to(REPO))
    out = helm("lint", "--strict", chart, program=program)
    assert "0 chart(s) failed" in out, out
    for sets in (MONITORING_ON, EVERYTHING):
        helm("lint", "--strict", chart, "--set", ",".join(sets), program=program)


@pytest.mark.parametrize("program", HELMS)
def test_default_values_render_exactly_the_kustomize_base(program: str) -> None:
    chart = by_identity(template(program=program))
    base = by_identity(render("deploy/base"))
    assert sorted(chart) == sorted(base)
    for key, doc in base.items():
        assert chart[key] == doc, f"{key} differs between the chart and deploy/base"


@pytest.mark.parametrize("program", HELMS)
def test_monitoring_on_adds_exactly_deploy_monitoring(program: str) -> None:
    chart = by_identity(template(*MONITORING_ON, program=program))
    base = by_identity(render("deploy/base"))
    monitoring = by_identity(render("deploy/monitoring"))
    assert sorted(chart) == sorted({**base, **monitoring})
    for key, doc in monitoring.items():
        assert chart[key] == doc, f"{key} differs between the chart and deploy/monitoring"


@pytest.mark.parametrize(
    "sets", [(), MONITORING_ON, EVERYTHING], ids=["defaults", "monitoring", "everything"]
)
def test_rendered_objects_are_valid_kubernetes(sets: tuple[str, ...]) -> None:
    docs = template(*sets)
    assert docs
    for doc in docs:
        validate(doc, f"helm template --set {','.join(sets)}")


def test_values_reach_the_daemonset() -> None:
    docs = template(*EVERYTHING)
    ds = find(docs, "DaemonSet", "netpol-agent")
    assert ds["metadata"]["namespace"] == "npa-system"
    assert find(docs, "Namespace")["metadata"]["name"] == "npa-system"
    subject = find(docs, "ClusterRoleBinding")["subjects"][0]
    assert subject["namespace"] == "npa-system"
    spec = ds["spec"]["template"]["spec"]
    (agent,) = containers(spec)
    assert agent["image"] == "registry.example/netpol-agent:1.2.3"
    assert agent["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert "priorityClassName" not in spec
    assert ds["spec"]["template"]["metadata"]["labels"]["team"] == "net"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 2
    assert agent["ports"][0]["containerPort"] == 9900
    assert agent["readinessProbe"]["httpGet"]["port"] == 9900
    assert {"name": "NETPOL_LOG_LEVEL", "value": "debug"} in agent["env"]
    assert agent_args(docs) == [
        "run",
        "--node-name=$(NODE_NAME)",
        "--backend=nft",
        "--resync-interval=120",
        "--drop-action=reject",
        "--metrics-bind-address=0.0.0.0:9900",
        "--log-format=json",
        "--log-level=debug",
        "--enforcement=audit",
        "--new-pods=allow",
        "--revoke-established=false",
        "--nflog-group=7",
        "--mark-bit=20",
        "--connmark-bit=23",
        "--allow-cidr=192.0.2.0/24",
        "--log-format=text",
    ]
    service = find(docs, "Service", "netpol-agent-metrics")
    assert service["spec"]["ports"][0]["port"] == 9900
    monitor = find(docs, "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["npa-system"]


@pytest.mark.parametrize("sets", [(), EVERYTHING, ("agent.nflogGroup=-1",)])
def test_agent_args_parse_and_validate_in_the_agent(sets: tuple[str, ...]) -> None:
    args = [a.replace("$(NODE_NAME)", "node-0") for a in agent_args(template(*sets))]
    parsed = build_parser().parse_args(args)
    flags: dict[str, Any] = {name: getattr(parsed, name) for name in FLAG_FIELDS}
    settings = settings_mod.load(flags, environ={}, stderr_is_tty=False)
    assert settings.node_name == "node-0"


# Flags the chart sets by other means: the Node name from the pod's spec, the
# in-cluster service account, the metrics address from agent.metricsPort.
NOT_VALUES = {"node_name", "kubeconfig", "metrics_bind_address"}


def test_every_run_flag_has_a_chart_value() -> None:
    """Adding a `netpol-agent run` flag? Give it a value in values.yaml and _helpers.tpl."""
    args = [a.replace("$(NODE_NAME)", "node-0") for a in agent_args(template(*EVERYTHING))]
    parsed = build_parser().parse_args(args[:-1])  # without the extraArgs
    defaults = build_parser().parse_args(["run"])
    unset = [
        name
        for name in FLAG_FIELDS
        if name not in NOT_VALUES and getattr(parsed, name) == getattr(defaults, name)
    ]
    assert not unset, f"run flags no chart value sets: {unset}"


def test_zero_is_a_value_not_unset() -> None:
    assert "--nflog-group=0" in agent_args(template("agent.nflogGroup=0"))
    assert not any(a.startswith("--nflog-group") for a in agent_args(template()))


def cleanup_hook(docs: list[Doc]) -> Doc:
    (hook,) = [d for d in docs if is_hook(d)]
    return hook


@pytest.mark.parametrize("program", HELMS)
def test_cleanup_hook_is_deploy_cleanups_daemonset_waiting_for_the_agent(program: str) -> None:
    """The post-delete hook is deploy/cleanup's DaemonSet, except that its init container
    first waits until the node's agent has stopped (its metrics port closed)."""
    hook = cleanup_hook(template("agent.metricsPort=9900", program=program))
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    validate(hook, "cleanup hook")
    (init,) = hook["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["bash", "-c"]
    script = init["command"][2]
    assert "/dev/tcp/127.0.0.1/9900" in script
    cleanup = script.strip().splitlines()[-1].split()
    assert cleanup[:2] == ["exec", "netpol-agent"]
    assert build_parser().parse_args(cleanup[2:]).command == "cleanup"

    kustomized = find(render("deploy/cleanup"), "DaemonSet", "netpol-agent-cleanup")
    (k_init,) = kustomized["spec"]["template"]["spec"]["initContainers"]
    assert k_init["command"] + k_init["args"] == ["netpol-agent", *cleanup[2:]]
    del init["command"], k_init["command"], k_init["args"]
    assert without_helm_annotations(hook) == kustomized


def test_cleanup_hook_follows_the_agents_nodes_and_can_be_off() -> None:
    hook = cleanup_hook(template("nodeSelector.kubernetes\\.io/os=linux"))
    assert hook["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert not [d for d in template("cleanup.enabled=false") if is_hook(d)]

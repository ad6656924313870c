"""The scenarios in examples/: every seed-document policy, with a hand-derived truth table.

Each examples/<dir>/ holds README.md, namespaces.yaml, pods.yaml, policies.yaml and
expected.txt. The expected tables were derived by hand from the NetworkPolicy
semantics (not by running the engine), so these tests make the engine answer to an
independent oracle: `netpol-agent reachability -f <dir> --expect <dir>/expected.txt`
must exit 0 for every directory. Pod IPs follow the address plan in conftest.py.

A table has pod rows only; what it cannot show (external sources and destinations,
a node's own addresses) is checked cell by cell below. Where the engine disagrees with
the Kubernetes docs, the test is marked xfail(strict=True) with the docs' sentence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import main
from agent.core.convert import state_from_dicts
from agent.core.model import Pod, Protocol
from agent.core.policyapi.cnpvalidate import validate_cluster_policy
from agent.core.semantics import ReferenceEvaluator
from agent.core.table import parse_table
from agent.core.validate import validate_policy

EXAMPLES_ROOT = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_ROOT.iterdir() if p.is_dir())
REQUIRED = ("README.md", "namespaces.yaml", "pods.yaml", "policies.yaml", "expected.txt")
MANIFESTS = ("namespaces.yaml", "pods.yaml", "policies.yaml")
POLICY_KINDS = {"NetworkPolicy", "ClusterNetworkPolicy"}


def documents(path: Path) -> Iterator[Mapping[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            yield doc


def example_objects(example: Path) -> list[Mapping[str, Any]]:
    return [doc for name in MANIFESTS for doc in documents(example / name)]


def address_plan_nodes(count: int = 2) -> list[dict[str, Any]]:
    """Node objects as the lab registers them (tests/conftest.py's address plan)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"node-{i}"},
            "spec": {"podCIDR": f"10.244.{i}.0/24", "podCIDRs": [f"10.244.{i}.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": f"172.18.0.{i + 2}"}]},
        }
        for i in range(count)
    ]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 30


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_has_required_files(example: Path) -> None:
    missing = [name for name in REQUIRED if not (example / name).is_file()]
    assert not missing, f"{example.name} lacks {missing}"
    readme = [line for line in (example / "README.md").read_text().splitlines() if line.strip()]
    assert 2 <= len(readme) <= 6, f"{example.name}/README.md should have 2-6 lines"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_manifests_are_consistent(example: Path) -> None:
    """Kinds per file, pods in declared namespaces, IPs allocated per node in file order."""
    kinds = {name: {d.get("kind") for d in documents(example / name)} for name in MANIFESTS}
    assert kinds["namespaces.yaml"] == {"Namespace"}
    assert kinds["pods.yaml"] == {"Pod"}
    assert kinds["policies.yaml"] <= POLICY_KINDS, kinds["policies.yaml"]
    namespaces = {d["metadata"]["name"] for d in documents(example / "namespaces.yaml")}
    next_slot: dict[str, int] = {}
    for pod in documents(example / "pods.yaml"):
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        assert meta["namespace"] in namespaces, f"{meta['name']}: namespace not declared"
        node = spec["nodeName"]
        assert node in ("node-0", "node-1")
        slot = next_slot.get(node, 0)
        next_slot[node] = slot + 1
        ip = f"10.244.{node[-1]}.{10 + slot}"
        assert status["podIP"] == ip, f"{meta['name']}: expected {ip} (address plan, file order)"
        assert [e["ip"] for e in status["podIPs"]] == [ip]
        assert spec["containers"] and all(c.get("image") for c in spec["containers"])
    for policy in documents(example / "policies.yaml"):
        if policy["kind"] == "NetworkPolicy":
            assert policy["metadata"]["namespace"] in namespaces
        else:
            assert "namespace" not in policy["metadata"], "ClusterNetworkPolicy is cluster-scoped"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_policies_are_valid(example: Path) -> None:
    for policy in documents(example / "policies.yaml"):
        validate = validate_policy if policy["kind"] == "NetworkPolicy" else validate_cluster_policy
        errors = validate(policy)
        assert errors == (), f"{example.name}: {[str(e) for e in errors]}"


@pytest.mark.parametrize("engine", ["reference", "ruleset"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_reachability_matches_hand_derived_table(
    example: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = str(example / "expected.txt")
    code = main(["reachability", "--engine", engine, "-f", str(example), "--expect", expected])
    out, err = capsys.readouterr()
    assert code == 0, f"{example.name} ({engine}): exit {code}\n{out}\n{err}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_allowed_cells_have_a_listener(example: Path) -> None:
    """Every allowed cell's destination declares that port, so the lab can prove it."""
    declared = {
        f"{d['metadata']['namespace']}/{d['metadata']['name']}": {
            (p["containerPort"], p.get("protocol", "TCP"))
            for c in d["spec"]["containers"]
            for p in c.get("ports", ())
        }
        for d in documents(example / "pods.yaml")
    }
    table = parse_table((example / "expected.txt").read_text(), source=str(example))
    for block in table.blocks:
        for src, row in block.allowed.items():
            for dst, allowed in row.items():
                if allowed and src != dst:
                    case = (block.port, block.protocol.value)
                    assert case in declared[dst], f"{src} -> {dst} {block.title}"


# (example, source address, destination pod, port, protocol, allowed). Sources are not
# pods: external clients, or a node's own addresses (cni0 gateway 10.244.<i>.1 and the
# underlay 172.18.0.<i+2>), which may always reach the pods of THAT node only.
EXTERNAL = [
    ("002-allow-external-clients", "192.168.1.5", "default/web", 80, "TCP", True),
    ("002-allow-external-clients", "192.168.1.100", "default/web", 80, "TCP", False),
    ("002-allow-external-clients", "192.168.1.5", "default/web", 443, "TCP", False),
    ("002-allow-external-clients", "192.168.2.5", "default/web", 80, "TCP", False),
    ("002-ipblock-except", "10.2.3.4", "default/db", 80, "TCP", True),
    ("002-ipblock-except", "10.1.2.3", "default/db", 80, "TCP", False),
    ("002-ipblock-except", "192.0.2.10", "default/db", 80, "TCP", False),
    ("002-ipblock-except", "10.0.0.5", "default/web", 80, "TCP", True),
    ("002-ipblock-except", "10.0.0.10", "default/web", 80, "TCP", False),
    ("002-ipblock-except", "10.244.7.7", "default/cache", 80, "TCP", True),
    ("002-ipblock-except", "10.244.1.99", "default/cache", 80, "TCP", False),
    ("002-three-tier", "198.51.100.7", "app/frontend", 80, "TCP", True),
    ("002-three-tier", "198.51.100.7", "app/frontend", 8080, "TCP", False),
    ("002-three-tier", "198.51.100.7", "app/backend", 8080, "TCP", False),
    ("002-allow-loadbalancer-only", "198.51.100.7", "default/web", 80, "TCP", True),
    ("002-allow-loadbalancer-only", "198.51.100.7", "default/web", 8080, "TCP", False),
    ("003-node-probes", "10.244.0.1", "default/demo", 80, "TCP", True),
    ("003-node-probes", "172.18.0.2", "default/demo", 80, "TCP", True),
    ("003-node-probes", "10.244.1.1", "default/demo-remote", 8080, "TCP", True),
    ("003-node-probes", "172.18.0.3", "default/demo-remote", 80, "UDP", True),
    ("003-node-probes", "10.244.1.1", "default/demo", 80, "TCP", False),
    ("003-node-probes", "172.18.0.3", "default/demo", 80, "TCP", False),
    ("003-node-probes", "172.18.0.2", "default/demo-remote", 80, "TCP", False),
    ("003-node-probes", "192.0.2.10", "default/demo", 80, "TCP", False),
    ("003-node-probes", "192.0.2.10", "default/other", 80, "TCP", True),
]


@pytest.mark.parametrize(
    ("example", "source", "destination", "port", "protocol", "expected"),
    EXTERNAL,
    ids=[f"{e[0]}:{e[1]}->{e[2]}:{e[3]}/{e[4]}" for e in EXTERNAL],
)
def test_external_and_node_sources(
    example: str, source: str, destination: str, port: int, protocol: str, expected: bool
) -> None:
    ipaddress.ip_address(source)
    state = state_from_dicts([*example_objects(EXAMPLES_ROOT / example), *address_plan_nodes()])
    evaluator = ReferenceEvaluator(state)
    dst = next(p for p in state.pods.values() if p.key == destination)
    explanation = evaluator.explain(source, dst, port, Protocol(protocol))
    assert explanation.allowed is expected, explanation


# (example, source pod, destination address, port, protocol, allowed): egress to
# addresses outside the cluster, which only ipBlocks can match.
EXTERNAL_DESTINATIONS = [
    ("001-egress-to-external-ip", "default/backend", "8.8.8.8", 53, "UDP", True),
    ("001-egress-to-external-ip", "default/backend", "8.8.8.8", 443, "TCP", True),
    ("001-egress-to-external-ip", "default/backend", "8.8.4.4", 53, "UDP", False),
    ("001-egress-to-external-ip", "default/frontend", "8.8.4.4", 53, "UDP", True),
    ("002-allow-external-https", "default/api", "198.51.100.7", 443, "TCP", True),
    ("002-allow-external-https", "default/api", "169.254.169.254", 443, "TCP", False),
    ("002-allow-external-https", "default/api", "198.51.100.7", 80, "TCP", False),
    ("002-default-deny-egress", "production/a", "198.51.100.7", 443, "TCP", False),
    ("002-default-deny-egress", "default/c", "198.51.100.7", 443, "TCP", True),
    # ClusterNetworkPolicy nodes and networks peers (the Nodes of the address plan given):
    # any node's kubelet port; node-1's pod CIDR; the rest denied; the own node always.
    ("cnp-egress-cidr-nodes", "apps/client", "172.18.0.3", 10250, "TCP", True),
    ("cnp-egress-cidr-nodes", "apps/client", "172.18.0.3", 22, "TCP", False),
    ("cnp-egress-cidr-nodes", "apps/worker", "172.18.0.2", 10250, "TCP", True),
    ("cnp-egress-cidr-nodes", "apps/worker", "172.18.0.2", 22, "TCP", False),
    ("cnp-egress-cidr-nodes", "apps/client", "172.18.0.2", 22, "TCP", True),
    ("cnp-egress-cidr-nodes", "apps/client", "10.244.1.99", 5432, "TCP", True),
    ("cnp-egress-cidr-nodes", "apps/client", "10.244.0.99", 5432, "TCP", False),
    ("cnp-egress-cidr-nodes", "apps/client", "8.8.8.8", 53, "UDP", False),
    ("cnp-egress-cidr-nodes", "data/db", "8.8.8.8", 53, "UDP", True),
]


@pytest.mark.parametrize(
    ("example", "source", "destination", "port", "protocol", "expected"),
    EXTERNAL_DESTINATIONS,
    ids=[f"{e[0]}:{e[1]}->{e[2]}:{e[3]}/{e[4]}" for e in EXTERNAL_DESTINATIONS],
)
def test_external_destinations(
    example: str, source: str, destination: str, port: int, protocol: str, expected: bool
) -> None:
    state = state_from_dicts([*example_objects(EXAMPLES_ROOT / example), *address_plan_nodes()])
    evaluator = ReferenceEvaluator(state)
    src = next(p for p in state.pods.values() if p.key == source)
    explanation = evaluator.explain(src, destination, port, Protocol(protocol))
    assert explanation.allowed is expected, explanation


# The seed documents as written, where examples/ had to fix them: the validator must
# reject them at the field the fix touched (see each example's README.md).
AS_WRITTEN = [
    (
        "002-allow-k8s-api: podSelector indented as a field of the egress rule",
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"namespaceSelector": {"matchLabels": {"name": "default"}}}],
                    "podSelector": {"matchLabels": {"component": "apiserver"}},
                    "ports": [{"protocol": "TCP", "port": 6443}],
                }
            ],
        },
        "spec.egress[0].podSelector",
    ),
    (
        "003-store-api: podSelector without matchLabels",
        {"podSelector": {"app": "downstream-1"}, "policyTypes": ["Ingress"]},
        "spec.podSelector.app",
    ),
    (
        "003 ipBlock fragment: ipBlock written as a list",
        {
            "podSelector": {},
            "ingress": [
                {"from": [{"ipBlock": [{"cidr": "10.0.0.0/24"}, {"except": "10.0.0.10"}]}]}
            ],
        },
        "spec.ingress[0].from[0].ipBlock",
    ),
    (
        "003 selector fragments: namespaceSelector written as a list",
        {
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": [{"matchLabels": None, "group": "x"}]}]}],
        },
        "spec.ingress[0].from[0].namespaceSelector",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path"), [(a[1], a[2]) for a in AS_WRITTEN], ids=[a[0] for a in AS_WRITTEN]
)
def test_seed_as_written_is_rejected_where_fixed(spec: dict[str, Any], path: str) -> None:
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "as-written", "namespace": "default"},
        "spec": spec,
    }
    paths = [e.path for e in validate_policy(policy)]
    assert path in paths, paths


def test_explain_node_probe_with_node_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the Nodes given, `--explain` shows the node-always-reaches-its-pods rule."""
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump_all(address_plan_nodes()))
    example = str(EXAMPLES_ROOT / "003-node-probes")
    verdicts = {}
    for source in ("10.244.0.1", "10.244.1.1"):
        argv = ["reachability", "-f", example, "-f", str(nodes), "--port", "80"]
        assert main([*argv, "--explain", source, "default/demo"]) == 0
        verdicts[source] = capsys.readouterr().out.splitlines()[0]
    assert "ALLOWED" in verdicts["10.244.0.1"], verdicts
    assert "BLOCKED" in verdicts["10.244.1.1"], verdicts


def node_probe_evaluator() -> ReferenceEvaluator:
    """003-node-probes plus the Nodes and one hostNetwork pod per node (podIP = node IP)."""
    host_pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"host-{i}", "namespace": "default"},
            "spec": {
                "nodeName": f"node-{i}",
                "hostNetwork": True,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            },
            "status": {"podIP": f"172.18.0.{i + 2}", "podIPs": [{"ip": f"172.18.0.{i + 2}"}]},
        }
        for i in range(2)
    ]
    objects = [
        *example_objects(EXAMPLES_ROOT / "003-node-probes"),
        *address_plan_nodes(),
        *host_pods,
    ]
    return ReferenceEvaluator(state_from_dicts(objects))


def pod(evaluator: ReferenceEvaluator, key: str) -> Pod:
    return next(p for p in evaluator.state.pods.values() if p.key == key)


# Kubernetes docs (concepts/services-networking/network-policies): "IP blocks (exception:
# traffic to and from the node where a Pod is running is always allowed, regardless of the
# IP address of the Pod or the node)". The "to" half: an egress-isolated pod still reaches
# its own node (its addresses, its bridge gateway, a hostNetwork pod there).
@pytest.mark.parametrize("node_end", ["10.244.0.1", "172.18.0.2", "default/host-0"])
def test_egress_isolated_pod_reaches_its_own_node(node_end: str) -> None:
    evaluator = node_probe_evaluator()
    demo = pod(evaluator, "default/demo")  # node-0, isolated for egress with no rule
    dst: Pod | str = pod(evaluator, node_end) if "/" in node_end else node_end
    assert evaluator.allowed(demo, dst, 80, Protocol.TCP)


# A hostNetwork pod has its node's address, and the connecting pod's egress isolation
# still applies ("pods connecting to host-networked pods might be affected by the network
# policy rules"): to another node, only an ipBlock could allow it.
@pytest.mark.parametrize("node_end", ["172.18.0.3", "10.244.1.1", "default/host-1"])
def test_egress_isolated_pod_does_not_reach_another_node(node_end: str) -> None:
    evaluator = node_probe_evaluator()
    demo = pod(evaluator, "default/demo")
    dst: Pod | str = pod(evaluator, node_end) if "/" in node_end else node_end
    assert not evaluator.allowed(demo, dst, 80, Protocol.TCP)

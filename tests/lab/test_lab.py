"""End-to-end through a two-node lab with the real agents: where policy is enforced,
node traffic, live changes made with kubectl, reused pod addresses.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.flatten import counter_set
from agent.core.model import Direction, Family, Protocol
from agent.core.table import format_diff
from agent.dataplane.applier import parse_counters
from agent.lab.netsock import Attempt, probe
from tests.lab.conftest import RunningLab
from tests.lab.podspecs import pod_dict

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
TCP80 = (80, Protocol.TCP)


def ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(key: str, node: str, **labels: str) -> dict[str, Any]:
    out = pod_dict(key, node=node, labels=labels or None, ports=((80, "TCP"),))
    del out["metadata"]["uid"]
    return out


def policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def drops(lab: RunningLab, node: str, chain: str, pod_key: str) -> int | None:
    """Packets `chain` counted for `pod_key` on `node` (None: the pod has no counter there).

    The drop path counts per pod in the counter sets (one per direction and family,
    entry comment ns/pod); `chain` names the direction.
    """
    netns = lab.topo.node(node).netns
    direction = Direction.EGRESS if chain.endswith("EGRESS") else Direction.INGRESS
    total: int | None = None
    for family in Family:
        name = counter_set(direction, family).name
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "ipset", "list", name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for key, counter in parse_counters(out):
            if key == pod_key:
                total = (total or 0) + counter.packets
    return total


@pytest.fixture
def scratch(lab: RunningLab) -> Iterator[list[dict[str, Any]]]:
    """Objects a test created; deleted afterwards so the next test starts clean."""
    created: list[dict[str, Any]] = []
    yield created
    lab.delete(created)


def applied(lab: RunningLab, scratch: list[dict[str, Any]], *objects: dict[str, Any]) -> None:
    lab.apply(list(objects))
    scratch.extend(objects)


def agreeing_probe(lab: RunningLab) -> Any:
    table, diff = lab.probe([TCP80])
    assert diff.empty, format_diff(diff)
    return table


def test_cross_node_traffic_is_enforced_at_both_ends(
    lab: RunningLab, scratch: list[dict[str, Any]]
) -> None:
    applied(
        lab,
        scratch,
        ns("cross"),
        pod("cross/a", "node-0"),
        pod("cross/c", "node-0"),
        pod("cross/b", "node-1"),
        policy(
            "cross",
            "a-no-egress",
            {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]},
        ),
        policy(
            "cross",
            "b-no-ingress",
            {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress"]},
        ),
    )
    table = agreeing_probe(lab)
    assert not lab.cell(table, "cross/a", "cross/b")
    assert not lab.cell(table, "cross/c", "cross/b")
    assert lab.cell(table, "cross/b", "cross/c")
    # a's egress is dropped where a lives, b's ingress where b lives, and only there.
    assert (drops(lab, "node-0", "NPA-DROP-EGRESS", "cross/a") or 0) > 0
    assert drops(lab, "node-1", "NPA-DROP-EGRESS", "cross/a") is None
    assert (drops(lab, "node-1", "NPA-DROP-INGRESS", "cross/b") or 0) > 0
    assert drops(lab, "node-0", "NPA-DROP-INGRESS", "cross/b") is None


def test_own_node_reaches_isolated_pods_other_node_does_not(
    lab: RunningLab, scratch: list[dict[str, Any]]
) -> None:
    applied(
        lab,
        scratch,
        ns("iso"),
        pod("iso/p0", "node-0"),
        pod("iso/p1", "node-1"),
        policy("iso", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}),
    )
    agreeing_probe(lab)
    n0, n1 = lab.topo.node("node-0").netns, lab.topo.node("node-1").netns
    p0, p1 = "10.244.0.10", "10.244.1.10"
    got = probe(
        [
            Attempt(n0, p0, 80, Protocol.TCP),
            Attempt(n1, p1, 80, Protocol.TCP),
            Attempt(n1, p0, 80, Protocol.TCP),
            Attempt(n0, p1, 80, Protocol.TCP),
        ],
        timeout=1.0,
    )
    assert list(got.values()) == [True, True, False, False]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_changes_take_effect_in_the_next_probe(
    lab: RunningLab, scratch: list[dict[str, Any]], tmp_path: Path
) -> None:
    applied(
        lab,
        scratch,
        ns("kc"),
        pod("kc/a", "node-0", role="client"),
        pod("kc/b", "node-1", role="server"),
        policy(
            "kc",
            "clients-only",
            {
                "podSelector": {"matchLabels": {"role": "server"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
            },
        ),
    )

    def kubectl(*args: str) -> None:
        cmd = ["kubectl", "--kubeconfig", str(lab.paths.kubeconfig), "-n", "kc", *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)

    assert lab.cell(agreeing_probe(lab), "kc/a", "kc/b")
    kubectl("label", "pod", "a", "role=other", "--overwrite")
    assert not lab.cell(agreeing_probe(lab), "kc/a", "kc/b")
    kubectl("label", "pod", "a", "role=client", "--overwrite")
    assert lab.cell(agreeing_probe(lab), "kc/a", "kc/b")
    kubectl("delete", "networkpolicy", "clients-only")
    deny = tmp_path / "deny.yaml"
    deny.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: deny, namespace: kc}\nspec: {podSelector: {}}\n"
    )
    kubectl("apply", "-f", str(deny))
    scratch.append(policy("kc", "deny", {}))
    assert not lab.cell(agreeing_probe(lab), "kc/a", "kc/b")


def test_recreated_pod_with_the_same_ip_gets_the_new_pods_policy(
    lab: RunningLab, scratch: list[dict[str, Any]]
) -> None:
    applied(
        lab,
        scratch,
        ns("re"),
        pod("re/server", "node-1", role="server"),
        pod("re/c", "node-0", role="friend"),
        pod("re/t", "node-0", guarded="yes"),
        policy(
            "re",
            "friends",
            {
                "podSelector": {"matchLabels": {"role": "server"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}]}],
            },
        ),
        policy("re", "guard", {"podSelector": {"matchLabels": {"guarded": "yes"}}}),
    )
    table = agreeing_probe(lab)
    assert lab.cell(table, "re/c", "re/server")
    assert not lab.cell(table, "re/server", "re/t")
    ips = {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in lab.client.list("/api/v1/namespaces/re/pods")[0]
    }
    # Delete both node-0 pods and recreate them with each other's fate swapped.
    lab.delete([pod("re/t", "node-0"), pod("re/c", "node-0")])
    lab.apply([pod("re/c", "node-0", role="stranger"), pod("re/t", "node-0")])
    table = agreeing_probe(lab)
    again = {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in lab.client.list("/api/v1/namespaces/re/pods")[0]
    }
    assert again == ips
    assert not lab.cell(table, "re/c", "re/server")
    assert lab.cell(table, "re/server", "re/t")


def test_dual_stack_lab_agrees_over_ipv6(tmp_path_factory: pytest.TempPathFactory) -> None:
    from agent.core.model import Family
    from agent.lab import probe as lab_probe
    from tests.lab.conftest import start_lab

    examples = Path(__file__).resolve().parents[2] / "examples" / "002-and-vs-or"
    if not examples.is_dir():
        pytest.skip("examples/002-and-vs-or is missing")
    for running in start_lab(tmp_path_factory.mktemp("lab6"), nodes=2, ipv6=True):
        running.apply_files(examples)
        snap = lab_probe.settled_snapshot(running.client, running.topo, timeout=20)
        lab_probe.wait_converged(running.topo, snap.resource_version, timeout=20)
        pods = lab_probe.probe_pods(snap.state)
        assert all(p.ips_of(Family.V6) for p in pods)
        cases = [TCP80]
        table = lab_probe.probe_table(running.topo, pods, cases, family=Family.V6)
        diff = lab_probe.compare(table, snap.state, pods, cases)
        assert diff.empty, format_diff(diff)

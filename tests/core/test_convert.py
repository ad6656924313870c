"""Conversion of plain object dicts into the domain model, once, at the edge."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.convert import (
    namespace_from_dict,
    node_from_dict,
    pod_from_dict,
    policy_from_dict,
    state_from_dicts,
)
from agent.core.errors import InputError
from agent.core.model import (
    MATCH_ALL,
    ContainerPort,
    Direction,
    IPBlock,
    LabelSelector,
    Operator,
    Peer,
    PodPhase,
    PolicyPort,
    Protocol,
    Requirement,
    Rule,
)
from tests.builders import make_policy, policy_dict, sel

INGRESS = frozenset({Direction.INGRESS})
EGRESS = frozenset({Direction.EGRESS})
BOTH = frozenset(Direction)


def pod(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "x", "name": "a", "labels": {"pod": "a"}},
        "spec": {
            "nodeName": "node-0",
            "initContainers": [
                {"name": "init", "ports": [{"containerPort": 9000, "name": "init-port"}]}
            ],
            "containers": [
                {
                    "name": "main",
                    "ports": [
                        {"containerPort": 80, "name": "serve-80-tcp"},
                        {"containerPort": 81, "protocol": "UDP", "name": "serve-81-udp"},
                    ],
                }
            ],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.10"},
    }
    for path, value in over.items():
        section, _, key = path.partition("__")
        if value is None:
            d[section].pop(key, None)
        else:
            d[section][key] = value
    return d


def test_namespace_gets_its_name_label() -> None:
    ns = namespace_from_dict(
        {"kind": "Namespace", "metadata": {"name": "x", "labels": {"ns": "x"}}}
    )
    assert ns.name == "x"
    assert dict(ns.labels) == {"ns": "x", "kubernetes.io/metadata.name": "x"}


def test_pod_conversion() -> None:
    p = pod_from_dict(pod())
    assert (p.namespace, p.name, p.uid, p.node) == ("x", "a", "x/a", "node-0")
    assert p.ips == ("10.244.0.10",)
    assert p.phase is PodPhase.RUNNING
    assert p.ports == (
        ContainerPort(9000, Protocol.TCP, "init-port"),
        ContainerPort(80, Protocol.TCP, "serve-80-tcp"),
        ContainerPort(81, Protocol.UDP, "serve-81-udp"),
    )
    assert p.is_networked


def test_pod_ips_prefer_pod_ips_and_are_canonical() -> None:
    p = pod_from_dict(pod(status__podIPs=[{"ip": "10.244.0.10"}, {"ip": "FD00:10:244:0:0::A"}]))
    assert p.ips == ("10.244.0.10", "fd00:10:244::a")


def test_pod_uid_phase_and_host_network() -> None:
    d = pod(status__phase="Succeeded", spec__hostNetwork=True)
    d["metadata"]["uid"] = "1234"
    p = pod_from_dict(d)
    assert (p.uid, p.phase, p.host_network, p.is_networked) == (
        "1234",
        PodPhase.SUCCEEDED,
        True,
        False,
    )
    assert not pod_from_dict(pod(status__podIP=None)).is_networked
    assert pod_from_dict(pod(status__phase=None)).phase is PodPhase.RUNNING


def test_pod_default_namespace() -> None:
    d = pod()
    del d["metadata"]["namespace"]
    assert pod_from_dict(d).key == "default/a"


@pytest.mark.parametrize(
    ("over", "where"),
    [
        ({"status__podIP": "10.244.0.300"}, "x/a: status.podIP: '10.244.0.300' is not a valid IP"),
        ({"status__podIPs": [{"address": "1.2.3.4"}]}, "x/a: status.podIPs[0]"),
        ({"status__podIPs": "10.0.0.1"}, "x/a: status.podIPs: must be a list"),
        ({"status__phase": "Sleeping"}, "x/a: status.phase"),
        (
            {"spec__containers": [{"ports": [{"containerPort": 0}]}]},
            "x/a: spec.containers[0].ports[0].containerPort",
        ),
        (
            {"spec__containers": [{"ports": [{"containerPort": "80"}]}]},
            "x/a: spec.containers[0].ports[0].containerPort",
        ),
        (
            {"spec__containers": [{"ports": [{"containerPort": 80, "protocol": "ICMP"}]}]},
            "spec.containers[0].ports[0].protocol",
        ),
        ({"spec__hostNetwork": "yes"}, "x/a: spec.hostNetwork"),
    ],
)
def test_malformed_pod_names_object_and_field(over: dict[str, Any], where: str) -> None:
    with pytest.raises(InputError, match=None) as info:
        pod_from_dict(pod(**over))
    assert where in str(info.value)


def test_malformed_labels_and_names() -> None:
    d = pod()
    d["metadata"]["labels"] = {"version": 2}
    with pytest.raises(InputError, match=r"x/a: metadata.labels.version"):
        pod_from_dict(d)
    with pytest.raises(InputError, match=r"metadata\.name"):
        pod_from_dict({"kind": "Pod", "metadata": {"namespace": "x"}})
    with pytest.raises(InputError, match=r"metadata\.name"):
        namespace_from_dict({"kind": "Namespace", "metadata": {}})


def test_node_conversion() -> None:
    node = node_from_dict(
        {
            "kind": "Node",
            "metadata": {"name": "node-0"},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"]},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "172.18.0.2"},
                    {"type": "Hostname", "address": "node-0"},
                    {"type": "InternalIP", "address": "fd00:172:18::2"},
                ]
            },
        }
    )
    assert node.addresses == ("172.18.0.2", "fd00:172:18::2")
    assert node.pod_cidrs == ("10.244.0.0/24", "fd00:10:244::/64")


# --- policies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "types"),
    [
        ("nothing: Ingress", {"podSelector": {}}, INGRESS),
        ("ingress rules: Ingress", {"podSelector": {}, "ingress": [{}]}, INGRESS),
        ("egress rules: both", {"podSelector": {}, "egress": [{}]}, BOTH),
        # The API server defaults with len(spec.Egress) != 0: an empty list adds nothing.
        ("egress: [] : Ingress only", {"podSelector": {}, "egress": []}, INGRESS),
        (
            "policyTypes: [] is defaulted",
            {"podSelector": {}, "egress": [{}], "policyTypes": []},
            BOTH,
        ),
        (
            "explicit Egress only",
            {"podSelector": {}, "ingress": [{}], "policyTypes": ["Egress"]},
            EGRESS,
        ),
        ("explicit both", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, BOTH),
        ("invalid types fail closed", {"podSelector": {}, "policyTypes": ["Ingres"]}, BOTH),
    ],
)
def test_policy_types(name: str, spec: dict[str, Any], types: frozenset[Direction]) -> None:
    assert make_policy("x/p", spec).policy_types == types


def test_full_policy_conversion() -> None:
    spec = {
        "podSelector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db", "cache"]}],
        },
        "ingress": [
            {
                "from": [
                    {"podSelector": sel("pod=b")},
                    {"namespaceSelector": sel("ns=y"), "podSelector": {}},
                    {"namespaceSelector": {}},
                    {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}},
                ],
                "ports": [
                    {"port": 80},
                    {"protocol": "UDP", "port": "dns"},
                    {"port": 8000, "endPort": 8080},
                ],
            }
        ],
        "egress": [{"to": [], "ports": [{"protocol": "SCTP"}]}],
    }
    d = policy_dict("x/web", spec)
    d["metadata"]["uid"] = "u-1"
    p = policy_from_dict(d)
    assert p.valid and p.uid == "u-1" and p.key == "x/web"
    assert p.pod_selector == LabelSelector(
        (("app", "web"),), (Requirement("tier", Operator.NOT_IN, frozenset({"db", "cache"})),)
    )
    assert p.ingress == (
        Rule(
            peers=(
                Peer(pod_selector=LabelSelector((("pod", "b"),))),
                Peer(pod_selector=MATCH_ALL, namespace_selector=LabelSelector((("ns", "y"),))),
                Peer(namespace_selector=MATCH_ALL),
                Peer(ip_block=IPBlock("192.0.2.0/24", ("192.0.2.128/25",))),
            ),
            ports=(
                PolicyPort(Protocol.TCP, 80),
                PolicyPort(Protocol.UDP, "dns"),
                PolicyPort(Protocol.TCP, 8000, 8080),
            ),
        ),
    )
    assert p.egress == (Rule(peers=(), ports=(PolicyPort(Protocol.SCTP, None),)),)
    assert p.policy_types == BOTH


def test_invalid_policy_fails_closed() -> None:
    spec = {
        "podSelector": sel("pod=a"),
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}],
        "egress": [{}],
    }
    p = make_policy("x/bad", spec)
    assert not p.valid
    assert [e.path for e in p.errors] == ["spec.ingress[0].from[0].ipBlock.except[0]"]
    assert p.pod_selector == LabelSelector((("pod", "a"),))  # still selects what it says
    assert p.policy_types == BOTH  # still isolates
    assert p.rules(Direction.INGRESS) == () and p.rules(Direction.EGRESS) == ()  # allows nothing


def test_invalid_pod_selector_selects_the_whole_namespace() -> None:
    p = make_policy(
        "x/bad",
        {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Is"}]}, "ingress": [{}]},
    )
    assert not p.valid
    assert p.pod_selector == MATCH_ALL
    assert p.ingress == ()


@pytest.mark.parametrize(
    "junk", [None, [], "x", {"metadata": "x"}, {"metadata": {"name": "p"}, "spec": []}]
)
def test_policy_conversion_never_raises(junk: Any) -> None:
    p = policy_from_dict(junk)
    assert not p.valid
    assert p.rules(Direction.INGRESS) == ()


def test_state_from_dicts() -> None:
    objs = [
        {"kind": "Namespace", "metadata": {"name": "x"}},
        pod(),
        policy_dict("x/p", {"podSelector": {}}),
        {"kind": "Node", "metadata": {"name": "node-0"}},
        {"kind": "Service", "metadata": {"name": "ignored"}},
    ]
    state = state_from_dicts(objs)
    assert list(state.namespaces) == ["x"]
    assert [p.key for p in state.pods.values()] == ["x/a"]
    assert list(state.policies) == ["x/p"]
    assert list(state.nodes) == ["node-0"]
    with pytest.raises(InputError, match="Pod x/a is defined twice"):
        state_from_dicts([pod(), pod()])

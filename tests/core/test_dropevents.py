"""Logged packets become events naming the local pod, the peer and the isolating policies."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.core.dropevents import (
    ACTION_AUDIT,
    ACTION_DROP,
    MAX_PREFIX,
    DropEvent,
    EventNamer,
    log_prefix,
    parse_prefix,
)
from agent.core.model import Direction
from tests.builders import cnp_rule, make_cnp, make_ns, make_pod, make_policy, make_state, sel
from tests.core.test_packets import PORTS, v4, v6

A = make_pod("x/a", "app=a", ip=("10.244.0.10", "fd00:10:244::a"))
B = make_pod("y/b", "app=b", ip=("10.244.1.20", "fd00:10:244:1::14"), node="node-1")
DENY = make_policy("x/deny-in", {"podSelector": sel("app=a"), "policyTypes": ["Ingress"]})
EGRESS = make_policy("x/no-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
AUDITED = replace(
    make_policy("x/trial", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}), audit=True
)
STATE = make_state(make_ns("x"), make_ns("y"), A, B, DENY, EGRESS, AUDITED)


def namer() -> EventNamer:
    return EventNamer(STATE, "node-0")


@pytest.mark.parametrize("key", ["x/a", "a" * 63 + "/" + "b" * 253, "ns/na\u00efve"])
def test_prefix_round_trip(key: str) -> None:
    for action in (ACTION_DROP, ACTION_AUDIT):
        for d in Direction:
            text = log_prefix(action, d, key)
            assert len(text.encode()) <= MAX_PREFIX
            parsed = parse_prefix(text)
            assert parsed is not None
            assert (parsed.action, parsed.direction) == (action, d)
            ascii_key = key.encode("ascii", "replace").decode()
            assert ascii_key.startswith(parsed.pod) and parsed.pod


def test_shared_prefix_names_action_and_direction_only() -> None:
    assert log_prefix(ACTION_AUDIT, Direction.EGRESS) == "npa:AE"
    parsed = parse_prefix("npa:AE")
    assert parsed is not None and (parsed.action, parsed.direction, parsed.pod) == (
        "audit",
        Direction.EGRESS,
        "",
    )
    packet = v4(6, PORTS, src="10.244.1.20", dst="10.244.0.10")
    event = namer().event(prefix="npa:DI", family=4, payload=packet, time=1.0)
    assert event is not None and (event.pod, event.peer) == ("x/a", "y/b")


@pytest.mark.parametrize(
    "text", ["", "npa:", "npa:XI x/a", "npa:DQ x/a", "other D I x/a", "npa:DIx"]
)
def test_foreign_prefixes_are_ignored(text: str) -> None:
    assert parse_prefix(text) is None
    assert namer().event(prefix=text, family=4, payload=v4(6, PORTS), time=1.0) is None


def test_ingress_drop_names_pod_peer_and_policy() -> None:
    packet = v4(6, PORTS, src="10.244.1.20", dst="10.244.0.10")
    event = namer().event(prefix="npa:DI x/a", family=4, payload=packet, time=7.5)
    assert event == DropEvent(
        node="node-0",
        action="drop",
        direction="ingress",
        pod="x/a",
        peer="y/b",
        protocol="TCP",
        port=8080,
        policies=("x/deny-in",),
        time=7.5,
    )


def test_egress_drop_to_an_outside_address_v6_udp() -> None:
    packet = v6(17, PORTS[:8], src="fd00:10:244::a", dst="2001:db8::1")
    event = namer().event(prefix="npa:DE x/a", family=6, payload=packet, time=1.0)
    assert event is not None
    assert (event.direction, event.pod, event.peer, event.protocol, event.port) == (
        "egress",
        "x/a",
        "2001:db8::1",
        "UDP",
        8080,
    )
    assert event.policies == ("x/no-egress",)


def test_icmp_has_no_port_and_audit_names_audited_policies() -> None:
    packet = v4(1, b"\x08\x00\0\0\0\0\0\0", src="10.244.1.20", dst="10.244.0.10")
    event = namer().event(prefix="npa:AI x/a", family=4, payload=packet, time=1.0)
    assert event is not None
    assert (event.action, event.protocol, event.port, event.policies) == (
        "audit",
        "ICMP",
        None,
        ("x/trial",),
    )


def test_deleted_pod_falls_back_to_the_prefix() -> None:
    packet = v4(17, PORTS[:8], src="10.244.9.9", dst="10.244.0.99")
    event = namer().event(prefix="npa:DI x/gone", family=4, payload=packet, time=1.0)
    assert event is not None
    assert (event.pod, event.peer, event.policies) == ("x/gone", "10.244.9.9", ())


def test_undecodable_packet_still_counts() -> None:
    event = namer().event(prefix="npa:DE x/a", family=4, payload=b"\x45", time=1.0)
    assert event is not None and event.protocol == "unknown" and event.pod == "x/a"


def test_event_key_ignores_time() -> None:
    packet = v4(6, PORTS, src="10.244.1.20", dst="10.244.0.10")
    one = namer().event(prefix="npa:DI x/a", family=4, payload=packet, time=1.0)
    two = namer().event(prefix="npa:DI x/a", family=4, payload=packet, time=2.0)
    assert one is not None and two is not None and one.key == two.key


def test_drop_path_rules_render_like_iptables_save() -> None:
    from agent.core.compile import CompileOptions, compile_ruleset
    from agent.core.droplogging import DropLogging
    from agent.core.model import Family
    from agent.core.naming import DROP_EGRESS, DROP_INGRESS

    options = CompileOptions(extensions=(DropLogging(100, rate=10, burst=5),))
    ruleset = compile_ruleset(STATE, node="node-0", options=options)
    chains = {c.name: c for c in ruleset.tables[Family.V4].chains}
    assert chains[DROP_INGRESS].rules[0].render(DROP_INGRESS) == (
        f'-A {DROP_INGRESS} -m comment --comment "log drops" -m hashlimit --hashlimit-upto '
        "10/sec --hashlimit-mode srcip,dstip --hashlimit-name npa-drop-i "
        '-j NFLOG --nflog-prefix "npa:DI" --nflog-group 100'
    )
    assert chains[DROP_EGRESS].rules[0].target.nflog_prefix == "npa:DE"
    assert chains[DROP_EGRESS].rules[-1].target.terminal  # logging never decides


def test_a_cluster_network_policy_deny_is_named_with_its_rule() -> None:
    """A drop the Admin tier decided names that rule, not the NetworkPolicy it overrode;
    a Baseline Deny is named only for a pod no enforced NetworkPolicy isolates."""
    guard = make_cnp(
        "guard",
        subject={"namespaces": sel("kubernetes.io/metadata.name=x")},
        ingress=[cnp_rule("Deny", {"namespaces": {}}, name="deny-rest")],
    )
    floor = make_cnp(
        "floor",
        tier="Baseline",
        subject={"namespaces": {}},
        egress=[cnp_rule("Deny", {"networks": ["0.0.0.0/0"]}, to=True)],
    )
    state = replace(STATE, cluster_policies={"guard": guard, "floor": floor})
    names = EventNamer(state, "node-0")
    packet = v4(6, PORTS, src="10.244.1.20", dst="10.244.0.10")
    event = names.event(prefix="npa:DI", family=4, payload=packet, time=1.0)
    assert event is not None
    assert event.policies == ('guard (Admin Deny, ingress rule 0 "deny-rest")',)
    # x/a is isolated for egress by x/no-egress: the Baseline tier is not asked
    out = v4(6, PORTS, src="10.244.0.10", dst="192.0.2.1")
    event = names.event(prefix="npa:DE", family=4, payload=out, time=1.0)
    assert event is not None and event.policies == ("x/no-egress",)

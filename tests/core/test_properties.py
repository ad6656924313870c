"""Property tests (hypothesis): label selectors, CIDR/except logic, truth-table text.

Each property compares the engine with a tiny independent oracle written over
the raw dict form (selectors) or integer arithmetic (CIDRs), on generated input.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.convert import selector_from_dict
from agent.core.model import IPBlock, Pod, Protocol
from agent.core.selectors import selector_matches
from agent.core.semantics import ReferenceEvaluator
from agent.core.table import TruthTable, compute_table, format_table, parse_table
from agent.core.validate import validate_policy
from tests.builders import make_ns, make_pod, make_policy, make_state, policy_dict

KEYS = st.sampled_from(["app", "tier", "env", "example.com/team"])
VALUES = st.sampled_from(["a", "b", "c", ""])
LABELS = st.dictionaries(KEYS, VALUES, max_size=4)


@st.composite
def expressions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    e: dict[str, Any] = {"key": draw(KEYS), "operator": op}
    if op in ("In", "NotIn"):
        e["values"] = draw(st.lists(VALUES, min_size=1, max_size=3))
    return e


SELECTORS = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(KEYS, VALUES, max_size=2),
        "matchExpressions": st.lists(expressions(), max_size=3),
    },
)


def oracle(sel: dict[str, Any], labels: dict[str, str]) -> bool:
    """metav1.LabelSelector, read straight from the dict."""
    ok = all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items())
    for e in sel.get("matchExpressions", []):
        present = e["key"] in labels
        if e["operator"] == "In":
            ok = ok and present and labels[e["key"]] in e["values"]
        elif e["operator"] == "NotIn":
            ok = ok and (not present or labels[e["key"]] not in e["values"])
        elif e["operator"] == "Exists":
            ok = ok and present
        else:
            ok = ok and not present
    return ok


@settings(deadline=None)
@given(SELECTORS, LABELS)
def test_selector_matches_the_oracle(sel: dict[str, Any], labels: dict[str, str]) -> None:
    assert selector_matches(selector_from_dict(sel), labels) == oracle(sel, labels)


@settings(deadline=None)
@given(SELECTORS)
def test_generated_selectors_are_valid(sel: dict[str, Any]) -> None:
    assert validate_policy(policy_dict("x/p", {"podSelector": sel})) == ()


@settings(deadline=None)
@given(KEYS, st.lists(VALUES, min_size=1, max_size=3), LABELS)
def test_not_in_is_the_complement_of_in(
    key: str, values: list[str], labels: dict[str, str]
) -> None:
    def m(op: str) -> bool:
        return selector_matches(
            selector_from_dict(
                {"matchExpressions": [{"key": key, "operator": op, "values": values}]}
            ),
            labels,
        )

    assert m("In") != m("NotIn")


@settings(deadline=None)
@given(st.lists(expressions(), min_size=1, max_size=4), LABELS)
def test_expressions_are_anded(exprs: list[dict[str, Any]], labels: dict[str, str]) -> None:
    whole = selector_matches(selector_from_dict({"matchExpressions": exprs}), labels)
    parts = [selector_matches(selector_from_dict({"matchExpressions": [e]}), labels) for e in exprs]
    assert whole == all(parts)


@settings(deadline=None)
@given(LABELS)
def test_empty_selector_matches_everything(labels: dict[str, str]) -> None:
    assert selector_matches(selector_from_dict({}), labels)


# --- CIDR / except ---------------------------------------------------------------------


@st.composite
def blocks(draw: st.DrawFn) -> tuple[int, str, list[str], list[str]]:
    """(version, cidr, excepts strictly inside it, addresses mostly inside it)."""
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(min_value=bits - 24, max_value=bits - 2))
    base = draw(st.integers(min_value=0, max_value=2**bits - 1))
    start = base >> (bits - prefix) << (bits - prefix)
    net = ipaddress.ip_network(
        (ipaddress.ip_address(start) if version == 4 else ipaddress.IPv6Address(start), prefix)
    )
    excepts = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        sub = draw(st.integers(min_value=prefix + 1, max_value=bits))
        offset = draw(st.integers(min_value=0, max_value=net.num_addresses - 1))
        start = (int(net.network_address) + offset) >> (bits - sub) << (bits - sub)
        first = ipaddress.IPv4Address(start) if version == 4 else ipaddress.IPv6Address(start)
        excepts.append(str(ipaddress.ip_network((first, sub))))
    size = net.num_addresses
    addrs = [
        str(
            _addr(
                version,
                (int(net.network_address) + draw(st.integers(min_value=-8, max_value=size + 8)))
                % 2**bits,
            )
        )
        for _ in range(draw(st.integers(min_value=1, max_value=6)))
    ]
    for e in excepts:  # probe the edges of every except
        en = ipaddress.ip_network(e)
        addrs += [str(en.network_address), str(en.broadcast_address)]
    return version, str(net), excepts, addrs


def _addr(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def in_range(addr: str, cidr: str) -> bool:
    a, n = ipaddress.ip_address(addr), ipaddress.ip_network(cidr)
    lo = int(n.network_address)
    return a.version == n.version and lo <= int(a) < lo + n.num_addresses


@settings(deadline=None)
@given(blocks())
def test_ip_block_contains_matches_integer_arithmetic(
    case: tuple[int, str, list[str], list[str]],
) -> None:
    _, cidr, excepts, addrs = case
    block = IPBlock(cidr, tuple(excepts))
    for addr in addrs:
        expected = in_range(addr, cidr) and not any(in_range(addr, e) for e in excepts)
        assert block.contains(addr) == expected, addr


@settings(deadline=None)
@given(blocks())
def test_strict_subsets_validate_and_others_do_not(
    case: tuple[int, str, list[str], list[str]],
) -> None:
    version, cidr, excepts, _ = case
    peer = {"ipBlock": {"cidr": cidr, "except": excepts}}
    assert (
        validate_policy(policy_dict("x/p", {"podSelector": {}, "ingress": [{"from": [peer]}]}))
        == ()
    )
    outside = "0.0.0.0/0" if version == 4 else "::/0"
    bad = {"ipBlock": {"cidr": cidr, "except": [*excepts, outside]}}
    errors = validate_policy(policy_dict("x/p", {"podSelector": {}, "ingress": [{"from": [bad]}]}))
    assert [e.path for e in errors] == [f"spec.ingress[0].from[0].ipBlock.except[{len(excepts)}]"]


@settings(max_examples=50, deadline=None)
@given(blocks())
def test_ip_block_peer_in_the_evaluator(case: tuple[int, str, list[str], list[str]]) -> None:
    """An ipBlock peer admits exactly the addresses inside cidr and outside every except."""
    _, cidr, excepts, addrs = case
    target = make_pod("x/a", ip=("10.244.0.10", "fd00:10:244::a"))
    pol = make_policy(
        "x/p",
        {
            "podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": cidr, "except": excepts}}]}],
        },
    )
    ev = ReferenceEvaluator(make_state(make_ns("x"), target, pol))
    for addr in addrs:
        expected = in_range(addr, cidr) and not any(in_range(addr, e) for e in excepts)
        assert ev.allowed(addr, target, 80, Protocol.TCP) == expected, addr


# --- tables ----------------------------------------------------------------------------


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=6),
    st.sets(st.tuples(st.integers(1, 65535), st.sampled_from(Protocol)), min_size=1, max_size=3),
    st.randoms(),
)
def test_table_text_round_trip(n: int, cases: set[tuple[int, Protocol]], rnd: Any) -> None:
    pods = [make_pod(f"ns{i % 2}/p{i}", ip=f"10.244.0.{10 + i}") for i in range(n)]

    def coin(src: Pod, dst: Pod, port: int, protocol: Protocol) -> bool:
        return bool(rnd.random() < 0.5)

    table = compute_table(coin, pods, cases)
    parsed = parse_table(format_table(table))
    assert parsed == table
    assert isinstance(parsed, TruthTable)


# --- the evaluator's two paths agree on generated clusters -----------------------------

PEERS = st.one_of(
    st.fixed_dictionaries({"podSelector": SELECTORS}),
    st.fixed_dictionaries({"namespaceSelector": SELECTORS}),
    st.fixed_dictionaries({"podSelector": SELECTORS, "namespaceSelector": SELECTORS}),
    st.fixed_dictionaries(
        {
            "ipBlock": st.sampled_from(
                [{"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}, {"cidr": "10.244.0.8/29"}]
            )
        }
    ),
)
PORTS = st.one_of(
    st.fixed_dictionaries(
        {"port": st.sampled_from([80, 81])}, optional={"protocol": st.sampled_from(["TCP", "UDP"])}
    ),
    st.fixed_dictionaries({"port": st.just(80), "endPort": st.just(81)}),
    st.fixed_dictionaries(
        {"port": st.sampled_from(["http", "alt"])},
        optional={"protocol": st.sampled_from(["TCP", "UDP"])},
    ),
    st.fixed_dictionaries({"protocol": st.sampled_from(["TCP", "UDP"])}),
)
RULES = st.fixed_dictionaries(
    {}, optional={"peers": st.lists(PEERS, max_size=2), "ports": st.lists(PORTS, max_size=2)}
)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": draw(SELECTORS)}
    for field, peer_field in (("ingress", "from"), ("egress", "to")):
        rules = draw(st.one_of(st.none(), st.lists(RULES, max_size=2)))
        if rules is not None:
            spec[field] = [
                {
                    **({peer_field: r["peers"]} if "peers" in r else {}),
                    **({"ports": r["ports"]} if "ports" in r else {}),
                }
                for r in rules
            ]
    types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    if types is not None:
        spec["policyTypes"] = types
    return spec


@settings(max_examples=60, deadline=None)
@given(
    st.lists(LABELS, min_size=2, max_size=6),
    st.lists(LABELS, min_size=2, max_size=2),
    st.lists(specs(), max_size=4),
)
def test_memo_path_agrees_with_explain(
    pod_labels: list[dict[str, str]], ns_labels: list[dict[str, str]], pols: list[dict[str, Any]]
) -> None:
    nss = [
        make_ns(f"n{i}", *(f"{k}={v}" for k, v in lab.items())) for i, lab in enumerate(ns_labels)
    ]
    pods = [
        make_pod(
            f"n{i % 2}/p{i}",
            *(f"{k}={v}" for k, v in lab.items()),
            ip=f"10.244.{i % 2}.{5 + i}",
            ports=((80, "TCP", "http"), (81, "TCP", "alt") if i % 2 else (81, "UDP", "alt")),
        )
        for i, lab in enumerate(pod_labels)
    ]
    policies = [make_policy(f"n{j % 2}/pol{j}", spec) for j, spec in enumerate(pols)]
    ev = ReferenceEvaluator(make_state(*nss, *pods, *policies))
    for port, proto in ((80, Protocol.TCP), (81, Protocol.TCP), (81, Protocol.UDP)):
        for src in pods:
            for dst in pods:
                assert (
                    ev.allowed(src, dst, port, proto) == ev.explain(src, dst, port, proto).allowed
                )

"""Packet-flow tables through the tracer (kube-proxy's runPacketFlowTests, for policies).

Each scenario compiles node-0 (or node-1) of tests/dataplane/cluster.py and runs
packets through it; on failure the message shows every rule the packet matched.
Addresses: x/a 10.244.0.10, x/b .11, y/a .12, y/b .13 on node-0; x/c 10.244.1.10,
y/c 10.244.1.11 on node-1; node-0 is 172.18.0.2 with cni0 10.244.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from agent.core.model import Family, NetworkPolicy, Protocol
from agent.core.trace import Packet, TraceError, trace
from tests.builders import sel
from tests.dataplane.cluster import compiled, policy, state

V4, V6 = Family.V4, Family.V6


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    verdict: str
    proto: str = "TCP"
    port: int = 80
    ctstate: str = "NEW"
    hook: str = "FORWARD"
    mark: int = 0


XA, XB, YA, XC, YC = "10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.1.10", "10.244.1.11"
DENY_X = policy("x/deny", {"podSelector": {}})
ALLOW_B_TO_A = policy(
    "x/allow",
    {
        "podSelector": sel("pod=a"),
        "ingress": [{"from": [{"podSelector": sel("pod=b")}], "ports": [{"port": 80}]}],
    },
)
ALLOW_FROM_C_ANYWHERE = policy(
    "x/from-c",
    {
        "podSelector": sel("pod=a"),
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": sel("pod=c")}]}],
    },
)
EGRESS_DNS_ONLY = policy(
    "x/dns",
    {
        "podSelector": sel("pod=a"),
        "policyTypes": ["Egress"],
        "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}],
    },
)
SCTP_RANGE = policy(
    "x/sctp",
    {
        "podSelector": sel("pod=a"),
        "ingress": [
            {
                "from": [{"namespaceSelector": sel("ns=y")}],
                "ports": [{"protocol": "SCTP", "port": 80, "endPort": 81}],
            }
        ],
    },
)
IPBLOCK_EXCEPT = policy(
    "x/block",
    {
        "podSelector": sel("pod=a"),
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.1.0/24"]}}]}],
    },
)
A_TO_B_EGRESS = policy(
    "x/a-to-b",
    {
        "podSelector": sel("pod=a"),
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": sel("pod=b")}]}],
    },
)
B_FROM_NOBODY = policy("x/b-closed", {"podSelector": sel("pod=b")})
NAMED_PORT = policy(
    "x/named",
    {
        "podSelector": sel("pod=a"),
        "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}],
    },
)

SCENARIOS: dict[str, tuple[list[NetworkPolicy], dict[str, Any], list[Flow]]] = {
    "no policy: everything passes untouched": (
        [],
        {},
        [Flow(YA, XA, "PASS"), Flow(XA, "192.0.2.1", "PASS"), Flow(XC, XB, "PASS")],
    ),
    "deny all ingress to x": (
        [DENY_X],
        {},
        [
            Flow(YA, XA, "DROP"),
            Flow(XC, XB, "DROP"),
            Flow(YA, XA, "ACCEPT", ctstate="ESTABLISHED"),
            Flow(YA, XA, "ACCEPT", ctstate="RELATED"),
            Flow(YA, XA, "DROP", ctstate="INVALID"),
            Flow(XA, YA, "PASS"),  # egress of x/a is not isolated, y/a not at all
            Flow("10.244.0.1", XA, "PASS", hook="OUTPUT"),  # cni0 gateway: kubelet probes
            Flow("172.18.0.2", XA, "PASS", hook="OUTPUT"),
            Flow("172.18.0.3", XA, "DROP"),  # another node: no special pass
            Flow("192.0.2.7", XA, "DROP"),
            Flow(YA, XA, "DROP", mark=0x200000),  # a stray mark bit does not sneak through
            Flow(YA, YA, "PASS", mark=0x200000),
        ],
    ),
    "allow b to a on TCP 80": (
        [ALLOW_B_TO_A],
        {},
        [
            Flow(XB, XA, "ACCEPT"),
            Flow(XB, XA, "DROP", port=81),
            Flow(XB, XA, "DROP", proto="UDP"),
            Flow(YA, XA, "DROP"),  # pod=a in y is not pod=b in x
        ],
    ),
    "from pod=c in any namespace (cross-node)": (
        [ALLOW_FROM_C_ANYWHERE],
        {},
        [Flow(XC, XA, "ACCEPT"), Flow(YC, XA, "ACCEPT", proto="SCTP"), Flow(XB, XA, "DROP")],
    ),
    "egress: only DNS": (
        [EGRESS_DNS_ONLY],
        {},
        [
            Flow(XA, "192.0.2.53", "ACCEPT", proto="UDP", port=53),
            Flow(XA, "192.0.2.53", "DROP", proto="TCP", port=53),
            Flow(XA, XB, "DROP"),
            Flow(XA, "172.18.0.2", "PASS", hook="INPUT"),  # to its own node: always allowed
            Flow(XA, "10.244.0.1", "PASS", proto="SCTP", hook="INPUT"),
            Flow(XA, "172.18.0.2", "PASS", proto="UDP", port=53, hook="INPUT"),
            Flow(XA, "172.18.0.2", "PASS", hook="INPUT", ctstate="ESTABLISHED"),
            Flow(XA, "172.18.0.3", "DROP"),  # to another node: egress applies (FORWARD)
            Flow(XA, "10.244.1.1", "DROP"),
            Flow(XB, XA, "PASS"),  # x/a's ingress is not isolated
        ],
    ),
    "SCTP port range": (
        [SCTP_RANGE],
        {},
        [
            Flow(YA, XA, "ACCEPT", proto="SCTP", port=80),
            Flow(YC, XA, "ACCEPT", proto="SCTP", port=81),
            Flow(YA, XA, "DROP", proto="SCTP", port=82),
            Flow(YA, XA, "DROP", proto="TCP", port=80),
            Flow(XB, XA, "DROP", proto="SCTP", port=80),
        ],
    ),
    "ipBlock with except (nomatch)": (
        [IPBLOCK_EXCEPT],
        {},
        [
            Flow("10.1.2.3", XA, "ACCEPT"),
            Flow(XB, XA, "ACCEPT"),  # ipBlocks match pod IPs too
            Flow(XC, XA, "DROP"),  # 10.244.1.0/24 is the except
            Flow("192.0.2.1", XA, "DROP"),
        ],
    ),
    "same node: the source's egress and the destination's ingress in one pass": (
        [A_TO_B_EGRESS, B_FROM_NOBODY],
        {},
        [
            Flow(XA, XB, "DROP"),  # a may send, b accepts nobody
            Flow(XA, YA, "DROP"),  # a may only send to b
            Flow(XB, XA, "PASS"),
        ],
    ),
    "named port resolved on the selected pod": (
        [NAMED_PORT],
        {},
        [
            Flow(YA, XA, "ACCEPT", proto="UDP", port=81),
            Flow(YA, XA, "DROP", proto="UDP", port=80),
            Flow(YA, XA, "DROP", proto="TCP", port=81),
        ],
    ),
    "reject instead of drop": (
        [DENY_X],
        {"drop_action": "reject"},
        [Flow(YA, XA, "REJECT"), Flow("fd00:10:244::c", "fd00:10:244::a", "REJECT")],
    ),
    "IPv6": (
        [ALLOW_B_TO_A, IPBLOCK_EXCEPT],
        {},
        [
            Flow("fd00:10:244::b", "fd00:10:244::a", "ACCEPT"),
            Flow("fd00:10:244::c", "fd00:10:244::a", "DROP"),
            Flow("fd00:10:244::1", "fd00:10:244::a", "PASS", hook="OUTPUT"),
            Flow("fd00:172:18::2", "fd00:10:244::a", "PASS", hook="OUTPUT"),
            Flow("2001:db8::1", "fd00:10:244::a", "DROP"),
        ],
    ),
    "another mark bit": (
        [DENY_X, ALLOW_B_TO_A],
        {"mark_bit": 5},
        [Flow(XB, XA, "ACCEPT"), Flow(YA, XA, "DROP"), Flow(YA, XA, "DROP", mark=0x20)],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_packet_flows(name: str) -> None:
    policies, options, flows = SCENARIOS[name]
    rs = compiled(state(*policies), families=(V4, V6), **options)
    failures = []
    for f in flows:
        packet = Packet(
            f.src, f.dst, Protocol(f.proto), f.port, ctstate=f.ctstate, hook=f.hook, mark=f.mark
        )
        result = trace(rs, packet)
        if result.verdict != f.verdict:
            failures.append(f"expected {f.verdict}, got {result}")
    assert not failures, "\n".join(failures)


def test_sctp_ports_are_set_entries_of_their_protocol() -> None:
    rs = compiled(state(SCTP_RANGE))
    (ports,) = [s for s in rs.sets.values() if s.description.startswith("ingress allowed on a p")]
    assert ports.members and all(",sctp:8" in m for m in ports.members)
    ok = trace(rs, Packet("10.244.1.11", XA, Protocol.SCTP, 81))
    no = trace(rs, Packet("10.244.1.11", XA, Protocol.TCP, 81))
    assert (ok.verdict, no.verdict) == ("ACCEPT", "DROP"), f"{ok}\n{no}"


def test_trace_names_the_rules_it_matched() -> None:
    rs = compiled(state(ALLOW_B_TO_A))
    result = trace(rs, Packet(XB, XA, Protocol.TCP, 80))
    text = str(result)
    assert text.startswith("FORWARD TCP 10.244.0.11 -> 10.244.0.10:80 [NEW]: ACCEPT")
    assert '"a policy allows the port"' in text and '"allowed by policy"' in text


def test_trace_rejects_broken_rulesets() -> None:
    from dataclasses import replace

    rs = compiled(state(ALLOW_B_TO_A))
    with pytest.raises(TraceError, match="missing set"):
        trace(replace(rs, sets={}), Packet(XB, XA, Protocol.TCP, 80))

"""Revocation: which established flows does a new ruleset forbid?

Return traffic rides conntrack (`RELATED,ESTABLISHED` is accepted before any
policy, and the datapath's connmark fast path too), so a flow allowed when it
started outlives a policy that now forbids it. After a sync the node revokes the
conntrack entries of such flows, reading only those of local pods whose view of
the ruleset changed (agent.core.flowviews). Which of them go is `forbidden`:
each conntrack entry is traced as the NEW packet that opened it, as the filter
table saw it: the original source, the reply's source and source port as
destination (after DNAT, a Service's backend), in the hook it entered (OUTPUT
from a node address, INPUT to one, else FORWARD). Flows the tracer allows are
never touched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from agent.core.ipsets import node_addresses
from agent.core.model import ClusterState, Family, Protocol, family_of
from agent.core.ruleset import Ruleset
from agent.core.trace import Packet, trace
from agent.core.traceindex import TableIndex


@dataclass(frozen=True, slots=True)
class Flow:
    """One conntrack entry: its original tuple, and where the reply comes from.

    `reply_src`/`reply_sport` are the address and port the filter table saw as the
    destination of the opening packet (they differ from `dst`/`dport` after DNAT).
    """

    protocol: Protocol
    src: str
    sport: int
    dst: str
    dport: int
    reply_src: str
    reply_sport: int

    @property
    def family(self) -> Family:
        return family_of(self.src)

    def __str__(self) -> str:
        via = (
            ""
            if (self.dst, self.dport) == (self.reply_src, self.reply_sport)
            else (f" (to {self.reply_src}:{self.reply_sport})")
        )
        return f"{self.protocol.value} {self.src}:{self.sport} -> {self.dst}:{self.dport}{via}"


def local_addresses(state: ClusterState, node: str) -> frozenset[str]:
    """The addresses of the networked pods of `node` (canonical text)."""
    return frozenset(
        str(ipaddress.ip_address(ip))
        for pod in state.pods.values()
        if pod.node == node and pod.is_networked
        for ip in pod.ips
    )


def own_addresses(state: ClusterState, node: str) -> frozenset[str]:
    """The node's own addresses (its packets to pods leave through OUTPUT)."""
    out: set[str] = set()
    for addr in node_addresses(state, node, ()):
        try:
            out.add(str(ipaddress.ip_address(addr)))
        except ValueError:
            continue
    return frozenset(out)


def opening_packet(flow: Flow, own: frozenset[str]) -> Packet:
    """The NEW packet that opened `flow`, as our filter chains saw it."""
    if flow.reply_src in own:
        hook = "INPUT"
    elif flow.src in own:
        hook = "OUTPUT"
    else:
        hook = "FORWARD"
    return Packet(flow.src, flow.reply_src, flow.protocol, flow.reply_sport, hook=hook)


def forbidden(flows: Iterable[Flow], ruleset: Ruleset, own: frozenset[str]) -> list[Flow]:
    """The flows `ruleset` would refuse as new connections (in the order given)."""
    indexes = {family: TableIndex(table) for family, table in ruleset.tables.items()}
    out: list[Flow] = []
    for flow in flows:
        if family_of(flow.reply_src) is not flow.family:
            continue  # NAT across families: not a flow our tables police
        packet = opening_packet(flow, own)
        if not trace(ruleset, packet, index=indexes.get(flow.family)).allowed:
            out.append(flow)
    return out

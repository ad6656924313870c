"""The conntrack table over netlink (pyroute2's NFCTSocket): read the flows of some
addresses, delete flows, turn TCP flows into tombstones.

Revocation (agent.core.revoke decides) must not cost a walk of the node's whole
table in Python: each address is asked for with the kernel's own dump filter
(CTA_FILTER, Linux 5.8+), once as the original source and once as the reply's
source (the destination the filter table saw, after DNAT), so a table of
100,000 unrelated entries is skipped in the kernel. Entries are filtered again
here, so a kernel that ignores the filter costs time, never a wrong answer.

Past MAX_FILTERED_DUMPS addresses (the first policy of a node may change every
local pod's view) one unfiltered dump per family is cheaper
(agent.dataplane.ctscan).

Only TCP, UDP and SCTP entries are read (the protocols policies name). Deleting
an entry that is already gone is not an error. Sockets are opened on first use
in the caller's network namespace, one per family, and kept.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from agent.core.errors import DataplaneError
from agent.core.model import Family, Protocol, family_of
from agent.core.revoke import Flow

PROTOCOLS = {6: Protocol.TCP, 17: Protocol.UDP, 132: Protocol.SCTP}
NUMBERS = {p: n for n, p in PROTOCOLS.items()}
TCP_SYN_SENT = 1
# Each filtered dump is a walk of the kernel's whole table (at 100,000 entries on a 2-core
# node: ~60 ms, and one `scan` of it ~430 ms, 7-10 times more): past this many addresses
# (two dumps each), scan.
MAX_FILTERED_DUMPS = 4
AF = {Family.V4: socket.AF_INET, Family.V6: socket.AF_INET6}
_IP = {Family.V4: "CTA_IP_V4", Family.V6: "CTA_IP_V6"}


class ConntrackError(DataplaneError):
    """The kernel refused a conntrack request."""


class Conntrack:
    """Flows by address, and deletion, in the namespace the first call is made in."""

    def __init__(self) -> None:
        self._socks: dict[Family, Any] = {}

    def _sock(self, family: Family) -> Any:
        sock = self._socks.get(family)
        if sock is None:
            from pyroute2 import NFCTSocket

            try:
                sock = self._socks[family] = NFCTSocket(nfgen_family=AF[family])
            except OSError as exc:
                raise ConntrackError(f"cannot open a conntrack netlink socket: {exc}") from exc
        return sock

    def flows(self, addresses: Iterable[str]) -> list[Flow]:
        """The TCP/UDP/SCTP flows whose original source or reply source is one of `addresses`."""
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        wanted = set(addresses)
        if len(wanted) > MAX_FILTERED_DUMPS:
            from agent.dataplane.ctscan import scan

            return scan(wanted)
        seen: dict[tuple[object, ...], Flow] = {}
        for address in sorted(wanted):
            family = family_of(address)
            sock = self._sock(family)
            for side in ("tuple_orig", "tuple_reply"):
                filt = NFCTAttrTuple(family=AF[family], saddr=address)
                try:
                    for flow in _parse(sock.dump(**{side: filt}), family):
                        if flow.src in wanted or flow.reply_src in wanted:
                            seen.setdefault(_key(flow), flow)
                except OSError as exc:
                    raise ConntrackError(f"conntrack dump for {address}: {exc}") from exc
        return list(seen.values())

    def all_flows(self, family: Family) -> list[Flow]:
        """Every TCP/UDP/SCTP flow of one family (tests, diagnostics)."""
        try:
            return list(_parse(self._sock(family).dump(), family))
        except OSError as exc:
            raise ConntrackError(f"conntrack dump: {exc}") from exc

    def delete(self, flows: Iterable[Flow]) -> int:
        """Delete these entries; the number that were still there."""
        deleted = 0
        for flow in flows:
            try:
                self._sock(flow.family).entry("del", tuple_orig=_orig(flow))
                deleted += 1
            except OSError as exc:
                if getattr(exc, "code", None) == errno.ENOENT or exc.errno == errno.ENOENT:
                    continue
                raise ConntrackError(f"deleting conntrack entry {flow}: {exc}") from exc
        return deleted

    def neutralise(self, flow: Flow, *, timeout: int) -> bool:
        """Turn a TCP flow's entry into a tombstone, in place; False if it is gone.

        Deleting the entry alone lets the connection come back: the server's next
        retransmission is a NEW packet the other way, which the policies may allow,
        and conntrack picks the connection up mid-stream (nf_conntrack_tcp_loose).
        Put back in SYN_SENT, with its mark cleared (the fast path's bit), the entry
        keeps matching both directions, and a data segment or ACK in SYN_SENT is
        INVALID to conntrack, so the INVALID drop at the head of our chains drops
        it: the connection stays dead until the entry expires after `timeout`.
        """
        try:
            self._sock(flow.family).entry(
                "set",
                tuple_orig=_orig(flow),
                timeout=timeout,
                mark=0,
                protoinfo={
                    "attrs": [
                        [
                            "CTA_PROTOINFO_TCP",
                            {"attrs": [["CTA_PROTOINFO_TCP_STATE", TCP_SYN_SENT]]},
                        ]
                    ]
                },
            )
        except OSError as exc:
            if getattr(exc, "code", None) == errno.ENOENT or exc.errno == errno.ENOENT:
                return False
            raise ConntrackError(f"neutralising conntrack entry {flow}: {exc}") from exc
        return True

    def add(self, flow: Flow, *, timeout: int = 600, tcp_state: int = 3) -> None:
        """Create an entry (tests: a big table without real flows). TCP entries are
        ESTABLISHED unless told, SCTP ones ESTABLISHED (with made-up verification tags)."""
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        reply = NFCTAttrTuple(
            family=AF[flow.family],
            saddr=flow.reply_src,
            daddr=flow.src,
            proto=NUMBERS[flow.protocol],
            sport=flow.reply_sport,
            dport=flow.sport,
        )
        extra: dict[str, Any] = {}
        if flow.protocol is Protocol.TCP:
            extra["protoinfo"] = {
                "attrs": [
                    ["CTA_PROTOINFO_TCP", {"attrs": [["CTA_PROTOINFO_TCP_STATE", tcp_state]]}]
                ]
            }
        elif flow.protocol is Protocol.SCTP:
            extra["protoinfo"] = {
                "attrs": [
                    [
                        "CTA_PROTOINFO_SCTP",
                        {
                            "attrs": [
                                ["CTA_PROTOINFO_SCTP_STATE", 3],
                                ["CTA_PROTOINFO_SCTP_VTAG_ORIGINAL", 1],
                                ["CTA_PROTOINFO_SCTP_VTAG_REPLY", 2],
                            ]
                        },
                    ]
                ]
            }
        try:
            self._sock(flow.family).entry(
                "add", timeout=timeout, tuple_orig=_orig(flow), tuple_reply=reply, **extra
            )
        except OSError as exc:
            raise ConntrackError(f"adding conntrack entry {flow}: {exc}") from exc

    def tcp_state(self, flow: Flow) -> int | None:
        """The TCP state of a flow's entry (conntrack's numbers: 1 SYN_SENT, 3 ESTABLISHED),
        None when there is no such entry."""
        try:
            replies = self._sock(flow.family).entry("get", tuple_orig=_orig(flow))
        except OSError as exc:
            if getattr(exc, "code", None) == errno.ENOENT or exc.errno == errno.ENOENT:
                return None
            raise ConntrackError(f"reading conntrack entry {flow}: {exc}") from exc
        found = [m for m in replies if m.get_attr("CTA_TUPLE_ORIG") is not None]
        if not found:
            return None
        info = found[0].get_attr("CTA_PROTOINFO")
        tcp = info.get_attr("CTA_PROTOINFO_TCP") if info is not None else None
        state = tcp.get_attr("CTA_PROTOINFO_TCP_STATE") if tcp is not None else None
        return None if state is None else int(state)

    def close(self) -> None:
        socks, self._socks = self._socks, {}
        for sock in socks.values():
            sock.close()


def _orig(flow: Flow) -> Any:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    return NFCTAttrTuple(
        family=AF[flow.family],
        saddr=flow.src,
        daddr=flow.dst,
        proto=NUMBERS[flow.protocol],
        sport=flow.sport,
        dport=flow.dport,
    )


def _key(flow: Flow) -> tuple[object, ...]:
    return (flow.protocol, flow.src, flow.sport, flow.dst, flow.dport)


def _parse(messages: Iterable[Any], family: Family) -> Iterator[Flow]:
    ip = _IP[family]
    for msg in messages:
        orig, reply = msg.get_attr("CTA_TUPLE_ORIG"), msg.get_attr("CTA_TUPLE_REPLY")
        if orig is None or reply is None:
            continue
        o_ip, o_proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
        r_ip, r_proto = reply.get_attr("CTA_TUPLE_IP"), reply.get_attr("CTA_TUPLE_PROTO")
        if None in (o_ip, o_proto, r_ip, r_proto):
            continue
        protocol = PROTOCOLS.get(o_proto.get_attr("CTA_PROTO_NUM"))
        if protocol is None:
            continue
        yield Flow(
            protocol=protocol,
            src=str(o_ip.get_attr(f"{ip}_SRC")),
            sport=int(o_proto.get_attr("CTA_PROTO_SRC_PORT") or 0),
            dst=str(o_ip.get_attr(f"{ip}_DST")),
            dport=int(o_proto.get_attr("CTA_PROTO_DST_PORT") or 0),
            reply_src=str(r_ip.get_attr(f"{ip}_SRC")),
            reply_sport=int(r_proto.get_attr("CTA_PROTO_SRC_PORT") or 0),
        )

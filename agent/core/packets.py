"""Decode the first bytes of a logged IP packet: addresses, protocol, ports, ICMP type.

NFLOG hands the agent the packet from its IP header on (the copy range cut
short). This is the little a drop event needs, decoded by hand from bytes so it
stays pure and fast: IPv4 (options skipped by IHL) and IPv6 (extension headers
walked, a non-first fragment has no L4 header), then TCP, UDP, SCTP ports or
the ICMP/ICMPv6 type and code. A truncated or malformed packet gives what could
be read (addresses at least) or None, never an exception.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_PORTED = (6, 17, 132)  # TCP, UDP, SCTP: ports in the first four bytes
_ICMP = (1, 58)
_V6_EXTENSIONS = (0, 43, 60, 51)  # hop-by-hop, routing, destination options, AH
_V6_FRAGMENT = 44


@dataclass(frozen=True, slots=True)
class PacketInfo:
    family: int  # 4 or 6
    src: str
    dst: str
    protocol: str  # TCP, UDP, SCTP, ICMP, ICMPv6, or the number as text
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


def decode_packet(family: int, data: bytes) -> PacketInfo | None:
    """The addresses and L4 facts of an IPv4 or IPv6 packet; None if not even that."""
    if family == 4:
        return _ipv4(data)
    if family == 6:
        return _ipv6(data)
    return None


def _ipv4(data: bytes) -> PacketInfo | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    proto = data[9]
    src = str(ipaddress.IPv4Address(data[12:16]))
    dst = str(ipaddress.IPv4Address(data[16:20]))
    fragment_offset = int.from_bytes(data[6:8], "big") & 0x1FFF
    l4 = data[ihl:] if ihl >= 20 and fragment_offset == 0 else b""
    return _l4(4, src, dst, proto, l4)


def _ipv6(data: bytes) -> PacketInfo | None:
    if len(data) < 40 or data[0] >> 4 != 6:
        return None
    src = str(ipaddress.IPv6Address(data[8:24]))
    dst = str(ipaddress.IPv6Address(data[24:40]))
    proto, offset = data[6], 40
    while proto in _V6_EXTENSIONS or proto == _V6_FRAGMENT:
        if len(data) < offset + 8:
            return PacketInfo(6, src, dst, _name(proto))
        nxt = data[offset]
        if proto == _V6_FRAGMENT:
            fragment_offset = int.from_bytes(data[offset + 2 : offset + 4], "big") >> 3
            if fragment_offset:
                return PacketInfo(6, src, dst, _name(nxt))
            size = 8
        elif proto == 51:  # AH counts its length in 4-byte units, minus 2
            size = (data[offset + 1] + 2) * 4
        else:
            size = (data[offset + 1] + 1) * 8
        proto, offset = nxt, offset + size
    return _l4(6, src, dst, proto, data[offset:])


def _l4(family: int, src: str, dst: str, proto: int, l4: bytes) -> PacketInfo:
    name = _name(proto)
    if proto in _PORTED and len(l4) >= 4:
        sport = int.from_bytes(l4[0:2], "big")
        dport = int.from_bytes(l4[2:4], "big")
        return PacketInfo(family, src, dst, name, sport=sport, dport=dport)
    if proto in _ICMP and len(l4) >= 2:
        return PacketInfo(family, src, dst, name, icmp_type=l4[0], icmp_code=l4[1])
    return PacketInfo(family, src, dst, name)


def _name(proto: int) -> str:
    return PROTOCOLS.get(proto, str(proto))

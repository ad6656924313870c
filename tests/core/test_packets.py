"""Decoding logged packets: IPv4/IPv6, TCP/UDP/SCTP/ICMP, extension headers, truncation."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from agent.core.packets import PacketInfo, decode_packet


def v4(
    proto: int,
    l4: bytes,
    *,
    src: str = "10.244.0.10",
    dst: str = "10.244.1.20",
    options: bytes = b"",
    frag: int = 0,
) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        20 + len(options) + len(l4),
        1,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + l4


def v6(
    next_header: int, rest: bytes, *, src: str = "fd00:10:244::a", dst: str = "fd00:10:244:1::14"
) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(rest), next_header, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + rest
    )


PORTS = struct.pack("!HH", 40000, 8080) + b"\0" * 16

CASES = {
    "v4 tcp": (4, v4(6, PORTS), PacketInfo(4, "10.244.0.10", "10.244.1.20", "TCP", 40000, 8080)),
    "v4 udp": (
        4,
        v4(17, PORTS[:8]),
        PacketInfo(4, "10.244.0.10", "10.244.1.20", "UDP", 40000, 8080),
    ),
    "v4 sctp": (
        4,
        v4(132, PORTS[:12]),
        PacketInfo(4, "10.244.0.10", "10.244.1.20", "SCTP", 40000, 8080),
    ),
    "v4 icmp echo": (
        4,
        v4(1, b"\x08\x00\0\0\0\0\0\0"),
        PacketInfo(4, "10.244.0.10", "10.244.1.20", "ICMP", icmp_type=8, icmp_code=0),
    ),
    "v4 options": (
        4,
        v4(6, PORTS, options=b"\x01" * 8),
        PacketInfo(4, "10.244.0.10", "10.244.1.20", "TCP", 40000, 8080),
    ),
    "v4 later fragment": (
        4,
        v4(17, b"garbage!", frag=185),
        PacketInfo(4, "10.244.0.10", "10.244.1.20", "UDP"),
    ),
    "v4 truncated l4": (4, v4(6, b"\x9c"), PacketInfo(4, "10.244.0.10", "10.244.1.20", "TCP")),
    "v4 gre": (4, v4(47, b"\0" * 8), PacketInfo(4, "10.244.0.10", "10.244.1.20", "47")),
    "v6 tcp": (
        6,
        v6(6, PORTS),
        PacketInfo(6, "fd00:10:244::a", "fd00:10:244:1::14", "TCP", 40000, 8080),
    ),
    "v6 icmpv6 echo": (
        6,
        v6(58, b"\x80\x00\0\0"),
        PacketInfo(6, "fd00:10:244::a", "fd00:10:244:1::14", "ICMPv6", icmp_type=128, icmp_code=0),
    ),
    "v6 hop-by-hop then udp": (
        6,
        v6(0, bytes([17, 0]) + b"\0" * 6 + PORTS[:8]),
        PacketInfo(6, "fd00:10:244::a", "fd00:10:244:1::14", "UDP", 40000, 8080),
    ),
    "v6 first fragment": (
        6,
        v6(44, bytes([132, 0, 0, 1]) + b"\0\0\0\1" + PORTS[:12]),
        PacketInfo(6, "fd00:10:244::a", "fd00:10:244:1::14", "SCTP", 40000, 8080),
    ),
    "v6 later fragment": (
        6,
        v6(44, bytes([6, 0, 0x05, 0x01]) + b"\0\0\0\1" + b"\0" * 8),
        PacketInfo(6, "fd00:10:244::a", "fd00:10:244:1::14", "TCP"),
    ),
    "v6 truncated extension": (
        6,
        v6(60, b"\x06\x00"),
        PacketInfo(6, "fd00:10:244::a", "fd00:10:244:1::14", "60"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decode(name: str) -> None:
    family, data, want = CASES[name]
    assert decode_packet(family, data) == want


@pytest.mark.parametrize(
    ("family", "data"),
    [(4, b""), (4, b"\x45" + b"\0" * 10), (6, b"\x60" * 20), (4, v6(6, PORTS)), (5, b"\0" * 40)],
)
def test_not_even_addresses(family: int, data: bytes) -> None:
    assert decode_packet(family, data) is None

"""Send one ICMP/ICMPv6 echo request from the calling thread's namespace (no `ping` needed)."""

from __future__ import annotations

import socket
import struct


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(host: str, *, timeout: float = 0.5, ident: int = 0x4E50) -> bool:
    """Send an echo request to `host`; True if an echo reply came back within `timeout`."""
    v6 = ":" in host
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    request, reply = (128, 129) if v6 else (8, 0)
    body = b"netpol-agent"
    header = struct.pack("!BBHHH", request, 0, 0, ident, 1)
    if not v6:  # the kernel fills in the ICMPv6 checksum itself
        header = struct.pack("!BBHHH", request, 0, _checksum(header + body), ident, 1)
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        s.settimeout(timeout)
        s.sendto(header + body, (host, 0))
        try:
            while True:
                data = s.recv(2048)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
                if icmp[0] == reply and struct.unpack("!H", icmp[4:6])[0] == ident:
                    return True
        except TimeoutError:
            return False

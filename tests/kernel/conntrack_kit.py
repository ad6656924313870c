"""A big conntrack table without real flows: entries created over ctnetlink in batches.

pyroute2 encodes one message in about half a millisecond, so 100,000 entries
would take a minute; this encodes one UDP entry with pyroute2 as a template and
patches the original source address (and the reply's destination, the same
bytes) and the sequence number for each entry, sending a few hundred messages
per write without asking for acknowledgements (the kernel reports errors only).
Call it inside a test namespace.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_NEW, NFCTAttrTuple, nfct_msg

NETLINK_NETFILTER = 12
_MARK = "198.51.100.77"  # placeholder source in the template


def _template(dst: str, dport: int) -> tuple[bytes, list[int]]:
    msg = nfct_msg.create_from(
        timeout=3600,
        tuple_orig=NFCTAttrTuple(saddr=_MARK, daddr=dst, proto=17, sport=40000, dport=dport),
        tuple_reply=NFCTAttrTuple(saddr=dst, daddr=_MARK, proto=17, sport=dport, dport=40000),
    )
    msg["header"]["type"] = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
    msg["nfgen_family"] = socket.AF_INET
    msg.encode()
    data = bytes(msg.data)
    marker = socket.inet_aton(_MARK)
    offsets = [i for i in range(len(data) - 3) if data[i : i + 4] == marker]
    assert len(offsets) == 2, offsets
    return data, offsets


def fill(count: int, *, first: str = "100.64.0.1", dst: str = "192.0.2.1", dport: int = 53) -> None:
    """Create `count` UDP entries from consecutive addresses starting at `first` to dst:dport."""
    data, offsets = _template(dst, dport)
    base = int(ipaddress.IPv4Address(first))
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        batch: list[bytes] = []
        for i in range(count):
            buf = bytearray(data)
            struct.pack_into("=I", buf, 8, i + 1)  # nlmsg_seq
            addr = struct.pack("!I", base + i)
            for off in offsets:
                buf[off : off + 4] = addr
            batch.append(bytes(buf))
            if len(batch) == 256 or i == count - 1:
                sock.send(b"".join(batch))
                batch.clear()
        sock.setblocking(False)
        try:
            reply = sock.recv(65536)
        except BlockingIOError:
            return
        _length, kind = struct.unpack_from("=IH", reply)
        if kind == 2:  # NLMSG_ERROR
            (err,) = struct.unpack_from("=i", reply, 16)
            if err:
                raise OSError(-err, f"ctnetlink refused an entry: {err}")
    finally:
        sock.close()

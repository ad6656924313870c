"""Read the packets our drop path logs, straight from the kernel's NFLOG over netlink.

The drop path sends every dropped (or audited) packet, rate-limited by
`hashlimit`, to one NFLOG group. This module binds that group on a
NETLINK_NETFILTER socket (the nfnetlink_log subsystem) in the caller's network
namespace and returns each logged packet's prefix and first bytes: no ulogd, no
extra daemon. pyroute2 has no nfnetlink_log messages, so they are defined here
with its nfnetlink machinery (`nfgen_msg` + `nla`); the socket itself is a
plain netlink socket, so the reader controls its buffer, timeouts and errors.

Lost messages are counted, never waited for: the kernel numbers each message
of the group (`NFULNL_CFG_F_SEQ`), so a gap is exactly the number lost, and a
receive-buffer overflow (ENOBUFS) is counted too. The kernel never waits for
us either: a full socket buffer only loses log messages, never packets.

A group can be bound by one socket at a time; the kernel frees it when the
socket closes (the agent exiting), so a restarted agent binds it again. While
an old socket still holds it, `open()` raises DataplaneError (EBUSY) and the
caller retries.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import dataclass

from pyroute2.netlink import nla
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_ULOG, nfgen_msg

from agent.core.errors import DataplaneError

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NLMSG_HDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid

NFULNL_MSG_PACKET = (NFNL_SUBSYS_ULOG << 8) | 0
NFULNL_MSG_CONFIG = (NFNL_SUBSYS_ULOG << 8) | 1
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2
NFULNL_CFG_F_SEQ = 0x0001

SO_RCVBUFFORCE = 33
MAX_RECVS = 64  # per read(): then return, so the caller can flush what it has

NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10

DEFAULT_COPY_RANGE = 128  # IPv6 header (40) + extension headers + an L4 header
DEFAULT_RCVBUF = 1 << 20
# The kernel batches logged packets into one message until QUEUE_THRESHOLD of them
# or FLUSH_TIMEOUT (1/100 s) have passed (its defaults: 100 packets, 1 s).
FLUSH_TIMEOUT = 5
QUEUE_THRESHOLD = 32


class nfulnl_packet_msg(nfgen_msg):  # type: ignore[misc]
    """NFULNL_MSG_PACKET: one logged packet."""

    nla_map = (
        ("NFULA_UNSPEC", "none"),
        ("NFULA_PACKET_HDR", "packet_hdr"),
        ("NFULA_MARK", "be32"),
        ("NFULA_TIMESTAMP", "timestamp"),
        ("NFULA_IFINDEX_INDEV", "be32"),
        ("NFULA_IFINDEX_OUTDEV", "be32"),
        ("NFULA_IFINDEX_PHYSINDEV", "be32"),
        ("NFULA_IFINDEX_PHYSOUTDEV", "be32"),
        ("NFULA_HWADDR", "hex"),
        ("NFULA_PAYLOAD", "cdata"),
        ("NFULA_PREFIX", "asciiz"),
        ("NFULA_UID", "be32"),
        ("NFULA_SEQ", "be32"),
        ("NFULA_SEQ_GLOBAL", "be32"),
        ("NFULA_GID", "be32"),
        ("NFULA_HWTYPE", "be16"),
        ("NFULA_HWHEADER", "hex"),
        ("NFULA_HWLEN", "be16"),
    )

    class packet_hdr(nla):  # type: ignore[misc]
        fields = (("hw_protocol", ">H"), ("hook", "B"), ("pad", "B"))

    class timestamp(nla):  # type: ignore[misc]
        fields = (("sec", ">Q"), ("usec", ">Q"))


class nfulnl_config_msg(nfgen_msg):  # type: ignore[misc]
    """NFULNL_MSG_CONFIG: bind/unbind a group and set what it copies."""

    nla_map = (
        ("NFULA_CFG_UNSPEC", "none"),
        ("NFULA_CFG_CMD", "cmd"),
        ("NFULA_CFG_MODE", "mode"),
        ("NFULA_CFG_NLBUFSIZ", "be32"),
        ("NFULA_CFG_TIMEOUT", "be32"),
        ("NFULA_CFG_QTHRESH", "be32"),
        ("NFULA_CFG_FLAGS", "be16"),
    )

    class cmd(nla):  # type: ignore[misc]
        fields = (("command", "B"),)

    class mode(nla):  # type: ignore[misc]
        fields = (("copy_range", ">I"), ("copy_mode", "B"), ("pad", "B"))


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """One packet the kernel logged: its rule's prefix and the start of its IP header."""

    prefix: str
    family: int  # 4 or 6
    payload: bytes
    time: float  # unix seconds (kernel timestamp when present)


class NflogReader:
    """One NFLOG group bound on a netlink socket in the current network namespace."""

    def __init__(
        self,
        group: int,
        *,
        copy_range: int = DEFAULT_COPY_RANGE,
        rcvbuf: int = DEFAULT_RCVBUF,
    ) -> None:
        if not 0 <= group <= 0xFFFF:
            raise DataplaneError(f"NFLOG group {group}: must be 0..65535")
        self.group = group
        self.copy_range = copy_range
        self.rcvbuf = rcvbuf
        self.lost = 0  # messages the kernel numbered but we never received
        self.overflows = 0  # receive-buffer overflows (ENOBUFS)
        self._sock: socket.socket | None = None
        self._next_seq: int | None = None
        self._seq = 0

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> NflogReader:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            try:  # as root, past net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((0, 0))
            self._sock = sock
            self._config(cmd=NFULNL_CFG_CMD_BIND)
            self._config(mode=(self.copy_range, NFULNL_COPY_PACKET), flags=NFULNL_CFG_F_SEQ)
            self._config(timeout=FLUSH_TIMEOUT, qthresh=QUEUE_THRESHOLD)
        except OSError as exc:
            sock.close()
            self._sock = None
            busy = exc.errno in (errno.EBUSY, errno.EPERM)  # the kernel says EPERM
            why = "already bound by another socket" if busy else exc.strerror
            raise DataplaneError(f"NFLOG group {self.group}: cannot bind: {why}") from exc
        self._next_seq = None
        return self

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # the kernel unbinds the group when its socket goes

    def __enter__(self) -> NflogReader:
        return self if self._sock is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        if self._sock is None:
            raise DataplaneError(f"NFLOG group {self.group}: not open")
        return self._sock.fileno()

    # -- reading -------------------------------------------------------------------------
    def read(self, timeout: float) -> list[LoggedPacket]:
        """Every packet that arrives within `timeout` seconds (all queued ones at once)."""
        sock = self._sock
        if sock is None:
            raise DataplaneError(f"NFLOG group {self.group}: not open")
        ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
        out: list[LoggedPacket] = []
        for _ in range(MAX_RECVS if ready else 0):
            try:
                data = sock.recv(1 << 17, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overflows += 1  # the sequence gap counts what was lost
                    continue
                raise DataplaneError(f"NFLOG group {self.group}: receive: {exc}") from exc
            out.extend(self._parse(data))
        return out

    def _parse(self, data: bytes) -> list[LoggedPacket]:
        out: list[LoggedPacket] = []
        offset = 0
        while offset + NLMSG_HDR.size <= len(data):
            length, mtype, _, _, _ = NLMSG_HDR.unpack_from(data, offset)
            if length < NLMSG_HDR.size:
                break
            if mtype == NFULNL_MSG_PACKET:
                packet = self._packet(data[offset : offset + length])
                if packet is not None:
                    out.append(packet)
            offset += (length + 3) & ~3
        return out

    def _packet(self, raw: bytes) -> LoggedPacket | None:
        msg = nfulnl_packet_msg(raw)
        try:
            msg.decode()
        except Exception:  # a message pyroute2 cannot decode: lost, not fatal
            self.lost += 1
            return None
        seq = msg.get_attr("NFULA_SEQ")
        if seq is not None:
            if self._next_seq is not None and seq > self._next_seq:
                self.lost += seq - self._next_seq
            self._next_seq = seq + 1
        payload = msg.get_attr("NFULA_PAYLOAD")
        family = {NFPROTO_IPV4: 4, NFPROTO_IPV6: 6}.get(msg["nfgen_family"])
        if payload is None or family is None:
            self.lost += 1  # nothing to name: as good as lost
            return None
        stamp = msg.get_attr("NFULA_TIMESTAMP")
        when = stamp["sec"] + stamp["usec"] / 1e6 if stamp else time.time()
        prefix = msg.get_attr("NFULA_PREFIX") or ""
        return LoggedPacket(prefix=prefix, family=family, payload=bytes(payload), time=when)

    # -- configuration -------------------------------------------------------------------
    def _config(
        self,
        *,
        cmd: int | None = None,
        mode: tuple[int, int] | None = None,
        flags: int | None = None,
        timeout: int | None = None,
        qthresh: int | None = None,
    ) -> None:
        sock = self._sock
        assert sock is not None
        msg = nfulnl_config_msg()
        msg["nfgen_family"] = socket.AF_UNSPEC
        msg["version"] = 0
        msg["res_id"] = self.group
        attrs: list[tuple[str, object]] = []
        if cmd is not None:
            attrs.append(("NFULA_CFG_CMD", {"command": cmd}))
        if mode is not None:
            attrs.append(("NFULA_CFG_MODE", {"copy_range": mode[0], "copy_mode": mode[1]}))
        if flags is not None:
            attrs.append(("NFULA_CFG_FLAGS", flags))
        if timeout is not None:
            attrs.append(("NFULA_CFG_TIMEOUT", timeout))
        if qthresh is not None:
            attrs.append(("NFULA_CFG_QTHRESH", qthresh))
        msg["attrs"] = attrs
        self._seq += 1
        msg["header"]["type"] = NFULNL_MSG_CONFIG
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        sock.send(bytes(msg.data))
        self._ack()

    def _ack(self) -> None:
        sock = self._sock
        assert sock is not None
        ready, _, _ = select.select([sock], [], [], 5.0)
        if not ready:
            raise OSError(errno.ETIMEDOUT, "no answer from nfnetlink_log")
        data = sock.recv(65536)
        offset = 0
        while offset + NLMSG_HDR.size <= len(data):
            length, mtype, _, seq, _ = NLMSG_HDR.unpack_from(data, offset)
            if mtype == NLMSG_ERROR and seq == self._seq:
                (code,) = struct.unpack_from("=i", data, offset + NLMSG_HDR.size)
                if code:
                    raise OSError(-code, errno.errorcode.get(-code, str(-code)))
                return
            offset += max((length + 3) & ~3, NLMSG_HDR.size)
        raise OSError(errno.EPROTO, "unexpected answer from nfnetlink_log")

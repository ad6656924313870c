"""Small set-member changes over netlink (pyroute2) instead of spawning `ipset restore`.

A pod joining or leaving a peer set is one or two `add`/`del` lines. Spawning
`ipset restore` for them costs ~2 ms at p50 and up to ~16 ms at p99 on a busy
2-core node (the agent process is ~100 MB); the same lines over one netlink
socket kept open cost ~0.4 ms / ~6 ms (measured in docs/performance.md).
Only plain `add`/`del` lines go this way: addresses in hash:ip sets (gate,
counter with a comment, selector, locals sets) and `IP,proto:port,NET`
entries of hash:ip,port,net sets (the flattened port sets); anything else
(create, swap, destroy, nomatch, hash:net) is left to `ipset restore`.
Entries are applied in order, like `ipset restore` (which is not
transactional either); any error raises ApplyError, so the Applier forces a
full apply, and switches this path off for good, so a kernel or library that
disagrees costs one full sync, not one per event.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Mapping

from agent.core.errors import ApplyError
from agent.core.ruleset import SetType

MAX_LINES = 16  # pyroute2 costs ~0.1 ms an entry: past this, one `ipset restore` is cheaper


class NetlinkSets:
    """An ipset netlink socket, opened on first use in the caller's network namespace."""

    def __init__(self) -> None:
        self._sock: object | None = None
        self.broken = False
        self.lines = 0  # entries applied this way (for tests and curiosity)

    def apply(self, text: str, types: Mapping[str, SetType]) -> bool:
        """Apply `text` if it is only add/del lines this path takes; else False."""
        if self.broken:
            return False
        ops: list[tuple[str, str, str, str | None]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            parsed = _parse(line, types)
            if parsed is None:
                return False
            ops.append(parsed)
        if not ops or len(ops) > MAX_LINES:
            return False
        from pyroute2.ipset import IPSet, PortEntry

        op, name, entry, _ = ops[0]
        try:
            if self._sock is None:
                self._sock = IPSet()
            sock = self._sock
            assert isinstance(sock, IPSet)
            for op, name, entry, comment in ops:
                family = socket.AF_INET6 if ":" in entry.split(",")[0] else socket.AF_INET
                if types[name] is SetType.HASH_IP:
                    value: object = entry
                    etype = "ip"
                else:
                    ip, port, net = entry.split(",")
                    proto, _, number = port.partition(":")
                    if "/" not in net:
                        net += "/128" if family == socket.AF_INET6 else "/32"
                    value = (ip, PortEntry(int(number), protocol=_PROTO[proto]), net)
                    etype = "ip,port,net"
                if op == "add":
                    sock.add(name, value, family=family, etype=etype, comment=comment)
                else:
                    sock.delete(name, value, family=family, etype=etype)
                self.lines += 1
        except Exception as exc:
            self.broken = True
            self.close()
            raise ApplyError(f"ipset over netlink: {op} {name} {entry}: {exc}") from exc
        return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        close = getattr(sock, "close", None)
        if close is not None:
            close()


_PROTO = {"tcp": 6, "udp": 17, "sctp": 132}


def _parse(line: str, types: Mapping[str, SetType]) -> tuple[str, str, str, str | None] | None:
    """(op, set, entry, comment) of a line this path takes, else None."""
    parts = shlex.split(line) if '"' in line else line.split()
    comment: str | None = None
    if len(parts) == 5 and parts[3] == "comment" and parts[0] == "add":
        comment = parts[4]
        parts = parts[:3]
    if len(parts) != 3 or parts[0] not in ("add", "del"):
        return None
    kind = types.get(parts[1])
    if kind is SetType.HASH_IP and "/" not in parts[2] and "," not in parts[2]:
        return (parts[0], parts[1], parts[2], comment)
    if kind is SetType.HASH_IP_PORT_NET and comment is None:
        fields = parts[2].split(",")
        if len(fields) == 3 and fields[1].partition(":")[0] in _PROTO:
            return (parts[0], parts[1], parts[2], None)
    return None

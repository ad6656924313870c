"""Small set-member changes over netlink (pyroute2) instead of spawning `ipset restore`.

A pod joining or leaving a peer set is one or two `add`/`del` lines. Spawning
`ipset restore` for them costs ~2 ms at p50 and up to ~16 ms at p99 on a busy
2-core node (the agent process is ~100 MB); the same lines over one netlink
socket kept open cost ~0.4 ms / ~6 ms (measured in docs/performance.md).
Only plain `add`/`del` of addresses in hash:ip sets go this way (the selector
sets pod churn touches); anything else (create, swap, destroy, nomatch, nets,
ports) is left to `ipset restore`. Entries are applied in order, like
`ipset restore` (which is not transactional either); any error raises
ApplyError, so the Applier forces a full apply, and switches this path off
for good, so a kernel or library that disagrees costs one full sync, not one
per event.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from agent.core.errors import ApplyError
from agent.core.ruleset import SetType

MAX_LINES = 256  # bigger batches: one `ipset restore` is as cheap


class NetlinkSets:
    """An ipset netlink socket, opened on first use in the caller's network namespace."""

    def __init__(self) -> None:
        self._sock: object | None = None
        self.broken = False
        self.lines = 0  # entries applied this way (for tests and curiosity)

    def apply(self, text: str, types: Mapping[str, SetType]) -> bool:
        """Apply `text` if it is only add/del of addresses in hash:ip sets; else False."""
        if self.broken:
            return False
        ops: list[tuple[str, str, str]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("add", "del"):
                return False
            if types.get(parts[1]) is not SetType.HASH_IP or "/" in parts[2]:
                return False
            ops.append((parts[0], parts[1], parts[2]))
        if not ops or len(ops) > MAX_LINES:
            return False
        from pyroute2.ipset import IPSet

        op, name, entry = ops[0]
        try:
            if self._sock is None:
                self._sock = IPSet()
            sock = self._sock
            assert isinstance(sock, IPSet)
            for op, name, entry in ops:
                family = socket.AF_INET6 if ":" in entry else socket.AF_INET
                if op == "add":
                    sock.add(name, entry, family=family, etype="ip")
                else:
                    sock.delete(name, entry, family=family, etype="ip")
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

"""An index over one filter table so the tracer skips rules a packet cannot match.

Dispatch chains hold one rule per local pod address (`-s IP/32`, `-d IP/32`);
walking them linearly is what the kernel does, but `reachability --engine
ruleset` traces millions of packets. The index keeps, per chain, the rules
without a host address and the rules keyed by their host source or
destination, so a packet only meets the rules that could match it, in order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from agent.core.ruleset import Chain, Table

_HOST = ("/32", "/128")


@dataclass
class _ChainIndex:
    always: list[int] = field(default_factory=list)
    by_src: dict[str, list[int]] = field(default_factory=dict)
    by_dst: dict[str, list[int]] = field(default_factory=dict)

    def candidates(self, src: str, dst: str) -> list[int]:
        a, b = self.by_src.get(src), self.by_dst.get(dst)
        if a is None and b is None:
            return self.always
        return list(heapq.merge(self.always, a or [], b or []))


class TableIndex:
    """Chains by name plus, built on first use, a per-chain rule index."""

    def __init__(self, table: Table) -> None:
        self.chains: dict[str, Chain] = table.by_name()
        self._index: dict[str, _ChainIndex] = {}

    def candidates(self, chain: Chain, src: str, dst: str) -> list[int]:
        """0-based positions of the rules of `chain` that src -> dst may match, in order."""
        index = self._index.get(chain.name)
        if index is None:
            index = _ChainIndex()
            for i, rule in enumerate(chain.rules):
                if rule.src is not None and rule.src.endswith(_HOST):
                    index.by_src.setdefault(rule.src.rpartition("/")[0], []).append(i)
                elif rule.dst is not None and rule.dst.endswith(_HOST):
                    index.by_dst.setdefault(rule.dst.rpartition("/")[0], []).append(i)
                else:
                    index.always.append(i)
            self._index[chain.name] = index
        return index.candidates(src, dst)

"""Monotonic drop counters across rule rewrites.

The kernel's per-pod drop counters live on rules; rewriting a chain (every full
sync, or a local pod joining or leaving the drop chain) recreates the rules and
zeroes them. Prometheus copes with counter resets, but drops counted since the
last scrape would be lost every resync. `DropTotals` banks what the kernel had
counted before a rewrite, so the exported counters only ever grow: the agent
samples right before each full apply and calls `rewritten()` after it; a
decrease seen at any other time (an incremental rewrite) is treated as a reset
too, losing at most the drops between the previous sample and that rewrite.
"""

from __future__ import annotations

from collections.abc import Mapping

Key = tuple[str, str]  # ("ns/pod", "ingress" | "egress")
Count = tuple[int, int]  # (packets, bytes)


class DropTotals:
    def __init__(self) -> None:
        self._banked: dict[Key, Count] = {}
        self._last: dict[Key, Count] = {}

    def observe(self, raw: Mapping[Key, Count]) -> dict[Key, Count]:
        """Feed one kernel reading; return the monotonic totals for the keys present."""
        for key, (packets, octets) in raw.items():
            last = self._last.get(key)
            if last is not None and (packets < last[0] or octets < last[1]):
                self._bank(key, last)
        self._last = dict(raw)
        self._banked = {k: v for k, v in self._banked.items() if k in raw}
        return {k: _add(self._banked.get(k, (0, 0)), v) for k, v in raw.items()}

    def rewritten(self) -> None:
        """Every counting rule was just recreated (a full apply): bank the last reading."""
        for key, last in self._last.items():
            self._bank(key, last)
        self._last = {}

    def _bank(self, key: Key, count: Count) -> None:
        self._banked[key] = _add(self._banked.get(key, (0, 0)), count)


def _add(a: Count, b: Count) -> Count:
    return (a[0] + b[0], a[1] + b[1])

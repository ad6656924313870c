"""When to sync: a coalescing, bounded-frequency pacer with an injected clock.

Events only *request* a sync; the pacer decides when one runs and of which
kind, the way kube-network-policies' BoundedFrequencyRunner does:

- requests coalesce: however many arrive, at most one sync is pending, and
  while a sync runs the next one collects everything that arrived meanwhile;
- syncs start at most every `min_interval` seconds (bursts become few syncs);
- a full sync is due every `resync_interval` seconds and after any failure;
- a failure retries with jittered exponential backoff;
- a tamper check runs every `tamper_interval` seconds; when it finds drift the
  next sync is full.

The Pacer is a plain state machine over `now` values (tests drive it with
fake time); `Clock` is the seam the thin loops use to read time and to wait.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until `event` is set or `timeout` seconds pass; True if set."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff: attempt 1 waits about `initial`, doubling to `maximum`."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.2  # +- fraction

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        if attempt <= 0 or self.initial <= 0:
            return 0.0
        base = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.maximum, base * (1.0 + spread)))


class Action(enum.Enum):
    FULL_SYNC = "full"
    INCREMENTAL_SYNC = "incremental"
    TAMPER_CHECK = "tamper_check"


class Pacer:
    """The pacing state machine. Not thread-safe: callers hold their own lock."""

    def __init__(
        self,
        *,
        now: float,
        min_interval: float,
        resync_interval: float,
        tamper_interval: float,
        backoff: Backoff,
        rng: random.Random | None = None,
    ) -> None:
        self.min_interval = min_interval
        self.resync_interval = resync_interval
        self.tamper_interval = tamper_interval
        self.backoff = backoff
        self._rng = rng or random.Random()
        self._pending = False
        self._full = True  # the first sync is always full: adopt whatever is in the kernel
        self._pending_since: float | None = None
        self._last_start = float("-inf")
        self._last_full = now  # the first full is requested explicitly via _full
        self._last_tamper = now
        self._retry_at = float("-inf")
        self._running = False
        self._inflight_since: float | None = None
        self.failures = 0
        self.last_success: float | None = None

    # --- inputs -----------------------------------------------------------------------
    def request(self, now: float, *, full: bool = False) -> None:
        if not self._pending:
            self._pending = True
            if self._pending_since is None:
                self._pending_since = now
        if full:
            self._full = True

    def started(self, now: float, action: Action) -> None:
        """A sync (or tamper check) begins; pending requests are now being handled."""
        if action is Action.TAMPER_CHECK:
            self._last_tamper = now
            return
        self._running = True
        self._last_start = now
        self._pending = False
        self._inflight_since = self._pending_since
        self._pending_since = None
        if action is Action.FULL_SYNC:
            self._full = False

    def finished(self, now: float, *, ok: bool, action: Action, since: float) -> None:
        """A sync that started at `since` ended."""
        self._running = False
        if ok:
            self.failures = 0
            self._retry_at = float("-inf")
            self.last_success = now
            if action is Action.FULL_SYNC:
                self._last_full = since
        else:
            self.failures += 1
            self._retry_at = now + self.backoff.delay(self.failures, self._rng)
            earlier = [t for t in (self._inflight_since, self._pending_since) if t is not None]
            self.request(now, full=True)
            self._pending_since = min(earlier) if earlier else now
        self._inflight_since = None

    def tamper_result(self, now: float, *, tampered: bool) -> None:
        self._last_tamper = now
        if tampered:
            self.request(now, full=True)

    # --- queries ----------------------------------------------------------------------
    def _sync_wanted_at(self) -> float:
        """The time from which a sync is wanted (inf if none)."""
        if self._pending or self._full:
            return float("-inf")
        return self._last_full + self.resync_interval

    def next_action(self, now: float) -> tuple[Action | None, float]:
        """What to do now (or None) and, if nothing, the time to look again."""
        if self._running:
            return None, float("inf")
        wanted = self._sync_wanted_at()
        allowed = max(self._last_start + self.min_interval, self._retry_at)
        sync_at = max(wanted, allowed)
        tamper_at = self._last_tamper + self.tamper_interval
        if sync_at <= now:
            full = self._full or now >= self._last_full + self.resync_interval
            return (Action.FULL_SYNC if full else Action.INCREMENTAL_SYNC), now
        if tamper_at <= now and self.last_success is not None:
            return Action.TAMPER_CHECK, now
        next_at = min(sync_at, tamper_at if self.last_success is not None else sync_at)
        return None, next_at

    def due_since(self, now: float) -> float | None:
        """Since when a sync has been due and not yet succeeded (None: nothing overdue)."""
        candidates = []
        if self._pending_since is not None:
            candidates.append(self._pending_since)
        periodic = self._last_full + self.resync_interval
        if periodic <= now:
            candidates.append(periodic)
        return min(candidates) if candidates else None

    @property
    def pending(self) -> bool:
        return self._pending or self._full

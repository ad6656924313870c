"""Fault hooks for tests: the failures a real cluster throws at a client.

faults.drop_watches()            end every open watch stream now
faults.refuse_connections(5.0)   close new and idle connections for 5 s (and drop watches)
faults.compact()                 forget history: watching from an older version gets 410
faults.delay(0.5)                answer every request 0.5 s late (0 to stop)
faults.fail_next(2, code=500)    answer the next 2 matching requests with an error Status
faults.reset()                   back to normal
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.lab.apiserver.errors import ApiError
from agent.lab.apiserver.store import Store

_REASONS = {
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    403: "Forbidden",
    409: "Conflict",
}


@dataclass(slots=True)
class _Failure:
    remaining: int
    code: int
    method: str | None
    path_contains: str | None


class Faults:
    """Switchable failures, consulted by the HTTP layer on every request."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._refuse_until = 0.0
        self._delay = 0.0
        self._failures: list[_Failure] = []

    def drop_watches(self) -> int:
        """End every open watch stream; returns how many there were."""
        watchers = list(self._store.watchers())
        for watcher in watchers:
            watcher.stop()
        return len(watchers)

    def refuse_connections(self, seconds: float) -> None:
        with self._lock:
            self._refuse_until = self._clock() + seconds
        self.drop_watches()

    def refusing(self) -> bool:
        with self._lock:
            return self._clock() < self._refuse_until

    def compact(self, *, drop_watches: bool = False) -> int:
        """Forget the event history; returns the resourceVersion it was compacted at."""
        rv = self._store.compact()
        if drop_watches:
            self.drop_watches()
        return rv

    def delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    @property
    def current_delay(self) -> float:
        with self._lock:
            return self._delay

    def fail_next(
        self,
        count: int,
        *,
        code: int = 500,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        with self._lock:
            self._failures.append(
                _Failure(remaining=count, code=code, method=method, path_contains=path_contains)
            )

    def take_failure(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            for failure in self._failures:
                if failure.method not in (None, method):
                    continue
                if failure.path_contains is not None and failure.path_contains not in path:
                    continue
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                reason = _REASONS.get(failure.code, "InternalError")
                return ApiError(failure.code, reason, f"injected fault: {reason}")
        return None

    def reset(self) -> None:
        with self._lock:
            self._refuse_until = 0.0
            self._delay = 0.0
            self._failures.clear()

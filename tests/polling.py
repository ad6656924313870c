"""Polling for tests that run real threads, servers or processes (never for unit tests).

Unit tests inject clocks; the tests that talk to a real API server, agent
process or kernel have to wait for something to happen instead. They all wait
the same way, with this one helper, so a timeout always says how long it waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    cond: Callable[[], bool],
    timeout: float = 10.0,
    why: Callable[[], str] | None = None,
    *,
    interval: float = 0.02,
) -> None:
    """Poll `cond` every `interval` s until it is true; fail after `timeout` s.

    `why`, when given, is called on failure and its text added to the message.
    """
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            detail = f"\n{why()}" if why is not None else ""
            raise AssertionError(f"condition not reached in {timeout}s{detail}")
        time.sleep(interval)

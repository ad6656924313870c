"""The pacer, driven with fake time: coalescing, bounds, periodic full resync, backoff."""

from __future__ import annotations

import random

from agent.node.pacing import Action, Backoff, Pacer


def make(now: float = 0.0, **kw: float) -> Pacer:
    args = {"min_interval": 1.0, "resync_interval": 60.0, "tamper_interval": 10.0}
    args.update(kw)
    return Pacer(now=now, backoff=Backoff(1.0, 8.0, jitter=0.0), rng=random.Random(1), **args)


def run_sync(p: Pacer, now: float, *, ok: bool = True) -> Action:
    action, _ = p.next_action(now)
    assert action in (Action.FULL_SYNC, Action.INCREMENTAL_SYNC), action
    p.started(now, action)
    p.finished(now + 0.01, ok=ok, action=action, since=now)
    return action


def test_first_sync_is_full_then_nothing_until_requested() -> None:
    p = make()
    assert run_sync(p, 0.0) is Action.FULL_SYNC
    action, next_at = p.next_action(2.0)
    assert action is None and next_at == 10.0  # the tamper check timer
    p.request(3.0)
    assert run_sync(p, 3.0) is Action.INCREMENTAL_SYNC


def test_requests_coalesce_and_respect_min_interval() -> None:
    p = make()
    run_sync(p, 0.0)
    for i in range(1000):
        p.request(0.1 + i * 0.0001)
    action, next_at = p.next_action(0.2)
    assert action is None and next_at == 1.0  # one sync, no earlier than min_interval
    assert run_sync(p, 1.0) is Action.INCREMENTAL_SYNC
    assert p.next_action(1.5)[0] is None  # everything was handled by that one sync


def test_requests_during_a_sync_wait_for_it() -> None:
    p = make(min_interval=0.0)
    run_sync(p, 0.0)
    p.request(5.0)
    p.started(5.0, Action.INCREMENTAL_SYNC)
    p.request(5.1)  # arrives while the sync runs
    assert p.next_action(5.2)[0] is None
    p.finished(5.3, ok=True, action=Action.INCREMENTAL_SYNC, since=5.0)
    assert p.next_action(5.3)[0] is Action.INCREMENTAL_SYNC


def test_periodic_full_resync() -> None:
    p = make()
    run_sync(p, 0.0)
    p.tamper_result(10.0, tampered=False)
    p.tamper_result(20.0, tampered=False)
    p.tamper_result(30.0, tampered=False)
    p.tamper_result(40.0, tampered=False)
    p.tamper_result(50.0, tampered=False)
    assert p.next_action(59.0) == (None, 60.0)
    assert p.next_action(60.0)[0] is Action.FULL_SYNC


def test_failure_backs_off_and_forces_full() -> None:
    p = make(min_interval=0.0)
    run_sync(p, 0.0)
    p.request(1.0)
    run_sync(p, 1.0, ok=False)
    assert p.failures == 1
    action, next_at = p.next_action(1.5)
    assert action is None and abs(next_at - 2.01) < 1e-9  # 1 s backoff
    assert run_sync(p, 2.01, ok=False) is Action.FULL_SYNC
    _, next_at = p.next_action(2.1)
    assert abs(next_at - (2.02 + 2.0)) < 1e-9  # doubled
    assert run_sync(p, 4.02) is Action.FULL_SYNC
    assert p.failures == 0 and p.next_action(5.0)[0] is None


def test_tamper_check_timer_and_drift_forces_full() -> None:
    p = make()
    run_sync(p, 0.0)
    action, _ = p.next_action(10.0)
    assert action is Action.TAMPER_CHECK
    p.started(10.0, action)
    p.tamper_result(10.0, tampered=True)
    assert p.next_action(10.0)[0] is Action.FULL_SYNC


def test_no_tamper_check_before_the_first_success() -> None:
    p = make()
    p.started(0.0, Action.FULL_SYNC)
    p.finished(0.1, ok=False, action=Action.FULL_SYNC, since=0.0)
    action, next_at = p.next_action(0.5)
    assert action is None and next_at < 10.0


def test_due_since_tracks_the_oldest_unserved_need() -> None:
    p = make(min_interval=0.0)
    run_sync(p, 0.0)
    assert p.due_since(1.0) is None
    p.request(5.0)
    p.started(5.0, Action.INCREMENTAL_SYNC)
    p.finished(5.1, ok=False, action=Action.INCREMENTAL_SYNC, since=5.0)
    assert p.due_since(6.0) == 5.0  # still due since the first request
    run_sync(p, 7.0)
    assert p.due_since(8.0) is None
    assert p.due_since(68.0) == 67.0  # the periodic resync (full at 7.0 + 60) is overdue


def test_backoff_is_bounded_and_jittered() -> None:
    b = Backoff(0.5, 4.0)
    rng = random.Random(7)
    delays = [b.delay(n, rng) for n in range(1, 10)]
    assert all(0.0 < d <= 4.0 for d in delays)
    assert 0.4 <= delays[0] <= 0.6
    assert Backoff(0.0, 1.0).delay(3) == 0.0

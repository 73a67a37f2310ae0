"""Calls release the GIL: Python threads make progress while others decide."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from subprocess import Popen

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule


def test_two_threads_hitting_concurrently_both_progress(guard: RateGuard) -> None:
    rounds = 300
    done = {0: 0, 1: 0}
    start = threading.Barrier(2)

    def work(n: int) -> None:
        start.wait()
        for i in range(rounds):
            assert guard.hit(f"thread-{n}-{i % 7}", "1000/minute").allowed
            done[n] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert done == {0: rounds, 1: rounds}


def test_one_shared_quota_is_never_exceeded_across_threads(guard: RateGuard) -> None:
    # An exact log: never more than 60 in any minute, whatever the window boundaries.
    rule = RateLimitRule(limit="60/minute", algorithm="sliding_log")
    allowed: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            ok = guard.hit("shared", rule).allowed
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(allowed) == 200
    assert sum(allowed) == 60


def test_a_call_waiting_on_redis_does_not_hold_the_gil(
    spawn_redis: Callable[[], AbstractContextManager[tuple[str, Popen[bytes]]]],
) -> None:
    with spawn_redis() as (url, proc):
        guard = RateGuard(RateGuardConfig(redis_url=url, redis_timeout=0.5))
        assert guard.hit("k", "5/minute").source == "store"
        os.kill(proc.pid, signal.SIGSTOP)  # Redis freezes: the next call waits for its timeout
        try:
            result = []
            waiting = threading.Thread(target=lambda: result.append(guard.hit("k", "5/minute")))
            started = time.monotonic()
            waiting.start()
            spins = 0
            while waiting.is_alive():
                spins += 1  # pure Python: runs only while the waiting call has released the GIL
            elapsed = time.monotonic() - started
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert elapsed >= 0.4
        assert spins > 10_000
        assert result[0].allowed and result[0].source == "fail_open"


def test_guards_made_and_dropped_do_not_pile_up_connections(redis_url: str) -> None:
    # Each guard's sync calls connect from the calling thread; a dropped guard's thread
    # connection is closed when the thread next uses a guard.
    import gc
    import os

    from py_rate_guard import RateGuard
    from py_rate_guard.models.config import RateGuardConfig

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    RateGuard(RateGuardConfig(redis_url=redis_url)).hit("warm", "10/hour")
    gc.collect()
    before = open_fds()
    for i in range(30):
        guard = RateGuard(RateGuardConfig(redis_url=redis_url))
        assert guard.hit(f"g{i}", "10/hour").allowed
        del guard
        gc.collect()
    assert open_fds() <= before + 4


def test_threads_sharing_a_connection_all_return_within_the_budget_when_redis_freezes(
    spawn_redis: Callable[[], AbstractContextManager[tuple[str, Popen[bytes]]]],
) -> None:
    # Eight threads pipeline their calls on the one sync connection (`redis_pool_size=1`):
    # when Redis freezes, the thread reading for the others times out and so does every call
    # queued behind it, each within its own budget; once Redis is back, decisions are its again.
    budget = 0.2
    with spawn_redis() as (url, proc):
        guard = RateGuard(
            RateGuardConfig(
                redis_url=url, redis_timeout=budget, breaker_threshold=1000, key_prefix="freeze"
            )
        )
        assert guard.hit("warm", "1000/minute").source == "store"
        os.kill(proc.pid, signal.SIGSTOP)
        took: list[float] = []
        sources: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def work(n: int) -> None:
            barrier.wait()
            for i in range(3):
                started = time.monotonic()
                decision = guard.hit(f"t{n}-{i}", "1000/minute")
                with lock:
                    took.append(time.monotonic() - started)
                    sources.append(decision.source)

        try:
            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert len(took) == 24
        assert set(sources) == {"fail_open"}
        # Generous: a loaded 2-core machine must not make this flaky; a hang would be seconds.
        assert max(took) < budget + 0.5, sorted(took)[-3:]
        deadline = time.monotonic() + 5
        while guard.hit("after", "1000/minute").source != "store":
            assert time.monotonic() < deadline, "decisions never went back to Redis"
            time.sleep(0.05)

"""`ahit` / `apeek`: the batched async bridge under asyncio and uvloop, several loops in turn,
closed loops, cancellation, and calls made before any loop runs."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

import pytest

from py_rate_guard import Decision, RateGuard, _native
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

T = TypeVar("T")
SpawnRedis = Callable[[], AbstractContextManager[tuple[str, "subprocess.Popen[bytes]"]]]
ALGORITHMS = ["sliding_window", "fixed_window", "token_bucket", "sliding_log"]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[T]], T]]:
    """Runs a coroutine to the end on a fresh loop of the kind under test."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop

    def run(awaitable: Awaitable[T]) -> T:
        loop = new_loop()
        try:
            return loop.run_until_complete(awaitable)
        finally:
            loop.close()

    yield run


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ahit_decides_like_hit(
    guard: RateGuard, run: Callable[[Awaitable[object]], object], algorithm: str
) -> None:
    rule = RateLimitRule(limit="3/hour", algorithm=algorithm)

    async def go() -> list[Decision]:
        return [await guard.ahit("a", rule) for _ in range(4)]

    decisions = run(go())
    assert isinstance(decisions, list)
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    # The sync API sees the same state.
    assert not guard.peek("a", rule).allowed
    assert guard.hit("b", rule).remaining == 2


@pytest.mark.parametrize("algorithm", ["fixed_window", "token_bucket", "sliding_log"])
def test_concurrent_ahits_admit_exactly_the_limit(
    guard: RateGuard, run: Callable[[Awaitable[object]], object], algorithm: str
) -> None:
    rule = RateLimitRule(limit="50/hour", algorithm=algorithm)

    async def go() -> list[Decision]:
        return await asyncio.gather(*(guard.ahit("hot", rule) for _ in range(400)))

    decisions = run(go())
    assert isinstance(decisions, list)
    assert sum(d.allowed for d in decisions) == 50
    # Every answer is a whole Decision, in the order asked: the remaining counts down.
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))


def test_apeek_and_many(guard: RateGuard, run: Callable[[Awaitable[object]], object]) -> None:
    async def go() -> tuple[Decision, Decision, Decision, Decision]:
        peeked = await guard.apeek("p", "2/hour")
        both = await guard.ahit_many([("global", "10/hour"), ("p", "1/hour")])
        refused = await guard.ahit_many([("global", "10/hour"), ("p", "1/hour")])
        after = await guard.apeek_many([("global", "10/hour")])
        return peeked, both, refused, after

    result = run(go())
    assert isinstance(result, tuple)
    peeked, both, refused, after = result
    assert peeked.allowed and peeked.remaining == 2  # peek: what remains now
    assert both.allowed and not refused.allowed
    # The refused request consumed nothing from the global rule: 10 - 1 left.
    assert after.remaining == 9


def test_a_coroutine_made_before_the_loop_runs(guard: RateGuard) -> None:
    pending = guard.ahit("early", "1/hour")  # no running loop yet
    d = asyncio.run(pending)
    assert d.allowed and d.remaining == 0


def test_bad_arguments_raise_when_awaited(guard: RateGuard) -> None:
    with pytest.raises(_native.ConfigError, match="cost"):
        asyncio.run(guard.ahit("x", "1/hour", cost=0))


def test_one_guard_on_many_loops_neither_leaks_nor_hangs(
    redis_url: str, run: Callable[[Awaitable[object]], object]
) -> None:
    guard = RateGuard(RateGuardConfig(redis_url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}"))

    async def go(i: int) -> bool:
        results = await asyncio.gather(*(guard.ahit(f"loop{i}", "100/hour") for _ in range(5)))
        return all(d.allowed for d in results)

    assert run(go(0))
    gc.collect()
    fds = _open_fds()
    for i in range(1, 40):
        assert run(go(i))
    gc.collect()
    # One eventfd per live loop at most, and the loops are gone.
    assert _open_fds() <= fds + 1
    assert _native._bridges() <= 1


def test_a_loop_closed_with_calls_in_flight(redis_url: str, spawn_redis: SpawnRedis) -> None:
    with spawn_redis() as (url, proc):
        guard = RateGuard(RateGuardConfig(redis_url=url, redis_timeout=5.0, fail_open=True))
        # Freeze the server, so the calls are still in flight when their loop goes away.
        proc.send_signal(19)  # SIGSTOP
        try:
            loop = asyncio.new_event_loop()
            tasks = [loop.create_task(guard.ahit(f"c{i}", "5/hour")) for i in range(10)]
            loop.run_until_complete(asyncio.sleep(0.05))
            assert not any(t.done() for t in tasks)
            for t in tasks:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()
        finally:
            proc.send_signal(18)  # SIGCONT
        del loop, tasks
        gc.collect()

        # The late answers land nowhere; a new loop works.
        async def again() -> Decision:
            return await guard.ahit("after", "5/hour")

        assert asyncio.run(again()).allowed


def test_cancelled_calls_do_not_disturb_the_others(redis_url: str) -> None:
    guard = RateGuard(RateGuardConfig(redis_url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}"))

    async def go() -> int:
        tasks = [asyncio.ensure_future(guard.ahit("k", "1000/hour")) for _ in range(100)]
        for t in tasks[::2]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        ok = [d for d in done if isinstance(d, Decision)]
        assert all(d.allowed for d in ok)
        return len(ok)

    assert asyncio.run(go()) >= 50
    # Cancellation does not refund: a call that reached Redis counted.
    remaining = guard.peek("k", "1000/hour").remaining
    assert 900 <= remaining <= 950


def test_many_threads_each_with_a_loop(redis_url: str) -> None:
    import threading

    guard = RateGuard(RateGuardConfig(redis_url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}"))
    admitted: list[int] = []

    def worker() -> None:
        async def go() -> int:
            ds = await asyncio.gather(*(guard.ahit("shared", "60/hour") for _ in range(40)))
            return sum(d.allowed for d in ds)

        admitted.append(asyncio.run(go()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(admitted) == 60


def test_ahit_in_a_forked_child(guard: RateGuard) -> None:
    async def used(identity: str) -> tuple[bool, bool]:
        first = await guard.ahit(identity, "1/hour")
        second = await guard.ahit(identity, "1/hour")
        return first.allowed, second.allowed

    assert asyncio.run(used("parent")) == (True, False)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if asyncio.run(used("child")) == (True, False) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child hung on ahit after fork()")
    assert asyncio.run(used("parent-again")) == (True, False)


@pytest.mark.asyncio
async def test_under_pytest_asyncio_first(redis_url: str) -> None:
    guard = _shared_guard(redis_url)
    assert (await guard.ahit(f"pa{uuid.uuid4()}", "2/hour")).allowed


@pytest.mark.asyncio
async def test_under_pytest_asyncio_second(redis_url: str) -> None:
    # Another test, another loop, the same guard.
    guard = _shared_guard(redis_url)
    assert (await guard.ahit(f"pb{uuid.uuid4()}", "2/hour")).allowed


_SHARED: dict[str, RateGuard] = {}


def _shared_guard(url: str) -> RateGuard:
    if url not in _SHARED:
        _SHARED[url] = RateGuard(RateGuardConfig(redis_url=url))
    return _SHARED[url]


def test_sync_hit_inside_a_running_loop_still_works(guard: RateGuard) -> None:
    # Blocking the loop is the caller's choice; it must not deadlock.
    async def go() -> Decision:
        return guard.hit("sync-in-loop", "2/hour")

    assert asyncio.run(go()).allowed


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("the bridge uses eventfd (Linux)")

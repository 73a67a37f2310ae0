"""py-rate-guard from Python against the `limits` library, same run, same Redis.

    .venv/bin/python bench/python_bench.py [--rounds 3] [--calls 20000]

Starts its own redis-server on a free port (`--save ''`), then runs every variant round-robin
and reports the median of the rounds:

- sync, 1 thread and 8 threads: our `hit` (fixed_window, sliding_log, sliding_window) against
  `limits`' FixedWindowRateLimiter, MovingWindowRateLimiter and SlidingWindowCounterRateLimiter
  on its Redis storage (redis-py, with hiredis when installed);
- async, 50 tasks on asyncio: our `ahit` against `limits.aio` (redis.asyncio);
- the memory store: our `hit` in ns per call (target <= 1 us), with `limits`' MemoryStorage for
  reference.

Keys cycle over 1,000 identities with a limit that is never reached, so every call does the
full work of an allowed request. Build the extension in release mode first
(`.venv/bin/maturin develop --release`): the numbers of a debug build mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from limits import parse, storage, strategies
from limits.aio import strategies as aio_strategies

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

KEYS = [f"client-{i}" for i in range(1000)]
# Never reached by a run (1,000 keys share the calls), and within the sliding log's bound.
RATE = "10000/hour"
THREADS = 8
TASKS = 50


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != 6379:
            return port


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not found: run `make redis`")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(server, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", tmp, "--logfile", f"{tmp}/redis.log"),
        ],
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


def sync_rate(call: Callable[[str], Any], calls: int, threads: int) -> float:
    """Calls per second of `call(key)` from `threads` threads, `calls` in total."""
    per_thread = calls // threads

    def run(offset: int) -> None:
        for i in range(per_thread):
            call(KEYS[(offset + i) % len(KEYS)])

    workers = [threading.Thread(target=run, args=(t * 97,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per_thread * threads / (time.perf_counter() - start)


def async_rate(make_call: Callable[[], Callable[[str], Any]], calls: int) -> float:
    """Calls per second of `await call(key)` from 50 tasks on a fresh asyncio loop."""

    async def main() -> float:
        call = make_call()
        per_task = calls // TASKS

        async def task(offset: int) -> None:
            for i in range(per_task):
                await call(KEYS[(offset + i) % len(KEYS)])

        await call("warm-up")
        start = time.perf_counter()
        await asyncio.gather(*(task(t * 97) for t in range(TASKS)))
        return per_task * TASKS / (time.perf_counter() - start)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_redis(tmp)
        try:
            run(addr, args.rounds, args.calls)
        finally:
            proc.kill()
            proc.wait()


def run(addr: str, rounds: int, calls: int) -> None:
    ours = RateGuard(RateGuardConfig(redis_url=f"redis://{addr}", key_prefix="bench"))
    memory = RateGuard(RateGuardConfig(key_prefix="bench"))
    rules = {
        a: RateLimitRule(limit=RATE, algorithm=a)
        for a in ("fixed_window", "sliding_log", "sliding_window")
    }
    item = parse(RATE)
    lim_storage = storage.storage_from_string(f"redis://{addr}")
    lim_memory = storage.storage_from_string("memory://")
    theirs = {
        "fixed_window": strategies.FixedWindowRateLimiter(lim_storage),
        "sliding_log": strategies.MovingWindowRateLimiter(lim_storage),
        "sliding_window": strategies.SlidingWindowCounterRateLimiter(lim_storage),
    }
    theirs_memory = strategies.FixedWindowRateLimiter(lim_memory)

    def ours_sync(a: str) -> Callable[[str], Any]:
        rule = rules[a]
        return lambda key: ours.hit(key, rule)

    def theirs_sync(a: str) -> Callable[[str], Any]:
        limiter = theirs[a]
        return lambda key: limiter.hit(item, a, key)  # a namespace per strategy

    def ours_async() -> Callable[[str], Any]:
        rule = rules["fixed_window"]
        return lambda key: ours.ahit(key, rule)

    def theirs_async(kind: str) -> Callable[[], Callable[[str], Any]]:
        def make() -> Callable[[str], Any]:
            s = storage.storage_from_string(f"async+redis://{addr}", implementation="redispy")
            cls = {
                "fixed_window": aio_strategies.FixedWindowRateLimiter,
                "sliding_log": aio_strategies.MovingWindowRateLimiter,
            }[kind]
            limiter = cls(s)  # type: ignore[arg-type]
            return lambda key: limiter.hit(item, f"aio-{kind}", key)

        return make

    def ours_async_log() -> Callable[[str], Any]:
        rule = rules["sliding_log"]
        return lambda key: ours.ahit(key, rule)

    rule_mem = RateLimitRule(limit=RATE, algorithm="fixed_window")
    variants: dict[str, Callable[[], float]] = {}
    for a in ("fixed_window", "sliding_log", "sliding_window"):
        for threads in (1, THREADS):
            variants[f"sync {threads}t {a} ours"] = (
                lambda a=a, t=threads: sync_rate(ours_sync(a), calls, t)  # type: ignore[misc]
            )
            variants[f"sync {threads}t {a} limits"] = (
                lambda a=a, t=threads: sync_rate(theirs_sync(a), calls, t)  # type: ignore[misc]
            )
    variants["async 50 tasks fixed_window ours"] = lambda: async_rate(ours_async, calls * 2)
    variants["async 50 tasks fixed_window limits"] = lambda: async_rate(
        theirs_async("fixed_window"), calls
    )
    variants["async 50 tasks sliding_log ours"] = lambda: async_rate(ours_async_log, calls * 2)
    variants["async 50 tasks sliding_log limits"] = lambda: async_rate(
        theirs_async("sliding_log"), calls
    )
    variants["memory 1t fixed_window ours"] = lambda: sync_rate(
        lambda key: memory.hit(key, rule_mem), calls * 20, 1
    )
    variants["memory 1t fixed_window limits"] = lambda: sync_rate(
        lambda key: theirs_memory.hit(item, key), calls * 5, 1
    )

    results: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, variant in variants.items():
            results[name].append(variant())
        print(f"round {r + 1}/{rounds} done", flush=True)

    median = {name: statistics.median(v) for name, v in results.items()}
    print()
    print("| variant | ours (calls/s) | limits (calls/s) | ratio |")
    print("|---|---|---|---|")
    for name in median:
        if not name.endswith(" ours"):
            continue
        base = name[: -len(" ours")]
        o, t = median[name], median[base + " limits"]
        print(f"| {base} | {o:,.0f} | {t:,.0f} | {o / t:.2f}x |")
    mem = median["memory 1t fixed_window ours"]
    print()
    print(f"memory store hit from Python: {1e9 / mem:.0f} ns per call")


if __name__ == "__main__":
    main()

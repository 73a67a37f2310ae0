"""Client CPU per `RateGuard.ahit` at 50 asyncio tasks, builds side by side in fresh processes.

    .venv/bin/python bench/async_ab.py [--rounds 9] [--calls 20000] [BUILD ...]

Each BUILD is a directory that holds a `py_rate_guard` package with its native module (for
instance a copy of `python/py_rate_guard` after `maturin develop --release` of another commit),
put first on `PYTHONPATH`; `installed` (the default) is the package this venv imports. Every
round runs each build once, in turn, against one redis-server started on a free port: one
fixed-window rule of 1000000/hour over 1,000 identities, `redis_timeout=5` (a slow round on a
loaded machine must not open the breaker and measure fail-open answers: every decision is
checked to come from the store). Printed per build, medians over the rounds: client CPU
(`time.process_time()`, every thread), the loop thread's (`time.thread_time()`), the other
threads', decisions/s and context switches per decision (`getrusage`).

`--floor` prints instead what asyncio itself costs at 50 tasks (a loop future resolved by a
callback, no I/O and no thread) and `ahit` on the memory store (answered without a future).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

TASKS = 50
IDENTITIES = [f"user-{i}" for i in range(1000)]
RATE = "1000000/hour"


async def _measure(call: Callable[[int], Awaitable[Any]], calls: int) -> dict[str, float]:
    async def task(offset: int, n: int) -> None:
        for i in range(n):
            d = await call(offset + i)
            if d is not None and d.source != "store":
                raise SystemExit(f"a decision did not come from the store: {d}")

    await asyncio.gather(*(task(t * 20, 100) for t in range(TASKS)))
    per = calls // TASKS
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0, l0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(task(t * 20, per) for t in range(TASKS)))
    c1, l1, t1 = time.process_time(), time.thread_time(), time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = per * TASKS
    switches = r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw
    return {
        "client": (c1 - c0) / n * 1e6,
        "loop": (l1 - l0) / n * 1e6,
        "other": ((c1 - c0) - (l1 - l0)) / n * 1e6,
        "rate": n / (t1 - t0),
        "csw": switches / n,
    }


def child(port: int, calls: int) -> None:
    from py_rate_guard import RateGuard
    from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

    config = RateGuardConfig(
        redis_url=f"redis://127.0.0.1:{port}", key_prefix="ab", redis_timeout=5.0
    )
    guard = RateGuard(config)
    rule = RateLimitRule(limit=RATE, algorithm="fixed_window")

    async def main() -> dict[str, float]:
        ahit = guard.ahit
        sample = await _measure(lambda i: ahit(IDENTITIES[i % 1000], rule), calls)
        if guard.breaker_state != "closed":
            raise SystemExit("the breaker opened during the run")
        return sample

    print(json.dumps(asyncio.run(main())))


def floor(calls: int) -> None:
    from py_rate_guard import RateGuard
    from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

    rule = RateLimitRule(limit=RATE, algorithm="fixed_window")

    async def futures() -> Callable[[int], Awaitable[Any]]:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []

        def resolve() -> None:
            batch = pending[:]
            pending.clear()
            for f in batch:
                if not f.done():
                    f.set_result(None)

        def call(i: int) -> Awaitable[None]:
            f = loop.create_future()
            if not pending:
                loop.call_soon(resolve)
            pending.append(f)
            return f

        return call

    async def memory() -> Callable[[int], Awaitable[Any]]:
        guard = RateGuard(RateGuardConfig(key_prefix="floor"))
        return lambda i: guard.ahit(IDENTITIES[i % 1000], rule)

    for name, make in (("asyncio future", futures), ("ahit, memory store", memory)):

        async def run(make: Callable[[], Awaitable[Callable[[int], Awaitable[Any]]]]) -> Any:
            return await _measure(await make(), calls)

        samples = [asyncio.run(run(make)) for _ in range(5)]
        print(f"{name:20s} client {statistics.median(s['client'] for s in samples):5.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("builds", nargs="*", default=["installed"])
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.calls)
    if args.floor:
        return floor(args.calls)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    results: dict[str, list[dict[str, float]]] = {b: [] for b in args.builds}
    try:
        for _ in range(args.rounds):
            for build in args.builds:
                env = dict(os.environ)
                if build != "installed":
                    env["PYTHONPATH"] = build
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(port), "--calls", str(args.calls)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[build].append(json.loads(out.stdout))
    finally:
        server.kill()
    print(f"{args.rounds} rounds of {args.calls} calls at {TASKS} tasks, medians:")
    for build, samples in results.items():
        m = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        low = min(s["client"] for s in samples)
        print(
            f"{build}: client {m['client']:.1f} µs (min {low:.1f}), loop thread {m['loop']:.1f}, "
            f"other threads {m['other']:.1f}, {m['rate']:,.0f} decisions/s, "
            f"{m['csw']:.2f} context switches"
        )


if __name__ == "__main__":
    main()

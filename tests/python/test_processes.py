"""Many processes, one quota: exactness on standalone Redis and on a cluster, and the
`redis+cluster://` / `redis+sentinel://` URLs end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

PROCESSES = 8
LIMIT = 500
OFFERED = 4000  # in total, over all processes

# One worker process: its own interpreter and guard, started together at `start`; half the
# processes use the sync API from 4 threads, half the async API with 25 tasks.
WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    from py_rate_guard import RateGuard
    from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

    url, prefix, algorithm, n, start, mode = sys.argv[1:7]
    n, start = int(n), float(start)
    guard = RateGuard(RateGuardConfig(redis_url=url, key_prefix=prefix, redis_timeout=5.0))
    rule = RateLimitRule(limit="LIMIT/hour", algorithm=algorithm)
    guard.peek("warm-up", rule)
    time.sleep(max(0.0, start - time.time()))
    admitted = 0
    if mode == "sync":
        counts = []
        def run(k):
            counts.append(sum(guard.hit("hot", rule).allowed for _ in range(k)))
        threads = [threading.Thread(target=run, args=(n // 4,)) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        admitted = sum(counts)
    else:
        async def main():
            async def task(k):
                return sum([(await guard.ahit("hot", rule)).allowed for _ in range(k)])
            return sum(await asyncio.gather(*(task(n // 25) for _ in range(25))))
        admitted = asyncio.run(main())
    degraded = guard.peek("hot", rule).degraded
    print(json.dumps({"admitted": admitted, "degraded": degraded}))
    """
).replace("LIMIT", str(LIMIT))


def _admitted_across_processes(url: str, algorithm: str) -> int:
    prefix = f"x{uuid.uuid4().hex[:10]}"
    start = time.time() + 3.0  # every interpreter is up and connected by then
    per_process = OFFERED // PROCESSES
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                url,
                prefix,
                algorithm,
                str(per_process),
                str(start),
                "sync" if i % 2 == 0 else "async",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(PROCESSES)
    ]
    total = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["degraded"] is False, "a decision came from a degraded path"
        total += report["admitted"]
    return int(total)


EXACT = ["fixed_window", "token_bucket", "sliding_log"]


@pytest.mark.parametrize("algorithm", EXACT)
def test_eight_processes_admit_exactly_the_limit_on_redis(redis_url: str, algorithm: str) -> None:
    assert _admitted_across_processes(redis_url, algorithm) == LIMIT


@pytest.mark.parametrize("algorithm", EXACT)
def test_eight_processes_admit_exactly_the_limit_on_a_cluster(
    cluster_url: str, algorithm: str
) -> None:
    assert _admitted_across_processes(cluster_url, algorithm) == LIMIT


@pytest.mark.parametrize("url_fixture", ["cluster_url", "sentinel_url"])
def test_cluster_and_sentinel_urls_end_to_end(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    assert url.startswith(("redis+cluster://", "redis+sentinel://"))
    guard = RateGuard(RateGuardConfig(redis_url=url, key_prefix=f"u{uuid.uuid4().hex[:8]}"))
    rule = RateLimitRule(limit="3/hour", algorithm="fixed_window")
    assert [guard.hit("a", rule).allowed for _ in range(4)] == [True, True, True, False]

    async def more() -> list[bool]:
        return [(await guard.ahit("b", rule)).allowed for _ in range(4)]

    assert asyncio.run(more()) == [True, True, True, False]
    # Several identities in one request: all-or-nothing across hash slots on a cluster.
    both = [("global", "10/hour"), ("c", "1/hour")]
    assert guard.hit_many(both).allowed
    assert not guard.hit_many(both).allowed
    assert guard.peek("global", "10/hour").remaining == 9
    # A second guard (another process in real life) shares the state, and its reset is seen
    # by the first once the first's deny cache entry has lived (`deny_cache_ttl`).
    other = RateGuard(guard.config)
    assert not other.hit("a", rule).allowed
    other.reset("a", rule)
    time.sleep(1.05)  # the deny cache's time to live, 1 s by default (wall clock: real Redis)
    assert guard.hit("a", rule).allowed

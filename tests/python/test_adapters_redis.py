"""One request, one Redis round trip: the middleware decides global and route rules in one
script call on a real redis-server (counted with `INFO commandstats`), all-or-nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Commands the Lua scripts call (crates/rate-guard-redis/lua): counted by commandstats too.
SCRIPT_COMMANDS = {
    "time", "mget", "get", "set", "del", "pexpire", "incr", "incrby", "zadd", "zcard",
    "zcount", "zrange", "zrangebyscore", "zrem", "zremrangebyscore",
}  # fmt: skip
ADMIN = {"config|resetstat", "info", "ping", "hello", "client|setinfo", "client|setname"}


@pytest.fixture
def own_redis(
    spawn_redis: Callable[[], AbstractContextManager[tuple[str, Any]]],
) -> Iterator[str]:
    """A redis-server of the test's own, so that nothing else shows in its stats."""
    with spawn_redis() as (url, _):
        yield url


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def app_on(url: str) -> tuple[FastAPI, FastAPIRateGuard]:
    guard = FastAPIRateGuard(
        RateGuardConfig(
            redis_url=url,
            redis_timeout=2.0,
            key_prefix=f"t{uuid.uuid4().hex[:12]}",
            global_rules=[
                RateLimitRule(limit="50/minute"),  # per client
                RateLimitRule(limit="1000/hour", key="global", name="service"),  # everybody
            ],
        )
    )
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/limited/{item_id}")
    @guard.limit("3/minute")
    @guard.limit("10/hour", key="header:X-Api-Key")
    async def limited(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    return app, guard


def test_global_and_route_rules_are_decided_in_one_round_trip(own_redis: str) -> None:
    app, _ = app_on(own_redis)
    admin = redis.Redis.from_url(own_redis)
    with TestClient(app, client=("203.0.113.7", 1)) as c:  # one event loop for all requests
        assert c.get("/limited/0", headers={"x-api-key": "k"}).status_code == 200
        admin.config_resetstat()
        answers = [c.get(f"/limited/{i}", headers={"x-api-key": "k"}) for i in range(1, 4)]
        calls = command_calls(admin)
    assert [r.status_code for r in answers] == [200, 200, 429]
    # Four rules, three identities, three requests: three FCALL of the engine's function
    # library (Redis 7), each reading TIME once; nothing loaded again.
    assert calls.get("fcall") == 3
    assert calls.get("time") == 3
    assert not {"eval", "evalsha", "script|load", "function|load"} & set(calls)
    assert set(calls) <= {"fcall"} | SCRIPT_COMMANDS | ADMIN, calls


def test_a_route_denial_consumes_no_global_quota_on_redis(own_redis: str) -> None:
    app, guard = app_on(own_redis)
    c = TestClient(app, client=("203.0.113.7", 1))
    statuses = [c.get("/limited/1", headers={"x-api-key": "k"}).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    # The HTTP front and `RateGuard.peek` share the key schema: only the 3 admitted requests
    # were counted by the global rules, none of the 3 refused ones.
    per_client = guard.peek("ip:203.0.113.7", RateLimitRule(limit="50/minute"))
    service = guard.peek("global", RateLimitRule(limit="1000/hour", key="global", name="service"))
    assert (per_client.remaining, service.remaining) == (47, 997)


@pytest.mark.parametrize(
    ("fields", "expected", "counted"),
    [
        ({"fail_open": True}, [200, 200, 200], False),
        ({"fail_open": False}, [503, 503, 503], False),
        ({"in_memory_fallback": True}, [200, 200, 429], True),
    ],
    ids=["fail-open", "fail-closed", "memory-fallback"],
)
def test_a_dead_redis_never_raises_into_the_application(
    spawn_redis: Callable[[], AbstractContextManager[tuple[str, Any]]],
    fields: dict[str, Any],
    expected: list[int],
    counted: bool,
) -> None:
    with spawn_redis() as (url, proc):
        guard = FastAPIRateGuard(
            RateGuardConfig(redis_url=url, redis_timeout=0.2, breaker_threshold=1, **fields)
        )
        app = FastAPI()
        app.add_middleware(RateLimitMiddleware, guard=guard)

        @app.get("/x")
        @guard.limit("2/minute")
        async def x() -> dict[str, int]:
            return {}

        proc.kill()
        proc.wait()
        with TestClient(app, client=("203.0.113.7", 1)) as c:
            answers = [c.get("/x") for _ in range(3)]
    assert [r.status_code for r in answers] == expected
    if expected[0] == 503:
        assert answers[0].json() == {"detail": "Service temporarily unavailable"}
    # Rate-limit headers only describe a quota someone counted (here, the fallback).
    assert ("x-ratelimit-limit" in answers[0].headers) is counted

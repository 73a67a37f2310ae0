"""Extreme rules and poisoned state, through the Python API, on memory, standalone Redis and a
cluster: nothing hangs Redis, nothing overflows, one bad key degrades nobody else.

Each Redis case ends by asking the server for PING: a script that loops would leave it
answering BUSY (and this file's own per-test timeout would fail the test first)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import redis
from pydantic import ValidationError

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def _on_redis(request: pytest.FixtureRequest, kind: str) -> Iterator[tuple[RateGuard, redis.Redis]]:
    """A guard on a standalone Redis or a cluster, with a prefix of its own, and a raw client
    to it (a cluster-aware one for the cluster) for poisoning keys; Redis must answer PING at
    the end."""
    url = request.getfixturevalue("redis_url" if kind == "redis" else "cluster_url")
    prefix = f"h{uuid.uuid4().hex[:10]}"
    guard = RateGuard(RateGuardConfig(redis_url=url, key_prefix=prefix, redis_timeout=2.0))
    client: redis.Redis
    if kind == "redis":
        client = redis.Redis.from_url(url)
    else:
        host, port = url.removeprefix("redis+cluster://").split(",")[0].rsplit(":", 1)
        client = redis.RedisCluster(host=host, port=int(port))  # type: ignore[assignment]
    yield guard, client
    assert client.ping()
    client.close()


@pytest.fixture(params=["memory", "redis", "cluster"])
def target(request: pytest.FixtureRequest) -> Iterator[tuple[RateGuard, redis.Redis | None]]:
    """A guard on each store, and a raw client to its Redis (None on memory)."""
    if request.param == "memory":
        yield RateGuard(RateGuardConfig(key_prefix=f"h{uuid.uuid4().hex[:10]}")), None
        return
    with _on_redis(request, request.param) as pair:
        yield pair


@pytest.fixture(params=["redis", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> Iterator[tuple[RateGuard, redis.Redis]]:
    """`target` on the Redis stores only: the memory store's state cannot be written from
    outside, so it cannot be poisoned."""
    with _on_redis(request, request.param) as pair:
        yield pair


def _keys(client: redis.Redis, prefix: str) -> list[bytes]:
    if isinstance(client, redis.RedisCluster):
        return list(
            client.scan_iter(match=f"{prefix}:*", target_nodes=redis.RedisCluster.PRIMARIES)
        )
    return list(client.scan_iter(match=f"{prefix}:*"))


def test_the_rule_that_hung_redis_is_refused_where_it_is_written() -> None:
    with pytest.raises(ValidationError) as info:
        RateLimitRule(limit="1/10000 days", algorithm="token_bucket", burst=20)
    message = str(info.value)
    assert "burst" in message and "20" in message and "10000 days" in message, message


@pytest.mark.parametrize(
    "limit, burst",
    [("1/10000 days", 100_000), ("1/day", 1_000_000_000), ("1/second", 2**32)],
)
def test_token_buckets_whose_backlog_would_overflow_are_refused(limit: str, burst: int) -> None:
    with pytest.raises(ValidationError):
        RateLimitRule(limit=limit, algorithm="token_bucket", burst=burst)


def test_the_largest_token_bucket_admits_exactly_what_fits(
    target: tuple[RateGuard, redis.Redis | None],
) -> None:
    guard, _ = target
    # 1/day refills a burst of 10,000 in 10,000 days: the longest refill allowed.
    rule = RateLimitRule(limit="1/day", algorithm="token_bucket", burst=10_000)
    admitted = [guard.hit("edge", rule, cost=3_000).allowed for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    denied = guard.hit("edge", rule, cost=3_000)
    # 9,000 of 10,000 used; 2,000 more tokens come back in 2,000 days (less the bucket's
    # tolerance of a millionth of a token: 0.0864 s a day of interval).
    assert denied.remaining == 1_000
    assert denied.retry_after == pytest.approx(2_000 * 86_400, abs=1.0)
    assert guard.breaker_state == "closed"


def test_the_longest_period_with_its_only_token(
    target: tuple[RateGuard, redis.Redis | None],
) -> None:
    guard, client = target
    rule = RateLimitRule(limit="1/10000 days", algorithm="token_bucket", burst=1)
    assert guard.hit("long", rule).allowed
    second = guard.hit("long", rule)
    assert not second.allowed
    # A millionth of a 10,000-day token is 864 s: the bucket's tolerance.
    assert second.retry_after == pytest.approx(10_000 * 86_400 - 864, abs=1.0)
    assert guard.hit("long", rule, cost=2).retry_after is None  # never fits
    if client is not None:
        for key in _keys(client, guard.config.key_prefix):
            assert client.pttl(key) > 0, key


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket"])
def test_the_largest_counts_and_costs_decide_without_error(
    target: tuple[RateGuard, redis.Redis | None], algorithm: str
) -> None:
    guard, client = target
    top = 2**32 - 1
    rule = RateLimitRule(limit=f"{top}/10000 days", algorithm=algorithm)
    assert guard.hit("big", rule, cost=top).allowed
    after = guard.hit("big", rule)
    assert not after.allowed and after.remaining == 0
    assert after.source == "store"
    assert guard.breaker_state == "closed"
    if client is not None:
        for key in _keys(client, guard.config.key_prefix):
            assert client.pttl(key) > 0, key


def test_a_huge_sliding_log_is_refused_and_a_huge_cost_consumes_nothing(
    target: tuple[RateGuard, redis.Redis | None],
) -> None:
    guard, _ = target
    with pytest.raises(ValidationError) as info:
        RateLimitRule(limit="4294967295/hour", algorithm="sliding_log")
    assert "10000" in str(info.value)
    rule = RateLimitRule(limit="10000/hour", algorithm="sliding_log")
    too_big = guard.hit("log", rule, cost=200_000)
    assert not too_big.allowed and too_big.retry_after is None
    assert guard.peek("log", rule).remaining == 10_000
    assert guard.hit("log", rule, cost=10_000).allowed
    assert not guard.hit("log", rule).allowed
    assert guard.breaker_state == "closed"


_POISON = {
    "token_bucket": [b"T 1 inf", b"T 1 nan", b"T 1 -5", b"T 99999999999999999999 0", b"T x y"],
    "fixed_window": [b"F 99999999999999999999999 0", b"F 1 99999999999", b"F -1 -1", b"garbage"],
    "sliding_window": [b"S 99999999999999999999999 1 1", b"S 1 99999999999 99999999999", b"S"],
}


@pytest.mark.parametrize(
    "algorithm, value", [(a, v) for a, values in _POISON.items() for v in values]
)
def test_a_poisoned_key_heals_and_degrades_nobody(
    redis_target: tuple[RateGuard, redis.Redis], algorithm: str, value: bytes
) -> None:
    guard, client = redis_target
    rule = RateLimitRule(limit="3/minute", algorithm=algorithm)
    assert guard.hit("victim", rule).allowed
    (key,) = _keys(client, guard.config.key_prefix)
    # More poisoned calls than the breaker's threshold (5): none may count as an outage.
    for _ in range(8):
        client.set(key, value)
        decision = guard.hit("victim", rule)
        assert decision.allowed and decision.source == "store", decision
        assert client.pttl(key) > 0
    assert guard.breaker_state == "closed"
    bystander = [guard.hit("bystander", rule).allowed for _ in range(4)]
    assert bystander == [True, True, True, False]
    # A peek on poison consumes nothing and leaves no key without a TTL.
    client.set(key, value)
    assert guard.peek("victim", rule).remaining == 3
    assert client.pttl(key) != -1


def test_a_sorted_set_with_poisoned_scores_heals(
    redis_target: tuple[RateGuard, redis.Redis],
) -> None:
    guard, client = redis_target
    rule = RateLimitRule(limit="3/minute", algorithm="sliding_log")
    assert guard.hit("zs", rule).allowed
    (key,) = _keys(client, guard.config.key_prefix)
    client.zadd(key, {"a": float("inf"), "b": 1e300})
    client.persist(key)
    # The poisoned log reads as none: three fresh requests fit, as in an empty log.
    for _ in range(3):
        decision = guard.hit("zs", rule)
        assert decision.allowed and decision.source == "store", decision
    assert not guard.hit("zs", rule).allowed
    assert guard.breaker_state == "closed"
    assert client.pttl(key) > 0


def test_a_key_of_another_type_heals(redis_target: tuple[RateGuard, redis.Redis]) -> None:
    guard, client = redis_target
    for algorithm in ["fixed_window", "sliding_window", "token_bucket", "sliding_log"]:
        rule = RateLimitRule(limit="2/minute", algorithm=algorithm)
        identity = f"typed-{algorithm}"
        assert guard.hit(identity, rule).allowed
        (key,) = [k for k in _keys(client, guard.config.key_prefix) if identity.encode() in k]
        client.delete(key)
        client.hset(key, "x", "1")
        decision = guard.hit(identity, rule)
        assert decision.allowed and decision.source == "store", (algorithm, decision)
        assert client.pttl(key) > 0
    assert guard.breaker_state == "closed"

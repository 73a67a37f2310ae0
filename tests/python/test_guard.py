"""`RateGuard` on the memory store and on a real Redis: algorithms, multi-rule requests,
peek, reset, cost, and errors at construction."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from pydantic import ValidationError

from py_rate_guard import (
    ConfigError,
    Decision,
    RateGuard,
    RateGuardError,
    RateLimitExceeded,
    StorageError,
    _native,
)
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

SpawnRedis = Callable[[], AbstractContextManager[tuple[str, "subprocess.Popen[bytes]"]]]

ALGORITHMS = ["sliding_window", "fixed_window", "token_bucket", "sliding_log"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_allows_then_limits(guard: RateGuard, algorithm: str) -> None:
    # An hour: no window boundary falls inside the test (a fixed window would start afresh).
    rule = RateLimitRule(limit="3/hour", algorithm=algorithm)
    for left in (2, 1, 0):
        d = guard.hit("client-1", rule)
        assert isinstance(d, Decision)
        assert (d.allowed, d.limit, d.remaining, d.retry_after) == (True, 3, left, None)
        assert d.source == "store"
    denied = guard.hit("client-1", rule)
    assert not denied.allowed
    assert denied.retry_after is not None and 0 < denied.retry_after <= 7200
    assert denied.reset_after > 0
    assert guard.hit("client-2", rule).allowed, "another identity has its own quota"


def test_a_rate_string_is_a_sliding_window_rule(guard: RateGuard) -> None:
    assert [guard.hit("k", "2/minute").allowed for _ in range(3)] == [True, True, False]
    # The same bucket as the equivalent rule.
    assert not guard.hit("k", RateLimitRule(limit="2/minute")).allowed


def test_several_rates_in_one_string_are_all_enforced(guard: RateGuard) -> None:
    results = [guard.hit("k", "2/minute; 10/hour").allowed for _ in range(3)]
    assert results == [True, True, False]


def test_a_list_of_rules_is_all_or_nothing(guard: RateGuard) -> None:
    tight = RateLimitRule(limit="1/minute", name="tight")
    loose = RateLimitRule(limit="10/minute", name="loose")
    assert guard.hit("k", [tight, loose]).allowed
    assert guard.peek("k", loose).remaining == 9
    denied = guard.hit("k", [tight, loose])
    assert not denied.allowed
    assert denied.limit == 1, "the most restrictive rule is reported"
    # The denial by `tight` consumed nothing from `loose`.
    assert guard.peek("k", loose).remaining == 9
    assert guard.peek("k", [loose, "10/minute"]).remaining == 9


def test_rules_of_different_identities_are_all_or_nothing(guard: RateGuard) -> None:
    site = RateLimitRule(limit="3/minute", key="global", name="site")
    per_ip = RateLimitRule(limit="1/minute", name="per-ip")
    assert guard.hit_many([("global", site), ("10.0.0.1", per_ip)]).allowed
    denied = guard.hit_many([("global", site), ("10.0.0.1", per_ip)])
    assert not denied.allowed and denied.limit == 1
    # The per-IP denial consumed nothing from the site-wide bucket.
    assert guard.peek_many([("global", site)]).remaining == 2
    assert guard.hit_many([("global", site), ("10.0.0.2", per_ip)]).remaining == 0
    with pytest.raises(ConfigError):
        guard.hit_many([])


def test_peek_consumes_nothing(guard: RateGuard) -> None:
    for _ in range(5):
        assert guard.peek("k", "2/minute").remaining == 2
    guard.hit("k", "2/minute")
    assert guard.peek("k", "2/minute").remaining == 1


def test_reset_forgets_the_quota(guard: RateGuard) -> None:
    rule = RateLimitRule(limit="1/minute", algorithm="token_bucket")
    assert guard.hit("k", rule).allowed
    assert not guard.hit("k", rule).allowed
    assert not guard.hit("k", rule).allowed  # answered by the deny cache
    guard.reset("k", rule)
    assert guard.hit("k", rule).allowed


def test_cost(guard: RateGuard) -> None:
    assert guard.hit("k", "10/minute", cost=4).remaining == 6
    assert not guard.hit("k", "10/minute", cost=7).allowed
    assert guard.hit("k", "10/minute", cost=6).remaining == 0
    never = guard.hit("other", "10/minute", cost=11)
    assert not never.allowed and never.retry_after is None
    with pytest.raises(ConfigError, match="cost"):
        guard.hit("k", "10/minute", cost=0)


def test_invalid_limits_raise_config_error(guard: RateGuard) -> None:
    with pytest.raises(ConfigError, match="fortnight"):
        guard.hit("k", "10/fortnight")
    with pytest.raises(ConfigError, match="two different rules are named"):
        guard.hit(
            "k",
            [RateLimitRule(limit="1/minute", name="a"), RateLimitRule(limit="2/minute", name="a")],
        )
    with pytest.raises(ConfigError, match="not int 42"):
        guard.hit("k", [42])  # type: ignore[list-item]


def test_identities_are_escaped_not_trusted(guard: RateGuard) -> None:
    hostile = "a:b}{c" + "x" * 10_000 + "\u00e9\x00"
    assert guard.hit(hostile, "1/minute").allowed
    assert not guard.hit(hostile, "1/minute").allowed
    assert guard.hit("a", "1/minute").allowed


def test_default_config_is_the_memory_store() -> None:
    guard = RateGuard()
    assert repr(guard) == "RateGuard(store='memory', key_prefix='rate_guard')"
    assert guard.hit("k", "1/second").allowed
    assert guard.breaker_state == "closed"


def test_redis_guard_reports_its_store_without_password(redis_url: str) -> None:
    guard = RateGuard(RateGuardConfig(redis_url=redis_url))
    assert redis_url in repr(guard)


def test_a_malformed_redis_url_fails_at_construction() -> None:
    # The model parses the URL as the engine does; the native guard checks it again.
    with pytest.raises(ValidationError, match="invalid Redis URL") as bad:
        RateGuardConfig(redis_url="http://:s3cret@localhost:6379")
    assert "s3cret" not in str(bad.value)
    with pytest.raises(ConfigError, match="invalid Redis URL") as info:
        _native.Guard({"redis_url": "http://:s3cret@localhost:6379"})
    assert "s3cret" not in str(info.value)


def test_an_unreachable_redis_fails_at_construction() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    config = RateGuardConfig(redis_url=f"redis://127.0.0.1:{port}", redis_connect_timeout=0.5)
    with pytest.raises(StorageError, match=f"cannot connect to Redis at redis://127.0.0.1:{port}"):
        RateGuard(config)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("fail_open", "source"), [(True, "fail_open"), (False, "fail_closed")])
def test_redis_gone_after_construction_degrades_instead_of_raising(
    spawn_redis: SpawnRedis, fail_open: bool, source: str
) -> None:
    with spawn_redis() as (url, proc):
        config = RateGuardConfig(redis_url=url, fail_open=fail_open, redis_timeout=0.5)
        guard = RateGuard(config)
        assert guard.hit("k", "5/minute").source == "store"
        proc.kill()
        proc.wait()
        d = guard.hit("k", "5/minute")
        assert (d.allowed, d.source, d.degraded) == (fail_open, source, True)


def test_in_memory_fallback_decides_while_redis_is_gone(spawn_redis: SpawnRedis) -> None:
    with spawn_redis() as (url, proc):
        guard = RateGuard(RateGuardConfig(redis_url=url, in_memory_fallback=True))
        proc.kill()
        proc.wait()
        results = [guard.hit("k", "2/minute") for _ in range(3)]
        assert [d.allowed for d in results] == [True, True, False]
        assert {d.source for d in results} <= {"fallback", "deny_cache"}


def test_rate_limit_exceeded_carries_the_decision(guard: RateGuard) -> None:
    guard.hit("k", "1/minute")
    denied = guard.hit("k", "1/minute")
    error = RateLimitExceeded(denied)
    assert error.decision is denied
    assert "retry after" in str(error)
    assert not isinstance(error, RateGuardError)


@pytest.mark.parametrize(
    "rate",
    [
        "3/minute",
        "3 per minute",
        "3/2 minutes",
        "3 per 2 hours",
        "3/m",
        "3/h",
        "3/d",
        "3 per 1 day",
        "3/second",
        "3/hour; 100/day",
        "3/hour, 100/day",
        "3/hour | 100/day",
    ],
)
def test_every_rate_string_form_through_hit(guard: RateGuard, rate: str) -> None:
    decisions = [guard.hit("forms", rate) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert {d.limit for d in decisions} == {3}

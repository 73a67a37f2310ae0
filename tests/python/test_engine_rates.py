"""Issue 15's engine semantics through the native API: a rate of 0 (`"0/minute"`: every
request refused, nothing stored, nothing consumed), the `week`/`month`/`year` units, and
`ipv4_prefix` (IPv4 clients counted per network)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from py_rate_guard import RateGuard
from py_rate_guard._native import ConfigError, Front, Guard, Rules, parse_rate
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

PEER = "203.0.113.9"
DAY = 86400.0


def native_rules(limit: str) -> Rules:
    return Rules([(limit, "fixed_window", None, None, None)])


@pytest.fixture
def native_guard(store: str, request: pytest.FixtureRequest) -> Guard:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if store == "memory":
        return Guard(json.dumps({"key_prefix": prefix}))
    url = request.getfixturevalue("redis_url")
    return Guard(json.dumps({"redis_url": url, "key_prefix": prefix, "redis_timeout": 2.0}))


# --- "0/minute" ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm", ["sliding_window", "fixed_window", "token_bucket", "sliding_log"]
)
def test_a_zero_rate_refuses_every_request(guard: RateGuard, algorithm: str) -> None:
    rule = RateLimitRule(limit="0/minute", algorithm=algorithm)
    for _ in range(3):
        d = guard.hit("k", rule)
        assert (d.allowed, d.limit, d.remaining, d.retry_after) == (False, 0, 0, None)
        assert d.reset_after == 0
    assert not guard.peek("k", rule).allowed


def test_a_zero_rate_consumes_nothing_from_the_other_rules(guard: RateGuard) -> None:
    closed = RateLimitRule(limit="0/hour", name="closed")
    open_ = RateLimitRule(limit="3/hour", name="open")
    for _ in range(5):
        assert not guard.hit("k", [open_, closed]).allowed
    # The open rule alone still has its whole quota.
    assert [guard.hit("k", open_).remaining for _ in range(3)] == [2, 1, 0]


def test_a_zero_route_answers_429_without_retry_after(native_guard: Guard) -> None:
    front = Front(json.dumps({"global_rules": [{"limit": "100/minute"}]}))
    closed = front.route("/closed", [(native_rules("0/minute"), "ip", 1, False)])
    for _ in range(2):
        outcome = front.decide_request(native_guard, PEER, [], closed)
        assert (outcome.allowed, outcome.status) == (False, 429)
        assert outcome.body == b'{"detail": "Rate limit exceeded: 0 per 1 minute"}'
        assert outcome.headers == [
            (b"x-ratelimit-limit", b"0"),
            (b"x-ratelimit-remaining", b"0"),
            (b"x-ratelimit-reset", b"0"),
            (b"content-type", b"application/json"),
        ]
        assert outcome.decision is not None and outcome.decision.retry_after is None
    # The global rule was never charged.
    other = front.route("/other", [(native_rules("5/minute"), "ip", 1, False)])
    decided = front.decide_request(native_guard, PEER, [], other)
    assert decided.allowed
    assert ("sliding_window.100.60s", f"ip:{PEER}", 1, False) in decided.plan.items  # type: ignore[union-attr]


def test_a_zero_rate_is_a_valid_rule_and_config() -> None:
    assert parse_rate("0/minute; 10/second") == [(0, 60.0), (10, 1.0)]
    config = RateGuardConfig(global_rules=[RateLimitRule(limit="0/day")])
    assert config.global_rules[0].limit == "0/day"


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "seconds"),
    [
        ("1/month", 30 * DAY),
        ("1/mo", 30 * DAY),
        ("2/3 months", 90 * DAY),
        ("1/year", 365 * DAY),
        ("1/yr", 365 * DAY),
        ("1/y", 365 * DAY),
        ("5 per 2 years", 730 * DAY),
        ("1/week", 7 * DAY),
        ("1/2 wks", 14 * DAY),
    ],
)
def test_calendar_units_are_fixed_lengths(rate: str, seconds: float) -> None:
    assert parse_rate(rate)[0][1] == seconds
    RateLimitRule(limit=rate)


@pytest.mark.parametrize("word", ["fortnight", "quarter", "decade", "century"])
def test_other_calendar_words_name_the_units(word: str) -> None:
    with pytest.raises(ConfigError, match="month = 30 days, year = 365 days"):
        parse_rate(f"1/{word}")
    with pytest.raises(ValidationError, match="week = 7 days"):
        RateLimitRule(limit=f"3/{word}")


def test_periods_stay_within_10000_days() -> None:
    assert parse_rate("1/27 years")[0][1] == 27 * 365 * DAY
    with pytest.raises(ConfigError, match="too long"):
        parse_rate("1/28 years")


# --- ipv4_prefix ---------------------------------------------------------------------------


def keys(**settings: Any) -> list[str]:
    front = Front(json.dumps({"global_rules": [{"limit": "1/s", "name": "r"}], **settings}))
    return [front.plan(peer, []).keys()[0] for peer in ("203.0.113.9", "203.0.113.200")]


def test_ipv4_clients_count_per_network() -> None:
    assert keys() == ["rate_guard:r:{ip:203.0.113.9}", "rate_guard:r:{ip:203.0.113.200}"]
    assert keys(ipv4_prefix=24) == ["rate_guard:r:{ip:203.0.113.0/24}"] * 2
    assert keys(ipv4_prefix=16)[0] == "rate_guard:r:{ip:203.0.0.0/16}"


def test_ipv4_prefix_is_a_setting_with_a_range(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RateGuardConfig().ipv4_prefix == 32
    monkeypatch.setenv("RATE_GUARD_IPV4_PREFIX", "24")
    config = RateGuardConfig()
    assert config.ipv4_prefix == 24
    assert json.loads(config.engine_settings())["ipv4_prefix"] == 24
    for bad in (0, 33):
        with pytest.raises(ValidationError, match="ipv4_prefix must be from 1 to 32"):
            RateGuardConfig(ipv4_prefix=bad)


def test_one_network_shares_one_quota() -> None:
    front = Front(
        json.dumps(
            {
                "global_rules": [{"limit": "2/minute", "algorithm": "fixed_window"}],
                "ipv4_prefix": 24,
            }
        )
    )
    native = Guard(json.dumps({"key_prefix": f"t{uuid.uuid4().hex[:12]}"}))
    allowed = [front.decide_request(native, f"198.51.100.{n}", []).allowed for n in (1, 2, 3)]
    assert allowed == [True, True, False]
    assert front.decide_request(native, "198.51.101.1", []).allowed

"""`RateGuardConfig` and `RateLimitRule`: validation is the Rust parser's."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from py_rate_guard import ConfigError, RateGuardError
from py_rate_guard._native import parse_rate
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

GOOD = {
    "100/minute": [(100, 60.0)],
    "100 per minute": [(100, 60.0)],
    "10/5 minutes": [(10, 300.0)],
    "10 per 2 hours": [(10, 7200.0)],
    "1/day": [(1, 86400.0)],
    "3 / 2 days": [(3, 172800.0)],
    "5/s": [(5, 1.0)],
    "5/sec": [(5, 1.0)],
    "7/m": [(7, 60.0)],
    "2/h": [(2, 3600.0)],
    "9/d": [(9, 86400.0)],
    "50/seconds": [(50, 1.0)],
    "10/5 minute": [(10, 300.0)],
    "100/MINUTE": [(100, 60.0)],
    "10 per second; 1000/hour": [(10, 1.0), (1000, 3600.0)],
    "1/second, 2/minute | 3/hour": [(1, 1.0), (2, 60.0), (3, 3600.0)],
    "0/minute": [(0, 60.0)],
    "1/month": [(1, 30 * 86400.0)],
    "2 per 3 years": [(2, 3 * 365 * 86400.0)],
    "7/week": [(7, 7 * 86400.0)],
}

BAD = {
    "10/fortnight": 'unknown unit "fortnight" (the units are millisecond, second, minute,',
    "1/quarter": "month = 30 days, year = 365 days) at column 3",
    "": "",
    "ten/minute": "column 1",
    "10/": "column 4",
    "10 minute": "column",
    "10/minute;": "column",
    "1/0 minutes": "column 3",
    "10/minute extra": "column",
}


@pytest.mark.parametrize(("rate", "quotas"), GOOD.items())
def test_every_rate_string_form_is_a_valid_rule(rate: str, quotas: list[tuple[int, float]]) -> None:
    assert parse_rate(rate) == quotas
    rule = RateLimitRule(limit=rate)
    assert rule.limit == rate
    assert len(rule.native_rules) == len(quotas)


@pytest.mark.parametrize(("rate", "part"), BAD.items())
def test_bad_rate_strings_name_the_field_and_the_bad_part(rate: str, part: str) -> None:
    with pytest.raises(ValidationError) as info:
        RateLimitRule(limit=rate)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("limit",)]
    assert part in errors[0]["msg"]
    with pytest.raises(ConfigError):
        parse_rate(rate)


def test_the_parser_message_is_the_rust_one() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rate("10/fortnight")
    assert str(info.value) == (
        '"10/fortnight": unknown unit "fortnight" (the units are millisecond, second, minute,'
        " hour, day, week = 7 days, month = 30 days, year = 365 days) at column 4"
    )
    assert isinstance(info.value, RateGuardError)


def test_rule_defaults() -> None:
    rule = RateLimitRule(limit="5/minute")
    assert rule.algorithm == "sliding_window"
    assert rule.key == "ip"
    assert (rule.burst, rule.cost, rule.name, rule.shadow, rule.fail_open) == (
        None,
        1,
        None,
        False,
        None,
    )
    assert rule == RateLimitRule(limit="5/minute")
    assert hash(rule) == hash(RateLimitRule(limit="5/minute"))


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"algorithm": "leaky_bucket"}, ("algorithm",)),
        ({"burst": 5}, ("burst",)),
        ({"algorithm": "token_bucket", "burst": 0}, ("burst",)),
        ({"cost": 0}, ("cost",)),
        ({"key": "cookie"}, ("key",)),
        ({"key": "header:"}, ("key",)),
    ],
)
def test_bad_rule_fields_are_named(fields: dict[str, object], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        RateLimitRule(limit="5/minute", **fields)
    assert [e["loc"] for e in info.value.errors()] == [loc]


def test_bad_rule_name_is_refused_by_the_core() -> None:
    with pytest.raises(ValidationError, match="invalid rule name"):
        RateLimitRule(limit="5/minute", name="has space")


@pytest.mark.parametrize("key", ["ip", "global", "user", "header:X-Api-Key", "jwt:sub"])
def test_key_forms(key: str) -> None:
    assert RateLimitRule(limit="1/second", key=key).key == key


def test_config_defaults() -> None:
    config = RateGuardConfig()
    assert config.enabled is True
    assert config.fail_open is True
    assert config.in_memory_fallback is False
    assert config.global_rules == []
    assert config.redis_url is None
    assert config.key_prefix == "rate_guard"
    assert config.trusted_proxies == []
    assert config.shadow_mode is False
    assert config.redis_timeout == 0.1


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_GUARD_REDIS_URL", "redis://cache:6380/1")
    monkeypatch.setenv("RATE_GUARD_FAIL_OPEN", "false")
    monkeypatch.setenv("RATE_GUARD_GLOBAL_RULES", '[{"limit": "100/minute", "key": "global"}]')
    monkeypatch.setenv("RATE_GUARD_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    config = RateGuardConfig()
    assert config.redis_url == "redis://cache:6380/1"
    assert config.fail_open is False
    assert config.global_rules == [RateLimitRule(limit="100/minute", key="global")]
    assert config.trusted_proxies == ["10.0.0.0/8"]


def test_bad_rule_in_the_environment_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_GUARD_GLOBAL_RULES", '[{"limit": "100/fortnight"}]')
    with pytest.raises(ValidationError) as info:
        RateGuardConfig()
    assert info.value.errors()[0]["loc"] == ("global_rules", 0, "limit")


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"trusted_proxies": ["10.0.0.0/33"]}, ("trusted_proxies",)),
        ({"redis_timeout": 0}, ("redis_timeout",)),
        ({"instance_count": 0}, ("instance_count",)),
        ({"deny_cache_ttl": 0}, ("deny_cache_ttl",)),
    ],
)
def test_bad_config_fields_are_named(fields: dict[str, object], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        RateGuardConfig(**fields)  # type: ignore[arg-type]
    assert [e["loc"] for e in info.value.errors()] == [loc]


def test_adapter_fields_defaults() -> None:
    config = RateGuardConfig()
    assert config.headers == "legacy"
    assert config.ipv6_prefix == 64
    assert config.exempt_paths == []
    assert config.limit_websockets is True
    assert config.limited_handler is None
    assert (config.jwt_keys, config.jwt_algorithms, config.jwt_verify) == ([], ["HS256"], True)
    assert (config.jwt_audience, config.jwt_issuer) == (None, None)


def test_adapter_fields_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_GUARD_HEADERS", "both")
    monkeypatch.setenv("RATE_GUARD_IPV6_PREFIX", "56")
    monkeypatch.setenv("RATE_GUARD_EXEMPT_PATHS", '["/health", "/metrics"]')
    monkeypatch.setenv("RATE_GUARD_JWT_KEYS", '["s3cret"]')
    monkeypatch.setenv("RATE_GUARD_JWT_ALGORITHMS", '["HS256", "RS256"]')
    monkeypatch.setenv("RATE_GUARD_LIMITED_HANDLER", "os.path.join")
    monkeypatch.setenv(
        "RATE_GUARD_GLOBAL_RULES", '[{"limit": "5/minute", "key_func": "os.path:basename"}]'
    )
    config = RateGuardConfig()
    assert (config.headers, config.ipv6_prefix) == ("both", 56)
    assert config.exempt_paths == ["/health", "/metrics"]
    assert [key.get_secret_value() for key in config.jwt_keys] == ["s3cret"]
    assert "s3cret" not in repr(config)
    assert config.jwt_algorithms == ["HS256", "RS256"]
    import os.path

    assert config.limited_handler is os.path.join
    assert config.global_rules[0].key_func is os.path.basename
    assert config.global_rules[0].key == "custom"


def test_key_func_keys_the_rule() -> None:
    def tenant(request: object) -> str:
        return "t"

    rule = RateLimitRule(limit="5/minute", key_func=tenant)
    assert (rule.key, rule.key_func) == ("custom", tenant)
    assert rule.front_spec()[1:] == ("custom", 1, False)
    assert rule == RateLimitRule(limit="5/minute", key_func=tenant)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key": "custom"}, "needs a key_func"),
        ({"key": "ip", "key_func": len}, "without key"),
        ({"key_func": "no.such.module.func"}, "cannot be imported"),
        ({"key_func": "os.sep"}, "not callable"),
        ({"key_func": "nodots"}, "dotted path"),
    ],
)
def test_bad_key_funcs_say_why(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RateLimitRule(limit="5/minute", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"headers": "fancy"}, ("headers",)),
        ({"ipv6_prefix": 0}, ("ipv6_prefix",)),
        ({"ipv6_prefix": 129}, ("ipv6_prefix",)),
        ({"ipv4_prefix": 0}, ("ipv4_prefix",)),
        ({"ipv4_prefix": 33}, ("ipv4_prefix",)),
        ({"exempt_paths": ["health"]}, ("exempt_paths",)),
        ({"jwt_algorithms": []}, ("jwt_algorithms",)),
        ({"limited_handler": "no.such.handler"}, ("limited_handler",)),
    ],
)
def test_bad_adapter_fields_are_named(fields: dict[str, object], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        RateGuardConfig(**fields)  # type: ignore[arg-type]
    assert [e["loc"] for e in info.value.errors()] == [loc]


def test_jwt_rules_need_keys_unless_verification_is_off() -> None:
    rule = RateLimitRule(limit="5/minute", key="jwt:sub")
    with pytest.raises(ValidationError, match="jwt_keys"):
        RateGuardConfig(global_rules=[rule])
    assert RateGuardConfig(global_rules=[rule], jwt_keys=["k"]).jwt_verify is True
    assert RateGuardConfig(global_rules=[rule], jwt_verify=False).jwt_keys == []


def test_unix_is_a_trusted_proxy() -> None:
    assert RateGuardConfig(trusted_proxies=["unix", "10.0.0.0/8"]).trusted_proxies == [
        "unix",
        "10.0.0.0/8",
    ]


class Limited(Exception):
    """An application's own denial exception (django-ratelimit's `Ratelimited` stands here)."""


class NeedsArgs(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)


def test_exception_class_is_a_class_or_its_dotted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from py_rate_guard import RateLimitExceeded

    assert RateGuardConfig().exception_class is None
    assert RateGuardConfig(exception_class=Limited).exception_class is Limited
    dotted = RateGuardConfig(exception_class=f"{__name__}.Limited")
    assert dotted.exception_class is Limited
    assert "exception_class" not in json.loads(dotted.engine_settings())
    monkeypatch.setenv("RATE_GUARD_EXCEPTION_CLASS", "py_rate_guard.RateLimitExceeded")
    assert RateGuardConfig().exception_class is RateLimitExceeded


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no.such.Error", "cannot be imported"),
        ("os.path.join", "not an exception class"),
        (KeyboardInterrupt, "not an exception class"),
        (NeedsArgs, "cannot be built without arguments"),
    ],
)
def test_bad_exception_classes_say_why(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        RateGuardConfig(exception_class=value)  # type: ignore[arg-type]
    assert [e["loc"] for e in info.value.errors()] == [("exception_class",)]


def test_exception_class_and_limited_handler_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="give one of them"):
        RateGuardConfig(exception_class=Limited, limited_handler="os.path.join")


def test_the_denial_exception_carries_the_decision() -> None:
    from py_rate_guard import Decision, RateLimitExceeded
    from py_rate_guard.exceptions import denial_exception

    limited = RateLimitExceeded(Decision(False, 5, 0, 60.0, 12.0), "Rate limit exceeded")
    error = denial_exception(Limited, limited)
    assert type(error) is Limited and error.__cause__ is limited

    class Mine(RateLimitExceeded):
        pass

    own = denial_exception(Mine, limited)
    assert type(own) is Mine and own.decision is limited.decision
    assert str(own) == "Rate limit exceeded"

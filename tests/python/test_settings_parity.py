"""The pydantic `RateGuardConfig` and the engine's `Settings` (Rust, `rate-guard-http`) are one
set of settings: every field on one side is on the other with the same name, type class,
default and range, except the fields listed as one-sided in `models/config.py`
(`PYTHON_ONLY_FIELDS`, `RUST_ONLY_FIELDS`). The Rust side is read from
`_native.settings_fields()`, so adding a field on one side only, or changing a default or a
range on one side, fails here."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

import pytest
from pydantic import SecretStr, ValidationError

from py_rate_guard import _native
from py_rate_guard.models.config import (
    PYTHON_ONLY_FIELDS,
    PYTHON_ONLY_RULE_FIELDS,
    RUST_ONLY_FIELDS,
    RateGuardConfig,
    RateLimitRule,
)

RUST = {field["name"]: field for field in _native.settings_fields()}
PYTHON = RateGuardConfig.model_fields


def type_class(annotation: Any) -> tuple[str, list[str] | None]:
    """A pydantic annotation as the engine names its type class: `bool`, `int`, `float`,
    `str` (secrets too), `enum` (with its variants), `rule`, `list[...]`, `optional[...]`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "enum", [str(a) for a in args]
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        name, variants = type_class(inner)
        return f"optional[{name}]", variants
    if origin is list:
        name, variants = type_class(args[0])
        return f"list[{name}]", variants
    simple = {bool: "bool", int: "int", float: "float", str: "str", SecretStr: "str"}
    if annotation in simple:
        return simple[annotation], None
    if annotation is RateLimitRule:
        return "rule", None
    raise AssertionError(f"no engine type class for {annotation!r}")


def python_default(name: str) -> Any:
    """The pydantic default as JSON would write it (secrets revealed)."""
    value = PYTHON[name].get_default(call_default_factory=True)
    if isinstance(value, list):
        return [v.get_secret_value() if isinstance(v, SecretStr) else v for v in value]
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_the_one_sided_fields_are_one_sided() -> None:
    assert not PYTHON_ONLY_FIELDS & set(RUST), "a Python-only field is in the engine"
    assert set(PYTHON) >= PYTHON_ONLY_FIELDS
    assert not RUST_ONLY_FIELDS & set(PYTHON), "a Rust-only field is in the model"
    assert set(RUST) >= RUST_ONLY_FIELDS


def test_every_field_is_on_both_sides() -> None:
    assert set(PYTHON) - PYTHON_ONLY_FIELDS == set(RUST) - RUST_ONLY_FIELDS


@pytest.mark.parametrize("name", sorted(set(RUST) - RUST_ONLY_FIELDS))
def test_type_class_default_and_secrecy_agree(name: str) -> None:
    rust = RUST[name]
    kind, variants = type_class(PYTHON[name].annotation)
    assert kind == rust["type"], name
    assert variants == rust["variants"], name
    assert python_default(name) == json.loads(rust["default"]), name
    secret = "SecretStr" in repr(PYTHON[name].annotation)
    assert secret == rust["secret"], name


@pytest.mark.parametrize(
    "name", sorted(n for n in set(RUST) - RUST_ONLY_FIELDS if RUST[n]["range"] is not None)
)
def test_ranges_agree(name: str) -> None:
    """The model accepts both ends of the engine's range and refuses just outside them."""
    low, high = RUST[name]["range"]
    whole = RUST[name]["type"] in ("int", "optional[int]")
    step = 1 if whole else min(low, 1.0) or 1.0
    inside = [int(low), int(high)] if whole else [low, high]
    outside = [int(low) - 1, int(high) + 1] if whole else [low - step, high + 1.0]
    # The longest cool-down is at least the first one.
    other = {
        "breaker_cooldown": {"breaker_max_cooldown": 86_400.0},
        "breaker_max_cooldown": {"breaker_cooldown": 0.001},
    }.get(name, {})
    for value in inside:
        RateGuardConfig(**{**other, name: value})
    for value in outside:
        with pytest.raises(ValidationError, match=name):
            RateGuardConfig(**{**other, name: value})


def test_the_dump_is_what_the_engine_reads() -> None:
    """A model with every engine field away from its default reads back field for field."""
    config = RateGuardConfig(
        enabled=False,
        fail_open=False,
        in_memory_fallback=True,
        global_rules=[RateLimitRule(limit="5/minute", key="global", name="g")],
        redis_url="redis://127.0.0.1:1/0",
        key_prefix="svc",
        trusted_proxies=["10.0.0.0/8"],
        forwarded_header="forwarded",
        ipv6_prefix=56,
        ipv4_prefix=24,
        shadow_mode=True,
        headers="both",
        exempt_paths=["/health"],
        jwt_keys=["k"],
        jwt_algorithms=["HS512"],
        jwt_verify=False,
        jwt_audience="api",
        jwt_issuer="me",
        redis_timeout=0.5,
        redis_connect_timeout=2.0,
        redis_pool_size=4,
        instance_count=3,
        deny_cache_size=7,
        deny_cache_ttl=2.0,
        breaker_threshold=9,
        breaker_cooldown=2.0,
        breaker_max_cooldown=40.0,
        memory_max_keys=1000,
        redis_tls_verify_hostname=False,
        metrics_enabled=False,
        log_identities="raw",
        log_identity_salt="pepper",
        log_denials_per_second=2.5,
    )
    dump = json.loads(config.engine_settings())
    assert set(dump) == set(RUST) - RUST_ONLY_FIELDS
    for name, rust in RUST.items():
        if name in RUST_ONLY_FIELDS or name in ("global_rules",):
            continue
        if rust["type"].startswith("optional") and name.startswith("redis_tls_"):
            continue
        assert dump[name] != json.loads(rust["default"]), f"{name} left at its default"
    assert dump["jwt_keys"] == ["k"] and dump["log_identity_salt"] == "pepper"
    assert "key_func" not in dump["global_rules"][0]
    # The native front reads it (the guard would connect to Redis).
    _native.Front(config.engine_settings())


def test_an_unknown_field_in_the_dump_is_refused_by_name() -> None:
    with pytest.raises(_native.ConfigError, match="redis_uri"):
        _native.Front(json.dumps({"redis_uri": "redis://h"}))


def test_rule_fields_agree() -> None:
    """`RateLimitRule` and the engine's `RuleConfig`: the same fields and defaults (the limit
    is required in both), a key function aside."""
    rust = dict(_native.rule_defaults())
    python = RateLimitRule.model_fields
    assert set(python) - PYTHON_ONLY_RULE_FIELDS == set(rust)
    assert not PYTHON_ONLY_RULE_FIELDS & set(rust)
    for name, default in rust.items():
        if default is None:
            assert python[name].is_required(), name
        else:
            assert python[name].get_default() == json.loads(default), name

"""`RateGuardConfig` (settings, env prefix `RATE_GUARD_`) and `RateLimitRule`.

`RateGuardConfig` is the Python face of the engine's one settings type (`Settings` in the
`rate-guard-http` crate): the same field names, types, defaults and ranges, which
`tests/python/test_settings_parity.py` compares field by field (`_native.settings_fields()`).
The native module takes the model's dump (`engine_settings()`), not one argument per setting,
and the fields the engine checks are validated by the engine's own code
(`_native.check_setting`), so that whatever this model accepts the engine accepts. A setting is
written in three places: the Rust field, the pydantic field here, and docs/configuration.md.

Rate strings are parsed by the Rust core (`_native.parse_rate`), and a rule is built into its
native form once, when the model is validated: an invalid rule is a pydantic `ValidationError`
that names the field, and a valid one is never parsed again.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from py_rate_guard import _native
from py_rate_guard.exceptions import RateLimitExceeded

__all__ = [
    "PYTHON_ONLY_FIELDS",
    "PYTHON_ONLY_RULE_FIELDS",
    "RUST_ONLY_FIELDS",
    "Algorithm",
    "HeaderStyle",
    "KeyFunc",
    "RateGuardConfig",
    "RateLimitRule",
    "RuleSpec",
]

PYTHON_ONLY_FIELDS = frozenset({"exception_class", "limit_websockets", "limited_handler"})
"""Fields of `RateGuardConfig` that are framework glue, with no engine setting: left out of
the engine's dump. Every other field is a field of the engine's `Settings`."""

PYTHON_ONLY_RULE_FIELDS = frozenset({"key_func"})
"""Fields of `RateLimitRule` the engine does not take (a key function runs in Python)."""

RUST_ONLY_FIELDS = frozenset({"routes"})
"""Fields of the engine's `Settings` that Python does not have (route limits are declared
with decorators here)."""

Algorithm = Literal["sliding_window", "fixed_window", "token_bucket", "sliding_log"]

HeaderStyle = Literal["legacy", "ietf", "both", "none"]
"""Rate-limit response headers: `legacy` (`X-RateLimit-Limit/Remaining/Reset`), `ietf` (the
IETF draft-10 `RateLimit-Policy` and `RateLimit` fields), `both`, or `none`. `Retry-After` is
sent on every denial whatever the style."""

KeyFunc = Callable[[Any], Any]
"""`key_func(request) -> str | None`, sync or async; `None` falls back to the client address."""

RuleSpec = tuple[str, str, int | None, str | None, bool | None, int]
"""A rule as the native module takes it: (limit, algorithm, burst, name, fail_open, cost)."""


def _check_key(key: str) -> str:
    """`key` when the HTTP front parses it (the native parser itself, so the two never
    disagree); as written, so that `header:X-Api-Key` keeps its case in the model."""
    _native.parse_key_spec(key)  # ConfigError is a ValueError: pydantic reports it
    return key


def _check_int(value: int | None, info: ValidationInfo) -> int | None:
    """`value` in its range (the engine's table), or a ValueError naming field, value, range."""
    if value is not None:
        assert info.field_name is not None
        _native.check_int(info.field_name, value)
    return value


def _check_setting(value: Any, info: ValidationInfo) -> Any:
    """`value` when the engine accepts it for this field (`Settings::check_field` in Rust: its
    range, or what the engine parses of it), or a ValueError naming field, value and range."""
    assert info.field_name is not None
    return _native.check_setting(info.field_name, value)


_ENGINE_CHECKED = tuple(
    field["name"]
    for field in _native.settings_fields()
    if field["checked"] and field["name"] not in RUST_ONLY_FIELDS
)
"""The fields the engine checks on their own: those with a range, and those it parses."""


def import_callable(value: Any) -> Any:
    """`value` itself, or the callable that a dotted path (`"package.module.name"` or
    `"package.module:name"`) names; a `ValueError` says why it cannot be imported."""
    if not isinstance(value, str):
        return value
    module_name, sep, attr = value.partition(":")
    if not sep:
        module_name, _, attr = value.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{value!r}: expected a dotted path such as 'package.module.name'")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{value!r} cannot be imported: {e}") from None
    if not callable(target):
        raise ValueError(f"{value!r} is not callable")
    return target


def check_exception_class(value: Any) -> Any:
    """`value` when the adapters can raise it on a denial: None, a subclass of
    `RateLimitExceeded` (built with the `Decision`), or another subclass of `Exception` that
    takes no argument; a `ValueError` says why not otherwise."""
    if value is None:
        return None
    if not isinstance(value, type) or not issubclass(value, Exception):
        raise ValueError(f"{value!r} is not an exception class (a subclass of Exception)")
    if issubclass(value, RateLimitExceeded):
        return value
    try:
        inspect.signature(value).bind()
    except TypeError:
        raise ValueError(
            f"{value.__qualname__} cannot be built without arguments, as a denial builds it"
            " (or subclass RateLimitExceeded, which is built with the Decision)"
        ) from None
    except ValueError:  # no signature to read (a builtin): trust it
        pass
    return value


class RateLimitRule(BaseModel):
    """One limit: `limit` (a rate string such as `"100/minute"` or `"10/second; 1000/hour"`)
    counted by `algorithm` for each value of `key`.

    `key` is `"ip"` (the client address, default), `"global"` (one bucket for everyone),
    `"user"` (the authenticated user, else the address), `"header:<Name>"` or `"jwt:<claim>"`.
    `key_func(request) -> str | None` (a callable or its dotted path) keys by what it returns
    instead (`key` then reads `"custom"`). A missing identity falls back to the address.
    `cost` is what one request weighs; `shadow` rules count and log but never deny."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: str
    algorithm: Algorithm = "sliding_window"
    key: str = "ip"
    burst: int | None = None
    """The token bucket's capacity (default `limit`), from 1 to 4,294,967,295."""
    cost: int = 1
    """What one request weighs against this rule, from 1 to 4,294,967,295: the default cost
    wherever the rule is used (an explicit `cost=` of a call overrides it)."""
    name: str | None = None
    shadow: bool = False
    fail_open: bool | None = None
    key_func: KeyFunc | None = None

    _native_rules: _native.Rules = PrivateAttr()
    _hash: int = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _custom_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("key_func") is not None and "key" not in data:
            return {**data, "key": "custom"}
        return data

    @field_validator("limit")
    @classmethod
    def _parse_limit(cls, value: str) -> str:
        try:
            _native.parse_rate(value)
        except _native.ConfigError as e:
            raise ValueError(str(e)) from None
        return value

    _check_ints = field_validator("burst", "cost")(_check_int)

    @field_validator("burst")
    @classmethod
    def _check_burst(cls, value: int | None, info: ValidationInfo) -> int | None:
        algorithm = info.data.get("algorithm", "token_bucket")
        if value is not None and algorithm != "token_bucket":
            raise ValueError(f"burst is only meaningful for token_bucket, not {algorithm}")
        return value

    @field_validator("key")
    @classmethod
    def _parse_key(cls, value: str) -> str:
        return _check_key(value)

    @field_validator("key_func", mode="before")
    @classmethod
    def _import_key_func(cls, value: Any) -> Any:
        return import_callable(value)

    @model_validator(mode="after")
    def _build(self) -> RateLimitRule:
        if (self.key == "custom") != (self.key_func is not None):
            raise ValueError(
                "key_func keys the rule by what it returns: give key_func without key"
                if self.key_func is not None
                else "key 'custom' needs a key_func"
            )
        try:
            self._native_rules = _native.Rules([self.spec()])
        except _native.ConfigError as e:
            raise ValueError(str(e)) from None
        self._hash = hash(tuple(self.__dict__.values()))
        return self

    def __hash__(self) -> int:
        # Computed once (adapters look rules up on every request), and read without pydantic's
        # slower `__getattr__` for private attributes.
        private = self.__pydantic_private__
        cached = private.get("_hash") if private else None
        return cached if cached is not None else hash(tuple(self.__dict__.values()))

    def spec(self) -> RuleSpec:
        """The rule as the native module takes it."""
        return (self.limit, self.algorithm, self.burst, self.name, self.fail_open, self.cost)

    @property
    def native_rules(self) -> _native.Rules:
        """The rule built once by the native module (one per rate of `limit`)."""
        return self._native_rules

    def front_spec(self) -> tuple[_native.Rules, str, int, bool]:
        """The rule as the native HTTP front takes it: (rules, key spec, cost, shadow)."""
        return (self._native_rules, self.key, self.cost, self.shadow)


class RateGuardConfig(BaseSettings):
    """Everything a guard needs. Read from the environment with the prefix `RATE_GUARD_`
    (`RATE_GUARD_REDIS_URL`, `RATE_GUARD_GLOBAL_RULES='[{"limit": "100/minute"}]'`, ...)."""

    # Errors never echo the input: a Redis URL may carry a password. The engine's messages name
    # the value where it is safe to (and redact the URL's password).
    model_config = SettingsConfigDict(
        env_prefix="RATE_GUARD_", extra="forbid", hide_input_in_errors=True
    )

    enabled: bool = True
    """Off: the adapters let every request through (`RateGuard` itself always decides)."""
    fail_open: bool = True
    """While the store is unavailable (and without fallback): allow (True) or deny."""
    in_memory_fallback: bool = False
    """While Redis is unavailable, decide in process with each limit divided by
    `instance_count`."""
    global_rules: list[RateLimitRule] = Field(default_factory=list)
    redis_url: str | None = None
    """`redis://`, `rediss://`, `redis+sentinel://h1:p1,h2:p2/<master>`, `redis+cluster://...`;
    None: the in-process memory store."""
    key_prefix: str = "rate_guard"
    trusted_proxies: list[str] = Field(default_factory=list)
    """CIDRs of the proxies whose forwarded header (`forwarded_header`) is believed (and
    `"unix"` for a proxy on a Unix socket); the client is the right-most address that is not
    one of them. Empty: the peer address."""
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    """The one field trusted proxies forward the client in: `X-Forwarded-For`, or RFC 7239
    `Forwarded`. Only one is read: a proxy passes the other on untouched, so reading both
    would let a client pick its address."""
    ipv6_prefix: int = 64
    """IPv6 clients are counted per network of this prefix length (a /64 is one client)."""
    ipv4_prefix: int = 32
    """IPv4 clients are counted per network of this prefix length (32: each address; 24: a
    /24 is one client), from 1 to 32."""
    shadow_mode: bool = False
    """Decide, count and log, but never deny (adapters)."""
    headers: HeaderStyle = "legacy"
    """Rate-limit response headers (adapters): `legacy`, `ietf`, `both` or `none`."""
    exempt_paths: list[str] = Field(default_factory=list)
    """Paths never limited (adapters): `/health` exempts `/health` and `/health/...`."""
    limit_websockets: bool = True
    """Decide WebSocket connections when they open (ASGI adapters)."""
    limited_handler: Callable[..., Any] | None = None
    """`handler(request, exc: RateLimitExceeded) -> response` (sync or async; or its dotted
    path) answers denied requests instead of the JSON 429; the rate-limit headers are added
    to its response unless it sets them. An exception it raises reaches the framework."""
    exception_class: type[Exception] | None = None
    """An exception class (or its dotted path) that the adapters raise on a denial instead of
    answering it, so that the application's own exception handling answers (Django's
    `RATELIMIT_EXCEPTION_CLASS`; `PermissionDenied` gives Django's 403). A subclass of
    `RateLimitExceeded` is built with the `Decision`; any other class with no argument (as
    django-ratelimit does), its `__cause__` the `RateLimitExceeded` that carries the
    `Decision`. Exclusive with `limited_handler`: each says how a denial is answered."""

    jwt_keys: list[SecretStr] = Field(default_factory=list)
    """Keys that verify the tokens of `jwt:<claim>` rules: HMAC secrets or PEM public keys."""
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwt_verify: bool = True
    """False reads claims from unverified tokens: only behind a gateway that verified them."""
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    # The ranges of the numbers below are the engine's (`_native.settings_fields()`, checked by
    # `_native.check_setting`), listed in docs/configuration.md.
    redis_timeout: float = 0.1
    """Seconds one Redis call may take, every round trip included."""
    redis_connect_timeout: float = 1.0
    redis_pool_size: int = 1
    instance_count: int = 1
    deny_cache_size: int = 10_000
    """Denied requests answered locally until their retry time (0 turns it off)."""
    deny_cache_ttl: float = 1.0
    """Seconds a denial is answered locally at most, so that a reset made by another process
    is seen within it."""
    breaker_threshold: int = 5
    """Consecutive Redis failures that open the circuit breaker."""
    breaker_cooldown: float = 1.0
    breaker_max_cooldown: float = 30.0
    memory_max_keys: int | None = None
    """Bound on the memory store's keys (None: the core's default)."""

    redis_tls_ca_file: str | None = None
    """For `rediss://`: PEM bundle of the CAs that sign the server's certificate (a private CA)
    instead of the built-in web roots."""
    redis_tls_cert_file: str | None = None
    """For `rediss://`: PEM client certificate, for servers that require one (mutual TLS);
    with `redis_tls_key_file`."""
    redis_tls_key_file: str | None = None
    """For `rediss://`: PEM private key of `redis_tls_cert_file`."""
    redis_tls_verify_hostname: bool = True
    """False accepts a server certificate that names another host (it must still be signed by
    a trusted CA)."""

    metrics_enabled: bool = True
    """Count Prometheus metrics and register the collector in prometheus_client's REGISTRY
    (process-wide: the last guard built decides)."""
    log_identities: Literal["hashed", "raw", "omit"] = "hashed"
    """How client identities appear in denial logs: a keyed hash (default), as is, or not at
    all."""
    log_identity_salt: SecretStr | None = None
    """Key of the identity hash; set it to compare hashes across processes and restarts
    (default: random per process)."""
    log_denials_per_second: float = 10.0
    """Denial log records per second per rule at most (0: none); the others are counted."""

    _check_engine = field_validator(*_ENGINE_CHECKED)(_check_setting)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _unset_empty_url(cls, value: Any) -> Any:
        # `RATE_GUARD_REDIS_URL=` unsets it, as in the tower crate; the engine checks the rest.
        return None if value == "" else value

    @field_validator("limited_handler", mode="before")
    @classmethod
    def _import_handler(cls, value: Any) -> Any:
        return import_callable(value)

    @field_validator("exception_class", mode="before")
    @classmethod
    def _import_exception_class(cls, value: Any) -> Any:
        return check_exception_class(import_callable(value))

    @model_validator(mode="after")
    def _check_relations(self) -> RateGuardConfig:
        if self.exception_class is not None and self.limited_handler is not None:
            raise ValueError(
                "exception_class and limited_handler both say how a denial is answered:"
                " give one of them (raise the exception from the handler to do both)"
            )
        # The fields that go together (cool-downs, `jwt:` rules and their keys), checked by
        # the engine's own `Settings::check_relations`.
        try:
            _native.check_relations(self.engine_settings())
        except _native.ConfigError as e:
            raise ValueError(str(e)) from None
        return self

    def engine_settings(self, *, global_rules: bool = True) -> str:
        """The engine's settings (`Settings` in Rust) as JSON: this model's dump without the
        Python-only fields, secrets revealed; without the global rules when `global_rules` is
        false."""
        exclude: dict[str, Any] = {name: True for name in PYTHON_ONLY_FIELDS}
        exclude["global_rules"] = (
            {"__all__": set(PYTHON_ONLY_RULE_FIELDS)} if global_rules else True
        )
        dump = self.model_dump(mode="json", exclude=exclude)
        dump["jwt_keys"] = [key.get_secret_value() for key in self.jwt_keys]
        salt = self.log_identity_salt
        dump["log_identity_salt"] = None if salt is None else salt.get_secret_value()
        return json.dumps(dump)

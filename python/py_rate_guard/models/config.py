"""`RateGuardConfig` (settings, env prefix `RATE_GUARD_`) and `RateLimitRule`.

Rate strings are parsed by the Rust core (`_native.parse_rate`), and a rule is built into its
native form once, when the model is validated: an invalid rule is a pydantic `ValidationError`
that names the field, and a valid one is never parsed again.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from py_rate_guard import _native

__all__ = ["Algorithm", "RateGuardConfig", "RateLimitRule", "RuleSpec"]

Algorithm = Literal["sliding_window", "fixed_window", "token_bucket", "sliding_log"]

RuleSpec = tuple[str, str, Optional[int], Optional[str], Optional[bool]]
"""A rule as the native module takes it: (limit, algorithm, burst, name, fail_open)."""

_KEY_WORDS = ("ip", "global", "user")
_KEY_PREFIXES = ("header:", "jwt:")


def _check_key(key: str) -> str:
    if key in _KEY_WORDS:
        return key
    for prefix in _KEY_PREFIXES:
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            if rest and rest.isprintable() and not any(c.isspace() for c in rest):
                return key
            raise ValueError(f"{key!r}: expected a name after {prefix!r}, without spaces")
    raise ValueError(f"{key!r}: expected 'ip', 'global', 'user', 'header:<Name>' or 'jwt:<claim>'")


class RateLimitRule(BaseModel):
    """One limit: `limit` (a rate string such as `"100/minute"` or `"10/second; 1000/hour"`)
    counted by `algorithm` for each value of `key`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: str
    algorithm: Algorithm = "sliding_window"
    key: str = "ip"
    burst: Optional[int] = Field(default=None, ge=1)
    cost: int = Field(default=1, ge=1)
    name: Optional[str] = None
    shadow: bool = False
    fail_open: Optional[bool] = None

    _native_rules: _native.Rules = PrivateAttr()

    @field_validator("limit")
    @classmethod
    def _parse_limit(cls, value: str) -> str:
        try:
            _native.parse_rate(value)
        except _native.ConfigError as e:
            raise ValueError(str(e)) from None
        return value

    @field_validator("burst")
    @classmethod
    def _check_burst(cls, value: Optional[int], info: ValidationInfo) -> Optional[int]:
        algorithm = info.data.get("algorithm", "token_bucket")
        if value is not None and algorithm != "token_bucket":
            raise ValueError(f"burst is only meaningful for token_bucket, not {algorithm}")
        return value

    @field_validator("key")
    @classmethod
    def _parse_key(cls, value: str) -> str:
        return _check_key(value)

    @model_validator(mode="after")
    def _build(self) -> RateLimitRule:
        try:
            self._native_rules = _native.Rules([self.spec()])
        except _native.ConfigError as e:
            raise ValueError(str(e)) from None
        return self

    def spec(self) -> RuleSpec:
        """The rule as the native module takes it."""
        return (self.limit, self.algorithm, self.burst, self.name, self.fail_open)

    @property
    def native_rules(self) -> _native.Rules:
        """The rule built once by the native module (one per rate of `limit`)."""
        return self._native_rules


class RateGuardConfig(BaseSettings):
    """Everything a guard needs. Read from the environment with the prefix `RATE_GUARD_`
    (`RATE_GUARD_REDIS_URL`, `RATE_GUARD_GLOBAL_RULES='[{"limit": "100/minute"}]'`, ...)."""

    model_config = SettingsConfigDict(env_prefix="RATE_GUARD_", extra="forbid")

    enabled: bool = True
    """Off: the adapters let every request through (`RateGuard` itself always decides)."""
    fail_open: bool = True
    """While the store is unavailable (and without fallback): allow (True) or deny."""
    in_memory_fallback: bool = False
    """While Redis is unavailable, decide in process with each limit divided by
    `instance_count`."""
    global_rules: list[RateLimitRule] = Field(default_factory=list)
    redis_url: Optional[str] = None
    """`redis://`, `rediss://`, `redis+sentinel://h1:p1,h2:p2/<master>`, `redis+cluster://...`;
    None: the in-process memory store."""
    key_prefix: str = "rate_guard"
    trusted_proxies: list[str] = Field(default_factory=list)
    """CIDRs of the proxies whose forwarded headers are believed."""
    shadow_mode: bool = False
    """Decide and report, but never deny (adapters)."""
    headers_enabled: bool = True
    """Send `X-RateLimit-*` and `Retry-After` headers (adapters)."""

    redis_timeout: float = Field(default=0.1, gt=0)
    """Seconds one Redis call may take, every round trip included."""
    redis_connect_timeout: float = Field(default=1.0, gt=0)
    redis_pool_size: int = Field(default=1, ge=1)
    instance_count: int = Field(default=1, ge=1)
    deny_cache_size: int = Field(default=10_000, ge=0)
    """Denied requests answered locally until their retry time (0 turns it off)."""
    breaker_threshold: int = Field(default=5, ge=1)
    """Consecutive Redis failures that open the circuit breaker."""
    breaker_cooldown: float = Field(default=1.0, gt=0)
    breaker_max_cooldown: float = Field(default=30.0, gt=0)
    memory_max_keys: Optional[int] = Field(default=None, ge=1)
    """Bound on the memory store's keys (None: the core's default)."""

    @field_validator("trusted_proxies")
    @classmethod
    def _parse_proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                raise ValueError(f"{cidr!r} is not an IP network: {e}") from None
        return value

    @model_validator(mode="after")
    def _check_cooldowns(self) -> RateGuardConfig:
        if self.breaker_max_cooldown < self.breaker_cooldown:
            raise ValueError("breaker_max_cooldown must be at least breaker_cooldown")
        return self

    def guard_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `_native.Guard` that this configuration sets."""
        return {
            "key_prefix": self.key_prefix,
            "redis_timeout": self.redis_timeout,
            "redis_connect_timeout": self.redis_connect_timeout,
            "redis_pool_size": self.redis_pool_size,
            "fail_open": self.fail_open,
            "in_memory_fallback": self.in_memory_fallback,
            "instance_count": self.instance_count,
            "deny_cache_size": self.deny_cache_size,
            "breaker_threshold": self.breaker_threshold,
            "breaker_cooldown": self.breaker_cooldown,
            "breaker_max_cooldown": self.breaker_max_cooldown,
            "memory_max_keys": self.memory_max_keys,
        }

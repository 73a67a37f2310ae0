"""Stubs of the native module `py_rate_guard._native` (crates/rate-guard-py)."""

import os
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, Final, final

from typing_extensions import Self

__version__: Final[str]
__all__ = [
    "Call",
    "ConfigError",
    "Decision",
    "DecisionLog",
    "Drainer",
    "Flusher",
    "Front",
    "Guard",
    "ManualClock",
    "Outcome",
    "Plan",
    "RateGuardError",
    "Ready",
    "RouteLimits",
    "Rules",
    "StorageError",
    "__version__",
    "_bridges",
    "check_int",
    "check_key_prefix",
    "check_redis_url",
    "check_seconds",
    "check_trusted_proxy",
    "drain_events",
    "int_ranges",
    "metrics_enabled",
    "metrics_snapshot",
    "metrics_text",
    "parse_key_spec",
    "parse_rate",
    "seconds_ranges",
    "set_metrics_enabled",
    "wait_events",
]

class RateGuardError(Exception): ...
class ConfigError(RateGuardError, ValueError): ...
class StorageError(RateGuardError): ...

def parse_rate(rate: str) -> list[tuple[int, float]]: ...
def parse_key_spec(spec: str) -> str: ...
def check_trusted_proxy(entry: str) -> None: ...
def check_key_prefix(prefix: str) -> None: ...
def check_redis_url(url: str) -> None: ...
def check_int(field: str, value: object) -> int: ...
def check_seconds(field: str, value: float) -> float: ...
def int_ranges() -> list[tuple[str, int, int]]: ...
def seconds_ranges() -> list[tuple[str, float, float]]: ...

# Observability (crates/rate-guard-py/src/observe.rs)
def metrics_snapshot() -> dict[str, Any]: ...
def metrics_text() -> str: ...
def set_metrics_enabled(enabled: bool) -> None: ...
def metrics_enabled() -> bool: ...
def drain_events() -> tuple[list[dict[str, Any]], int]: ...
def wait_events(timeout: float) -> bool: ...

@final
class Decision:
    def __new__(
        cls,
        allowed: bool,
        limit: int,
        remaining: int,
        reset_after: float,
        retry_after: float | None = None,
        source: str = ...,
    ) -> Self: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def source(self) -> str: ...
    @property
    def degraded(self) -> bool: ...

@final
class Rules:
    def __new__(
        cls,
        specs: list[
            tuple[str, str, int | None, str | None, bool | None]
            | tuple[str, str, int | None, str | None, bool | None, int]
        ],
    ) -> Self: ...
    @property
    def ids(self) -> list[str]: ...
    @property
    def costs(self) -> list[int]: ...
    @property
    def definitions(self) -> list[str]: ...
    def __len__(self) -> int: ...

@final
class Guard:
    def __new__(
        cls,
        redis_url: str | None = None,
        *,
        key_prefix: str = ...,
        redis_timeout: float = 0.1,
        redis_connect_timeout: float = 1.0,
        redis_pool_size: int = 1,
        fail_open: bool = True,
        in_memory_fallback: bool = False,
        instance_count: int = 1,
        deny_cache_size: int = 10000,
        deny_cache_ttl: float = 1.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        breaker_max_cooldown: float = 30.0,
        memory_max_keys: int | None = None,
        redis_tls_ca_file: str | os.PathLike[str] | None = None,
        redis_tls_cert_file: str | os.PathLike[str] | None = None,
        redis_tls_key_file: str | os.PathLike[str] | None = None,
        redis_tls_verify_hostname: bool = True,
    ) -> Self: ...
    def hit(self, identity: str, rules: Rules, cost: int | None = None) -> Decision: ...
    def peek(self, identity: str, rules: Rules, cost: int | None = None) -> Decision: ...
    def decide_many(
        self, requests: list[tuple[str, Rules]], cost: int | None = None, peek: bool = False
    ) -> Decision: ...
    def ahit(
        self, identity: str, rules: Rules, cost: int | None = None
    ) -> Coroutine[Any, Any, Decision]: ...
    def apeek(
        self, identity: str, rules: Rules, cost: int | None = None
    ) -> Coroutine[Any, Any, Decision]: ...
    def adecide_many(
        self, requests: list[tuple[str, Rules]], cost: int | None = None, peek: bool = False
    ) -> Coroutine[Any, Any, Decision]: ...
    def reset(self, identity: str, rules: Rules) -> None: ...
    @property
    def store(self) -> str: ...
    @property
    def breaker_state(self) -> str: ...

@final
class Drainer:
    """The async bridge's reader callback (internal)."""

    def __call__(self, *args: Any, **kwargs: Any) -> None: ...

@final
class Flusher:
    """Hands the async calls of one loop iteration to the I/O thread (internal)."""

    def __call__(self, *args: Any, **kwargs: Any) -> None: ...

@final
class Call:
    """The coroutine of one async call, started when awaited (internal)."""

    def __await__(self) -> Any: ...
    def __iter__(self) -> Call: ...
    def __next__(self) -> Any: ...
    def send(self, _value: Any) -> Any: ...
    def throw(self, kind: Any, value: Any = None, _traceback: Any = None) -> Any: ...
    def close(self) -> None: ...

@final
class Ready:
    """An awaitable whose value is already known (internal)."""

    def __await__(self) -> Ready: ...
    def __iter__(self) -> Ready: ...
    def __next__(self) -> Any: ...

def _bridges() -> int: ...

# --- HTTP front (crates/rate-guard-py/src/front.rs, over rate-guard-http) ---

@final
class Front:
    """Global and route limits, key resolution (trusted proxies, JWT, route scoping) and the
    answer to each request."""

    def __new__(
        cls,
        *,
        global_rules: Sequence[
            tuple[Rules, str, int, bool] | tuple[Rules, str, int, bool, int]
        ] = ...,
        trusted_proxies: list[str] = ...,
        ipv6_prefix: int = 64,
        forwarded_header: str = ...,
        headers: str = ...,
        shadow_mode: bool = False,
        jwt_keys: list[str] = ...,
        jwt_algorithms: list[str] = ...,
        jwt_verify: bool = True,
        jwt_audience: str | None = None,
        jwt_issuer: str | None = None,
    ) -> Self: ...
    def route(
        self,
        template: str,
        rules: Sequence[tuple[Rules, str, int, bool] | tuple[Rules, str, int, bool, int]],
        method: str | None = None,
    ) -> RouteLimits: ...
    def plan(
        self,
        peer: str | Sequence[Any] | None,
        headers: Iterable[tuple[bytes | str, bytes | str]],
        route: RouteLimits | None = None,
        *,
        user: str | None = None,
        custom: str | Sequence[str | None] | None = None,
    ) -> Plan: ...
    def decide(self, guard: Guard, plan: Plan) -> Outcome: ...
    def adecide(self, guard: Guard, plan: Plan) -> Awaitable[Outcome]: ...
    def decide_request(
        self,
        guard: Guard,
        peer: str | Sequence[Any] | None,
        headers: Iterable[tuple[bytes | str, bytes | str]],
        route: RouteLimits | None = None,
        *,
        user: str | None = None,
        custom: str | Sequence[str | None] | None = None,
    ) -> Outcome: ...
    def adecide_request(
        self,
        guard: Guard,
        peer: str | Sequence[Any] | None,
        headers: Iterable[tuple[bytes | str, bytes | str]],
        route: RouteLimits | None = None,
        *,
        user: str | None = None,
        custom: str | Sequence[str | None] | None = None,
    ) -> Awaitable[Outcome]: ...
    @staticmethod
    def _bridge_round_trip(guard: Guard) -> Awaitable[None]: ...

@final
class RouteLimits:
    @property
    def template(self) -> str: ...
    @property
    def method(self) -> str | None: ...
    @property
    def rule_ids(self) -> list[str]: ...

@final
class Plan:
    @property
    def items(self) -> list[tuple[str, str, int, bool]]: ...
    def keys(self, key_prefix: str = ...) -> list[str]: ...
    def __len__(self) -> int: ...

@final
class Outcome:
    @property
    def allowed(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def decision(self) -> Decision | None: ...
    @property
    def plan(self) -> Plan | None: ...
    @property
    def rule(self) -> str | None: ...
    @property
    def shadow_denied(self) -> list[str]: ...
    @property
    def degraded(self) -> bool: ...
    @property
    def source(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...

@final
class ManualClock:
    def __new__(cls, start: float = 0.0) -> Self: ...
    def advance(self, seconds: float) -> None: ...
    def now(self) -> float: ...

@final
class DecisionLog:
    def __new__(
        cls,
        per_second: float = ...,
        identities: str = "hashed",
        salt: str | None = None,
        clock: ManualClock | None = None,
    ) -> Self: ...
    def outcome(
        self,
        outcome: Outcome,
        plan: Plan | None = None,
        route: RouteLimits | None = None,
    ) -> list[dict[str, Any]] | None: ...
    def flush(self) -> list[dict[str, Any]]: ...
    def render_identity(self, identity: str) -> str | None: ...
    @property
    def per_second(self) -> float: ...
    @property
    def identities(self) -> str: ...

"""Stubs of the native module `py_rate_guard._native` (crates/rate-guard-py)."""

from collections.abc import Awaitable
from typing import Any, Final, final

from typing_extensions import Self

__version__: Final[str]
__all__ = [
    "ConfigError",
    "Decision",
    "Drainer",
    "Guard",
    "RateGuardError",
    "Ready",
    "Rules",
    "StorageError",
    "__version__",
    "_bridges",
    "parse_rate",
]

class RateGuardError(Exception): ...
class ConfigError(RateGuardError): ...
class StorageError(RateGuardError): ...

def parse_rate(rate: str) -> list[tuple[int, float]]: ...

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
    def __new__(cls, specs: list[tuple[str, str, int | None, str | None, bool | None]]) -> Self: ...
    @property
    def ids(self) -> list[str]: ...
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
    ) -> Self: ...
    def hit(self, identity: str, rules: Rules, cost: int = 1) -> Decision: ...
    def peek(self, identity: str, rules: Rules, cost: int = 1) -> Decision: ...
    def decide_many(
        self, requests: list[tuple[str, Rules]], cost: int = 1, peek: bool = False
    ) -> Decision: ...
    def ahit(self, identity: str, rules: Rules, cost: int = 1) -> Awaitable[Decision]: ...
    def apeek(self, identity: str, rules: Rules, cost: int = 1) -> Awaitable[Decision]: ...
    def adecide_many(
        self, requests: list[tuple[str, Rules]], cost: int = 1, peek: bool = False
    ) -> Awaitable[Decision]: ...
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
class Ready:
    """An awaitable whose value is already known (internal)."""

    def __await__(self) -> Ready: ...
    def __iter__(self) -> Ready: ...
    def __next__(self) -> Any: ...

def _bridges() -> int: ...

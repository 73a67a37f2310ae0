"""`RateGuard`: the framework-agnostic front over the native limiter."""

from __future__ import annotations

from collections.abc import Coroutine, Hashable, Sequence
from typing import Any

from py_rate_guard import _native, logs, metrics
from py_rate_guard._native import ConfigError, Decision
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule, RuleSpec

__all__ = ["Limit", "RateGuard"]

Limit = str | RateLimitRule | Sequence[str | RateLimitRule]
"""A rate string, a rule, or several of them decided together."""

_CACHE_SIZE = 4096
_MAX_NAMES = 65_536


class RateGuard:
    """Decides requests against rate limits, on the memory store or Redis.

    `hit`, `peek` and `reset` are synchronous and release the GIL while they decide (Redis I/O
    happens on the calling thread); `ahit` and `apeek` are their asyncio twins. Several
    limits passed together are all-or-nothing: if one denies, none consumes. The guard can be
    made before `fork()` (gunicorn `--preload`): each process builds its own runtime and
    connections on first use.

    Construction connects to Redis when `config.redis_url` is set, so a wrong URL raises
    `ConfigError` and an unreachable server `StorageError` here. Being limited is never an
    exception: it is a `Decision` with `allowed == False`.

    A call weighs `cost` against every rule when given; otherwise each rule weighs its own
    `RateLimitRule.cost` (1 for a rate string), so a list of rules with different costs
    charges each rule its own, all-or-nothing still. Rules of one name (or id) share their
    state, so two different rules under one name are refused (`ConfigError` naming both),
    whether among the global rules or first seen by a call. The identity must be a non-empty
    string.
    """

    def __init__(self, config: RateGuardConfig | None = None) -> None:
        self.config = config if config is not None else RateGuardConfig()
        self._guard = _native.Guard(self.config.engine_settings())
        self._rules: dict[Hashable, _native.Rules] = {}
        # By object identity: the limit object itself (kept alive, and compared with `is`)
        # and its native rules. A call with a limit seen before costs one dict lookup.
        self._by_id: dict[int, tuple[Limit, _native.Rules]] = {}
        # Each rule id seen, with its definition: two different rules under one id would share
        # their keys. Bounded: past `_MAX_NAMES` ids, new ones are no longer recorded.
        self._defined: dict[str, str] = {}
        for rule in self.config.global_rules:
            self._define(rule.native_rules)
        # Metrics on or off, the collector registered once per process; the effective
        # configuration logged, and the engine's events (store failures, breaker, fallback)
        # drained into `logging` by one thread per process.
        metrics.attach(self.config)
        logs.attach(self.config, self._guard.store)

    def hit(self, identity: str, limit: Limit, *, cost: int | None = None) -> Decision:
        """Decides `limit` for `identity` and, if allowed, consumes `cost` (default: each
        rule's own cost) from every rule."""
        seen = self._by_id.get(id(limit))
        rules = seen[1] if seen is not None and seen[0] is limit else self._remember(limit)
        return self._guard.hit(identity, rules, cost)

    def peek(self, identity: str, limit: Limit, *, cost: int | None = None) -> Decision:
        """What `hit` would answer for `cost`, consuming nothing."""
        seen = self._by_id.get(id(limit))
        rules = seen[1] if seen is not None and seen[0] is limit else self._remember(limit)
        return self._guard.peek(identity, rules, cost)

    def hit_many(
        self, requests: Sequence[tuple[str, Limit]], *, cost: int | None = None
    ) -> Decision:
        """Decides several `(identity, limit)` pairs together, all-or-nothing: one request
        whose rules count for different identities (`"global"`, a client address, a user)."""
        pairs = [(identity, self._rules_of(limit)) for identity, limit in requests]
        return self._guard.decide_many(pairs, cost)

    def peek_many(
        self, requests: Sequence[tuple[str, Limit]], *, cost: int | None = None
    ) -> Decision:
        """What `hit_many` would answer, consuming nothing."""
        pairs = [(identity, self._rules_of(limit)) for identity, limit in requests]
        return self._guard.decide_many(pairs, cost, peek=True)

    def ahit(
        self, identity: str, limit: Limit, *, cost: int | None = None
    ) -> Coroutine[Any, Any, Decision]:
        """`hit` for asyncio (and uvloop): the Redis call runs on the engine's I/O thread and
        its result comes back to this loop without blocking it. On the memory store, or when
        the answer needs no I/O (a key already denied, an open breaker), it returns at once.

        A coroutine, started when awaited (so it may be made before the loop runs); bad
        arguments raise then. It is the native coroutine itself once `limit` was seen: no
        Python frame per call."""
        seen = self._by_id.get(id(limit))
        if seen is not None and seen[0] is limit:
            return self._guard.ahit(identity, seen[1], cost)
        return self._first(identity, limit, cost, peek=False)

    def apeek(
        self, identity: str, limit: Limit, *, cost: int | None = None
    ) -> Coroutine[Any, Any, Decision]:
        """`peek` for asyncio."""
        seen = self._by_id.get(id(limit))
        if seen is not None and seen[0] is limit:
            return self._guard.apeek(identity, seen[1], cost)
        return self._first(identity, limit, cost, peek=True)

    async def _first(self, identity: str, limit: Limit, cost: int | None, peek: bool) -> Decision:
        """`ahit`/`apeek` of a limit not seen yet: its rules are built when awaited."""
        rules = self._remember(limit)
        if peek:
            return await self._guard.apeek(identity, rules, cost)
        return await self._guard.ahit(identity, rules, cost)

    async def ahit_many(
        self, requests: Sequence[tuple[str, Limit]], *, cost: int | None = None
    ) -> Decision:
        """`hit_many` for asyncio."""
        pairs = [(identity, self._rules_of(limit)) for identity, limit in requests]
        return await self._guard.adecide_many(pairs, cost)

    async def apeek_many(
        self, requests: Sequence[tuple[str, Limit]], *, cost: int | None = None
    ) -> Decision:
        """`peek_many` for asyncio."""
        pairs = [(identity, self._rules_of(limit)) for identity, limit in requests]
        return await self._guard.adecide_many(pairs, cost, peek=True)

    def reset(self, identity: str, limit: Limit) -> None:
        """Forgets what `identity` consumed from `limit`."""
        self._guard.reset(identity, self._rules_of(limit))

    @property
    def breaker_state(self) -> str:
        """The Redis circuit breaker: `closed`, `open` or `half_open`."""
        return self._guard.breaker_state

    def __repr__(self) -> str:
        return f"RateGuard(store={self._guard.store!r}, key_prefix={self.config.key_prefix!r})"

    def _rules_of(self, limit: Limit) -> _native.Rules:
        seen = self._by_id.get(id(limit))
        return seen[1] if seen is not None and seen[0] is limit else self._remember(limit)

    def _remember(self, limit: Limit) -> _native.Rules:
        """`limit`'s native rules, remembered by the identity of the limit object."""
        rules = self._native_rules(limit)
        self._define(rules)
        if len(self._by_id) >= _CACHE_SIZE:
            self._by_id.clear()
        self._by_id[id(limit)] = (limit, rules)
        return rules

    def _define(self, rules: _native.Rules) -> None:
        """Records the definition of each rule of `rules` under its id; `ConfigError` when
        the id already names another rule."""
        defined = self._defined
        for rule_id, definition in zip(rules.ids, rules.definitions, strict=True):
            known = defined.get(rule_id)
            if known is None:
                if len(defined) < _MAX_NAMES:
                    defined[rule_id] = definition
            elif known != definition:
                raise ConfigError(
                    f"two different rules are named {rule_id!r}: {known} and {definition};"
                    " rules of one name share their state, so give one of them another name"
                )

    def _native_rules(self, limit: Limit) -> _native.Rules:
        """`limit` built into native rules, once per distinct limit."""
        if isinstance(limit, RateLimitRule):
            # Read the private attribute's slot directly: going through pydantic's
            # `__getattr__` costs several times the whole native call.
            private = limit.__pydantic_private__
            return private["_native_rules"] if private else limit.native_rules
        key: Hashable = limit if isinstance(limit, str) else tuple(_items(limit))
        rules = self._rules.get(key)
        if rules is None:
            rules = _native.Rules([_spec(item) for item in _items(limit)])
            if len(self._rules) >= _CACHE_SIZE:
                self._rules.clear()
            self._rules[key] = rules
        return rules


def _items(limit: Limit) -> Sequence[str | RateLimitRule]:
    if isinstance(limit, (str, RateLimitRule)):
        return [limit]
    if isinstance(limit, Sequence) and not isinstance(limit, (bytes, bytearray)):
        return limit
    raise ConfigError(_not_a_limit(limit))


def _spec(item: str | RateLimitRule) -> RuleSpec:
    if isinstance(item, RateLimitRule):
        return item.spec()
    if isinstance(item, str):
        return (item, "sliding_window", None, None, None, 1)
    raise ConfigError(_not_a_limit(item))


def _not_a_limit(value: object) -> str:
    return (
        "a limit is a rate string, a RateLimitRule or a list of them,"
        f" not {type(value).__name__} {value!r:.80}"
    )

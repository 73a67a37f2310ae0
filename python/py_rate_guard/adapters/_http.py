"""What every adapter shares: the native HTTP front built from the configuration, the limits
that decorators put on endpoints, and one decision per request.

The adapters only gather what a request says (peer address, raw headers, user, route) and
hand it to `_native.Front`, which resolves the keys (trusted proxies, JWT, header values),
decides every applicable rule in one store call and formats the headers and body of the answer.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from py_rate_guard import _native, logs
from py_rate_guard.exceptions import ConfigError, RateLimitExceeded
from py_rate_guard.guard import RateGuard
from py_rate_guard.models.config import Algorithm, KeyFunc, RateGuardConfig, RateLimitRule

__all__ = ["ATTR", "MARK", "HttpGuard", "RouteLimit", "Target", "covered", "decorated"]

logger = logging.getLogger("py_rate_guard")

ATTR = "__rate_guard__"
"""The attribute by which a decorated endpoint (or dependency) carries its `RouteLimit`."""

MARK = "py_rate_guard"
"""The key under which the request (ASGI scope, Django request) carries the route rules
decided for it so far, so that a decorator never decides the same limits twice."""

_USER = "user"
_MAX_TARGETS = 4096


class RouteLimit:
    """The rules that `limit(...)` decorators (stacked or not) put on one endpoint: a value
    (equal rules, equal limits), so that a decorator applied again and again (Django's
    `method_decorator` does it on every call) builds nothing new."""

    __slots__ = ("_hash", "guard", "rule_set", "rules")

    def __init__(self, guard: HttpGuard | None, rules: tuple[RateLimitRule, ...]) -> None:
        self.guard = guard
        self.rules = rules
        self.rule_set = frozenset(rules)
        self._hash = hash((id(guard), rules))

    def plus(self, rule: RateLimitRule) -> RouteLimit:
        """These limits and `rule`, which is written above them (decorators apply bottom-up).
        Two different rules of one name would share their state: `ConfigError` naming both."""
        new = rule.native_rules
        for other in self.rules:
            known = dict(zip(other.native_rules.ids, other.native_rules.definitions, strict=True))
            for rule_id, definition in zip(new.ids, new.definitions, strict=True):
                if known.get(rule_id, definition) != definition:
                    raise ConfigError(
                        f"two different rules are named {rule_id!r} on one endpoint:"
                        f" {known[rule_id]} and {definition}; rules of one name share their"
                        " state, so give one of them another name"
                    )
        return RouteLimit(self.guard, (rule, *self.rules))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RouteLimit)
            and self.guard is other.guard
            and self.rules == other.rules
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"RouteLimit({[rule.limit for rule in self.rules]!r})"


def limit_of(endpoint: Any, guard: HttpGuard | None) -> RouteLimit | None:
    """The limits `endpoint` carries from `guard`'s decorators (or dependency)."""
    limit = getattr(endpoint, ATTR, None)
    if isinstance(limit, RouteLimit) and limit.guard is guard:
        return limit
    return None


def decorated(
    guard: HttpGuard | None,
    endpoint: Callable[..., Any],
    rule: RateLimitRule,
    wrap: Callable[[Callable[..., Any], RouteLimit], Callable[..., Any]],
) -> Callable[..., Any]:
    """`endpoint` limited by `rule` too: one wrapper whatever the number of stacked decorators
    (an endpoint wrapped by `wrap` already is unwrapped and wrapped again with every rule)."""
    existing = limit_of(endpoint, guard)
    if existing is None:
        return wrap(endpoint, RouteLimit(guard, (rule,)))
    original = getattr(endpoint, _ORIGINAL, None)
    if original is not None and original[0] is endpoint:
        endpoint = original[1]  # our own wrapper: wrap its endpoint once, with both limits
    return wrap(endpoint, existing.plus(rule))


def mark_wrapper(
    wrapper: Callable[..., Any], endpoint: Callable[..., Any], limit: RouteLimit
) -> None:
    """Tags `wrapper` (of `endpoint`) with `limit`, for the middleware and for stacking."""
    setattr(wrapper, ATTR, limit)
    setattr(wrapper, _ORIGINAL, (wrapper, endpoint))


_ORIGINAL = "__rate_guard_wrapped__"


class Target:
    """What one request is decided against: the global rules, the limits of its route, or both;
    and what their keys need from the request (the user, its `key_func`s)."""

    __slots__ = ("key_funcs", "native", "needs_user", "route_rules", "shadow", "simple")

    def __init__(
        self,
        native: _native.RouteLimits | None,
        route_rules: Sequence[RateLimitRule],
        rules: Sequence[RateLimitRule],
        *,
        shadow_mode: bool = False,
        key_funcs: Sequence[KeyFunc] = (),
    ) -> None:
        self.native = native
        self.route_rules = frozenset(route_rules)
        self.needs_user = any(rule.key == _USER for rule in rules)
        self.shadow = shadow_mode or any(rule.shadow for rule in rules)
        """Whether some rule only observes (the outcome may list shadow denials to log)."""
        self.key_funcs = tuple(key_funcs)
        """The key functions of the rules, by custom key slot: each rule counts by the value
        of its own function."""
        self.simple = not self.key_funcs and not self.needs_user
        """Whether the request alone (peer, headers) is enough to decide it."""

    def custom_keys(
        self, request: Any, run_async: Callable[..., Any]
    ) -> str | list[str | None] | None:
        """What each key function returns for `request` (sync; `run_async(coroutine_function,
        *args)` runs an async one), as `Front.plan` takes it."""
        values = [
            run_async(acall_key_func, func, request)
            if is_async(func)
            else call_key_func(func, request)
            for func in self.key_funcs
        ]
        return _as_custom(values)

    async def acustom_keys(self, request: Any) -> str | list[str | None] | None:
        """`custom_keys` on the event loop."""
        return _as_custom([await acall_key_func(func, request) for func in self.key_funcs])


def _as_custom(values: list[str | None]) -> str | list[str | None] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def key_slot(key_funcs: list[KeyFunc], func: KeyFunc) -> int:
    """The custom key slot of `func` among `key_funcs` (by identity), appended when new."""
    for slot, known in enumerate(key_funcs):
        if known is func:
            return slot
    key_funcs.append(func)
    return len(key_funcs) - 1


def front_specs(
    rules: Iterable[RateLimitRule], key_funcs: list[KeyFunc]
) -> list[tuple[_native.Rules, str, int, bool, int]]:
    """The rules as the native front takes them, each `key_func` given its custom key slot
    (new functions appended to `key_funcs`)."""
    return [
        (*rule.front_spec(), 0 if rule.key_func is None else key_slot(key_funcs, rule.key_func))
        for rule in rules
    ]


def covered(decided: Any, limit: RouteLimit) -> bool:
    """Whether the rules of `limit` were decided already for this request: `decided` is what
    the request carries under `MARK` (the route rules decided so far)."""
    return isinstance(decided, frozenset) and limit.rule_set <= decided


class HttpGuard(RateGuard):
    """A `RateGuard` that decides HTTP requests: global rules for every request, route limits
    from decorators, keys from the request, and the answer to send. The framework adapters
    subclass it."""

    def __init__(self, config: RateGuardConfig | None = None) -> None:
        super().__init__(config)
        config = self.config
        kwargs = config.front_kwargs()
        # Each distinct key function has a custom key slot; the global rules' come first.
        self._global_key_funcs: list[KeyFunc] = []
        kwargs["global_rules"] = front_specs(config.global_rules, self._global_key_funcs)
        self._front = _native.Front(**kwargs)
        self.front = self._front
        """The native HTTP front (global rules included)."""
        self.native = self._guard
        """The native guard the front decides with."""
        # Decorators without the middleware decide their route's limits alone.
        self._route_front = _native.Front(**{**kwargs, "global_rules": []})
        self._global_rules = list(config.global_rules)
        self.decision_log = logs.DecisionLog(config)
        """Denials and shadow denials, logged sampled per rule (logger `py_rate_guard`)."""
        self._exempt = tuple(config.exempt_paths)
        self.exempting = bool(self._exempt)
        """Whether some paths are exempt (`is_exempt` is worth asking)."""
        self._exempt_prefixes = tuple(path.rstrip("/") + "/" for path in config.exempt_paths)
        self._targets: dict[tuple[Any, ...], Target] = {}
        self.globals_target: Target | None = (
            Target(
                None,
                (),
                self._global_rules,
                shadow_mode=config.shadow_mode,
                key_funcs=self._global_key_funcs,
            )
            if self._global_rules
            else None
        )
        """The target of a request that no route limit applies to (None: nothing to decide)."""

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def is_exempt(self, path: str) -> bool:
        """Whether `path` is one of `exempt_paths` or under one."""
        return bool(self._exempt) and (
            path in self._exempt or path.startswith(self._exempt_prefixes)
        )

    def rule(
        self,
        limit: str,
        *,
        key: str | None = None,
        key_func: KeyFunc | str | None = None,
        algorithm: Algorithm = "sliding_window",
        cost: int = 1,
        burst: int | None = None,
        name: str | None = None,
        shadow: bool = False,
    ) -> RateLimitRule:
        """The rule a decorator describes, validated now (a bad one raises at import time)."""
        fields: dict[str, Any] = {
            "algorithm": algorithm,
            "cost": cost,
            "burst": burst,
            "name": name,
            "shadow": shadow,
            "key_func": key_func,
        }
        rule = make_rule(limit, key=key, **fields)
        self._check_jwt(rule)
        return rule

    def target(
        self,
        template: str,
        method: str | None,
        rules: Sequence[RateLimitRule],
        *,
        alone: bool = False,
    ) -> Target:
        """The target of a request to the route `template` (`/items/{id}`, never a raw URL)
        limited by `rules`: with the global rules, or (`alone`: a decorator without the
        middleware) without them. Built once per route."""
        cache_key = (template, method, alone, tuple(rules))
        target = self._targets.get(cache_key)
        if target is None:
            for rule in rules:
                self._check_jwt(rule)
            key_funcs = [] if alone else list(self._global_key_funcs)
            native = (self._route_front if alone else self._front).route(
                template, front_specs(rules, key_funcs), method
            )
            all_rules = rules if alone else [*self._global_rules, *rules]
            target = Target(
                native, rules, all_rules, shadow_mode=self.config.shadow_mode, key_funcs=key_funcs
            )
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[cache_key] = target
        return target

    def _check_jwt(self, rule: RateLimitRule) -> None:
        if rule.key.startswith("jwt:") and self.config.jwt_verify and not self.config.jwt_keys:
            raise ConfigError(
                f"rule key {rule.key!r} needs jwt_keys in the configuration to verify tokens"
                " (or jwt_verify=False to read them unverified)"
            )

    def decide(
        self,
        target: Target,
        peer: str | None,
        headers: Iterable[tuple[bytes | str, bytes | str]],
        *,
        user: str | None = None,
        custom: str | list[str | None] | None = None,
        alone: bool = False,
    ) -> _native.Outcome | None:
        """The outcome of one request (sync, the GIL released); None when the limiter failed
        (logged; the request goes through)."""
        front = self._route_front if alone else self._front
        try:
            outcome = front.decide_request(
                self._guard, peer, headers, target.native, user=user, custom=custom
            )
        except Exception:
            logger.exception("rate limiter failed; the request is let through")
            return None
        if target.shadow or not outcome.allowed:
            self.log(outcome, target)
        return outcome

    async def adecide(
        self,
        target: Target,
        peer: str | None,
        headers: Iterable[tuple[bytes | str, bytes | str]],
        *,
        user: str | None = None,
        custom: str | list[str | None] | None = None,
        alone: bool = False,
    ) -> _native.Outcome | None:
        """`decide` for the event loop."""
        front = self._route_front if alone else self._front
        try:
            outcome = await front.adecide_request(
                self._guard, peer, headers, target.native, user=user, custom=custom
            )
        except Exception:
            logger.exception("rate limiter failed; the request is let through")
            return None
        if target.shadow or not outcome.allowed:
            self.log(outcome, target)
        return outcome

    def log(self, outcome: _native.Outcome, target: Target) -> None:
        """Logs a denial, or the shadow rules that would have denied (sampled per rule), of an
        outcome that carries its plan (`Front.decide_request`, `Front.adecide_request`)."""
        try:
            self.decision_log.outcome(outcome, route=target.native)
        except Exception:
            logger.exception("cannot log the decision")

    def limited_exception(self, outcome: _native.Outcome) -> RateLimitExceeded:
        """The exception a custom `limited_handler` receives (and the Depends form raises)."""
        decision = outcome.decision
        if decision is None:  # refused without a decision: the store is down, failing closed
            decision = _native.Decision(False, 0, 0, 0.0)
        return RateLimitExceeded(decision, detail(outcome))


def make_rule(limit: str, *, key: str | None = None, **fields: Any) -> RateLimitRule:
    """The rule a decorator describes, validated now: a bad one raises `ConfigError` at import
    time, naming what is wrong."""
    if key is not None:
        fields["key"] = key
    try:
        return RateLimitRule(limit=limit, **fields)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid limit {limit!r}: {e}") from None


def detail(outcome: _native.Outcome) -> str:
    """The `detail` of a denial's JSON body."""
    try:
        text = json.loads(outcome.body)["detail"]
    except (ValueError, KeyError, TypeError):
        return "Rate limit exceeded"
    return str(text)


def call_key_func(key_func: KeyFunc, request: Any) -> str | None:
    """What a sync `key_func` returns for `request`, as a string; None (the client address is
    used) when it returns None or fails, which is logged: a broken key function must not
    break the application."""
    try:
        value = key_func(request)
    except Exception:
        logger.exception("key_func failed; the client address is used instead")
        return None
    return None if value is None else str(value)


async def acall_key_func(key_func: KeyFunc, request: Any) -> str | None:
    """`call_key_func` for a sync or async `key_func`."""
    try:
        value = key_func(request)
        if inspect.isawaitable(value):
            value = await value
    except Exception:
        logger.exception("key_func failed; the client address is used instead")
        return None
    return None if value is None else str(value)


def user_id(user: Any) -> str | None:
    """The id of an authenticated user object (Starlette's `BaseUser`, Django's user, a plain
    string or number); None for a missing or anonymous one."""
    if user is None or user is False:
        return None
    if isinstance(user, (str, int)):
        return str(user)
    if getattr(user, "is_authenticated", True) is False:
        return None
    for attr in ("identity", "pk", "id", "username"):
        try:
            value = getattr(user, attr, None)
        except Exception:  # Starlette's BaseUser.identity raises NotImplementedError
            continue
        if value is not None and not callable(value):
            return str(value)
    return None


def is_async(func: Callable[..., Any]) -> bool:
    while hasattr(func, "func"):  # functools.partial
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - a class with `async def __call__`
    )

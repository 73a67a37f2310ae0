"""What every adapter shares: the native HTTP front built from the configuration, the rules
that decorators put on endpoints, and the one sequence that decides a request (its keys, the
decision, the denial and shadow log).

The adapters only gather what a request says (peer address, raw headers, user, route) and
hand it to `_native.Front`, which resolves the keys (trusted proxies, JWT, header values),
decides every applicable rule in one store call and formats the headers and body of the answer.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from py_rate_guard import _native, logs
from py_rate_guard.exceptions import ConfigError, RateLimitExceeded, denial_exception
from py_rate_guard.guard import RateGuard
from py_rate_guard.models.config import Algorithm, KeyFunc, RateGuardConfig, RateLimitRule

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ATTR",
    "MARK",
    "EndpointRules",
    "HttpGuard",
    "LimitOptions",
    "RequestRules",
    "covered",
    "decorated",
    "limit_rule",
]

logger = logging.getLogger("py_rate_guard")

ATTR = "__rate_guard__"
"""The attribute by which a decorated endpoint (or dependency) carries its `EndpointRules`."""

MARK = "py_rate_guard"
"""The key under which the request (ASGI scope, Django request) carries the route rules
decided for it so far, so that a decorator never decides the same rules twice."""

_USER = "user"
_MAX_REQUEST_RULES = 4096

Headers = Iterable[tuple[bytes | str, bytes | str]]


class LimitOptions(TypedDict, total=False):
    """The keywords of every `limit(...)` decorator (`StarletteRateGuard.limit`,
    `FastAPIRateGuard.dependency`, Django's `rate_limit`): the `RateLimitRule` fields a
    decorator may set. Their defaults are the model's."""

    key: str | None
    """`"ip"` when None or left out (`"custom"` with a `key_func`)."""
    key_func: KeyFunc | str | None
    algorithm: Algorithm
    cost: int
    burst: int | None
    name: str | None
    shadow: bool


_LIMIT_OPTIONS = LimitOptions.__optional_keys__ | LimitOptions.__required_keys__


def limit_rule(limit: str, **options: Unpack[LimitOptions]) -> RateLimitRule:
    """The rule a `limit(...)` decorator describes, validated now: a bad one raises
    `ConfigError` at import time, naming what is wrong; an unknown keyword is a `TypeError`,
    as it was when each decorator spelled its keywords out."""
    unknown = options.keys() - _LIMIT_OPTIONS
    if unknown:
        raise TypeError(f"limit() got an unexpected keyword argument {min(unknown)!r}")
    fields: dict[str, Any] = dict(options)
    if fields.get("key", "") is None:
        del fields["key"]
    try:
        return RateLimitRule(limit=limit, **fields)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid limit {limit!r}: {e}") from None


class EndpointRules:
    """The rules that `limit(...)` decorators (stacked or not) or a dependency put on one
    endpoint: a value (equal rules, equal `EndpointRules`), so that a decorator applied again
    and again (Django's `method_decorator` does it on every call) builds nothing new."""

    __slots__ = ("_hash", "guard", "rule_set", "rules")

    def __init__(self, guard: HttpGuard | None, rules: tuple[RateLimitRule, ...]) -> None:
        self.guard = guard
        self.rules = rules
        self.rule_set = frozenset(rules)
        self._hash = hash((id(guard), rules))

    def plus(self, rule: RateLimitRule) -> EndpointRules:
        """These rules and `rule`, which is written above them (decorators apply bottom-up).
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
        return EndpointRules(self.guard, (rule, *self.rules))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EndpointRules)
            and self.guard is other.guard
            and self.rules == other.rules
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"EndpointRules({[rule.limit for rule in self.rules]!r})"


def endpoint_rules(endpoint: Any, guard: HttpGuard | None) -> EndpointRules | None:
    """The rules `endpoint` carries from `guard`'s decorators (or dependency)."""
    rules = getattr(endpoint, ATTR, None)
    if isinstance(rules, EndpointRules) and rules.guard is guard:
        return rules
    return None


def decorated(
    guard: HttpGuard | None,
    endpoint: Callable[..., Any],
    rule: RateLimitRule,
    wrap: Callable[[Callable[..., Any], EndpointRules], Callable[..., Any]],
) -> Callable[..., Any]:
    """`endpoint` limited by `rule` too: one wrapper whatever the number of stacked decorators
    (an endpoint wrapped by `wrap` already is unwrapped and wrapped again with every rule)."""
    existing = endpoint_rules(endpoint, guard)
    if existing is None:
        return wrap(endpoint, EndpointRules(guard, (rule,)))
    original = getattr(endpoint, _ORIGINAL, None)
    if original is not None and original[0] is endpoint:
        endpoint = original[1]  # our own wrapper: wrap its endpoint once, with both rules
    return wrap(endpoint, existing.plus(rule))


def mark_wrapper(
    wrapper: Callable[..., Any], endpoint: Callable[..., Any], rules: EndpointRules
) -> None:
    """Tags `wrapper` (of `endpoint`) with `rules`, for the middleware and for stacking."""
    setattr(wrapper, ATTR, rules)
    setattr(wrapper, _ORIGINAL, (wrapper, endpoint))


_ORIGINAL = "__rate_guard_wrapped__"


def covered(decided: Any, rules: EndpointRules) -> bool:
    """Whether `rules` were decided already for this request: `decided` is what the request
    carries under `MARK` (the route rules decided so far)."""
    return isinstance(decided, frozenset) and rules.rule_set <= decided


class RequestRules:
    """Everything one kind of request is decided against: the front that decides it (with
    the global rules, or without them for a decorator deciding on its own), the native
    limits of its route (None: the global rules only), and what their keys need from the
    request (the user, the rules' `key_func`s). Built once per route."""

    __slots__ = (
        "front",
        "key_funcs",
        "needs_user",
        "route",
        "route_rules",
        "shadow",
        "simple",
    )

    def __init__(
        self,
        front: _native.Front,
        route: _native.RouteLimits | None,
        route_rules: Sequence[RateLimitRule],
        rules: Sequence[RateLimitRule],
        *,
        shadow_mode: bool = False,
        key_funcs: Sequence[KeyFunc] = (),
    ) -> None:
        self.front = front
        self.route = route
        self.route_rules = frozenset(route_rules)
        self.needs_user = any(rule.key == _USER for rule in rules)
        self.shadow = shadow_mode or any(rule.shadow for rule in rules)
        """Whether some rule only observes (the outcome may list shadow denials to log)."""
        self.key_funcs = tuple(key_funcs)
        """The key functions of the rules, by custom key slot: each rule counts by the value
        of its own function."""
        self.simple = not self.key_funcs and not self.needs_user
        """Whether the peer and headers are enough to decide (no user, no key function)."""

    def custom_keys(
        self, request: Any, run_async: Callable[..., Any]
    ) -> str | list[str | None] | None:
        """What each key function returns for `request` (sync; `run_async(coroutine_function,
        *args)` runs an async one), as `Front.decide_request` takes it."""
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


class HttpGuard(RateGuard):
    """A `RateGuard` that decides HTTP requests: global rules for every request, route rules
    from decorators, keys from the request, and the answer to send.

    The framework adapters subclass it and say how to read their request (`source`: what
    they decide from, an ASGI scope or connection, a Django request) through `key_request`,
    `user_of`, `auser_of` and `run_async`; `adecide` (and its sync form `decide`) is the one
    sequence that decides every request of every adapter."""

    def __init__(self, config: RateGuardConfig | None = None) -> None:
        super().__init__(config)
        config = self.config
        # The native front is built here only, from the configuration's dump.
        # Each distinct key function has a custom key slot; the global rules' come first.
        self._global_key_funcs: list[KeyFunc] = []
        slots = [
            0 if rule.key_func is None else key_slot(self._global_key_funcs, rule.key_func)
            for rule in config.global_rules
        ]
        self.front = _native.Front(config.engine_settings(), custom_slots=slots)
        """The native HTTP front, global rules included."""
        # Decorators without the middleware decide their route's rules without the global ones.
        self._front_without_globals = _native.Front(config.engine_settings(global_rules=False))
        self._global_rules = list(config.global_rules)
        self.decision_log = logs.DecisionLog(config)
        """Denials and shadow denials, logged sampled per rule (logger `py_rate_guard`)."""
        self._exempt = tuple(config.exempt_paths)
        self.exempting = bool(self._exempt)
        """Whether some paths are exempt (`is_exempt` is worth asking)."""
        self._exempt_prefixes = tuple(path.rstrip("/") + "/" for path in config.exempt_paths)
        self._request_rules: dict[tuple[Any, ...], RequestRules] = {}
        self.global_only: RequestRules | None = (
            RequestRules(
                self.front,
                None,
                (),
                self._global_rules,
                shadow_mode=config.shadow_mode,
                key_funcs=self._global_key_funcs,
            )
            if self._global_rules
            else None
        )
        """What a request that no route rule applies to is decided against (None: nothing)."""

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def is_exempt(self, path: str) -> bool:
        """Whether `path` is one of `exempt_paths` or under one."""
        return bool(self._exempt) and (
            path in self._exempt or path.startswith(self._exempt_prefixes)
        )

    def rule(self, limit: str, **options: Unpack[LimitOptions]) -> RateLimitRule:
        """The rule a decorator of this guard describes, validated now (a bad one raises at
        import time, a `jwt:` key without `jwt_keys` too)."""
        rule = limit_rule(limit, **options)
        self._check_jwt(rule)
        return rule

    def request_rules(
        self,
        template: str,
        method: str | None,
        rules: Sequence[RateLimitRule],
        *,
        with_globals: bool = True,
    ) -> RequestRules:
        """What a request to the route `template` (`/items/{id}`, never a raw URL) limited by
        `rules` is decided against: with the global rules, or (not `with_globals`: a decorator
        without the middleware) without them. Built once per route."""
        cache_key = (template, method, with_globals, tuple(rules))
        found = self._request_rules.get(cache_key)
        if found is None:
            for rule in rules:
                self._check_jwt(rule)
            key_funcs = list(self._global_key_funcs) if with_globals else []
            front = self.front if with_globals else self._front_without_globals
            route = front.route(template, front_specs(rules, key_funcs), method)
            all_rules = [*self._global_rules, *rules] if with_globals else rules
            found = RequestRules(
                front,
                route,
                rules,
                all_rules,
                shadow_mode=self.config.shadow_mode,
                key_funcs=key_funcs,
            )
            if len(self._request_rules) >= _MAX_REQUEST_RULES:
                self._request_rules.clear()
            self._request_rules[cache_key] = found
        return found

    def _check_jwt(self, rule: RateLimitRule) -> None:
        if rule.key.startswith("jwt:") and self.config.jwt_verify and not self.config.jwt_keys:
            raise ConfigError(
                f"rule key {rule.key!r} needs jwt_keys in the configuration to verify tokens"
                " (or jwt_verify=False to read them unverified)"
            )

    # -- how an adapter reads its request (overridden by the adapters) --------------------

    def key_request(self, source: Any) -> Any:
        """What the rules' `key_func`s receive for `source`."""
        return source

    def user_of(self, source: Any) -> str | None:
        """The id of the authenticated user of `source` (None: anonymous or unknown)."""
        return user_id(getattr(source, "user", None))

    async def auser_of(self, source: Any) -> str | None:
        """`user_of` on the event loop."""
        return self.user_of(source)

    def run_async(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        """`func(*args)` run to completion from the sync code of `decide` (an async
        `key_func` of a sync endpoint)."""
        raise NotImplementedError(f"{type(self).__name__} cannot run {func!r} from sync code")

    # -- the decision -------------------------------------------------------------------

    async def adecide(
        self, rules: RequestRules, source: Any, peer: Any, headers: Headers
    ) -> _native.Outcome | None:
        """Decides one request: the values of its keys that the peer and headers do not
        give (the user, the key functions'), the decision of every rule in one native call,
        then the log of a denial or of shadow denials. None when the limiter failed (logged;
        the request goes through). Every adapter's middleware and decorators call this (or
        `decide`, its sync form)."""
        if rules.simple:  # the common case: one native call, no keyword to parse
            try:
                outcome = await rules.front.adecide_request(self._guard, peer, headers, rules.route)
            except Exception:
                logger.exception("rate limiter failed; the request is let through")
                return None
        else:
            custom = await rules.acustom_keys(self.key_request(source)) if rules.key_funcs else None
            user = await self.auser_of(source) if rules.needs_user else None
            try:
                outcome = await rules.front.adecide_request(
                    self._guard, peer, headers, rules.route, user=user, custom=custom
                )
            except Exception:
                logger.exception("rate limiter failed; the request is let through")
                return None
        if rules.shadow or not outcome.allowed:
            self.log(outcome, rules)
        return outcome

    def decide(
        self, rules: RequestRules, source: Any, peer: Any, headers: Headers
    ) -> _native.Outcome | None:
        """`adecide` for sync code (WSGI, sync views and endpoints): the native call
        releases the GIL while it decides."""
        custom = (
            rules.custom_keys(self.key_request(source), self.run_async) if rules.key_funcs else None
        )
        user = self.user_of(source) if rules.needs_user else None
        try:
            outcome = rules.front.decide_request(
                self._guard, peer, headers, rules.route, user=user, custom=custom
            )
        except Exception:
            logger.exception("rate limiter failed; the request is let through")
            return None
        if rules.shadow or not outcome.allowed:
            self.log(outcome, rules)
        return outcome

    def log(self, outcome: _native.Outcome, rules: RequestRules) -> None:
        """Logs a denial, or the shadow rules that would have denied (sampled per rule), of an
        outcome that carries its plan (`Front.decide_request`, `Front.adecide_request`)."""
        try:
            self.decision_log.outcome(outcome, route=rules.route)
        except Exception:
            logger.exception("cannot log the decision")

    def limited_exception(self, outcome: _native.Outcome) -> RateLimitExceeded:
        """The exception a custom `limited_handler` receives (and the Depends form raises)."""
        decision = outcome.decision
        if decision is None:  # refused without a decision: the store is down, failing closed
            decision = _native.Decision(False, 0, 0, 0.0)
        return RateLimitExceeded(decision, detail(outcome))

    def denial_error(self, outcome: _native.Outcome) -> Exception | None:
        """The exception to raise for a denial, built from the configuration's
        `exception_class`; None when there is none (the denial is answered)."""
        exception_class = self.config.exception_class
        if exception_class is None:
            return None
        return denial_exception(exception_class, self.limited_exception(outcome))


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

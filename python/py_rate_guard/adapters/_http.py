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
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from py_rate_guard import _native, logs
from py_rate_guard.adapters._limits import (
    ErrorLog,
    Limit,
    LimitOptions,
    RateSource,
    check_cost,
    limit_rule,
)
from py_rate_guard.exceptions import ConfigError, RateLimitExceeded, denial_exception
from py_rate_guard.guard import RateGuard
from py_rate_guard.models.config import KeyFunc, RateGuardConfig, RateLimitRule

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ATTR",
    "MARK",
    "EndpointRules",
    "HttpGuard",
    "Limit",
    "LimitOptions",
    "RequestRules",
    "SoftDenial",
    "covered",
    "decorated",
    "denied",
    "limit_rule",
]

logger = logging.getLogger("py_rate_guard")

ATTR = "__rate_guard__"
"""The attribute by which a decorated endpoint (or dependency) carries its `EndpointRules`."""

MARK = "py_rate_guard"
"""The key under which the request (ASGI scope, Django request) carries the route rules
decided for it so far, so that a decorator never decides the same rules twice."""

_USER = "user"
_KEY = object()
"""What `HttpGuard._resolution` yields for the key a limit callable is given."""
_DECLARED_COST = "the declared cost is used"
_MAX_REQUEST_RULES = 4096

Headers = Iterable[tuple[bytes | str, bytes | str]]
Chosen = tuple[Limit, RateLimitRule, int | None]
"""A limit that applies to a request, with its rule and its cost (None: the declared one)."""


class EndpointRules:
    """The limits that `limit(...)` decorators (stacked or not) or a dependency put on one
    endpoint: a value (equal limits, equal `EndpointRules`), so that a decorator applied again
    and again (Django's `method_decorator` does it on every call) builds nothing new."""

    __slots__ = ("_hash", "guard", "rule_set", "rules")

    def __init__(self, guard: HttpGuard | None, rules: tuple[Limit, ...]) -> None:
        self.guard = guard
        self.rules = rules
        """The `Limit`s, the one written highest first."""
        self.rule_set = frozenset(rules)
        self._hash = hash((id(guard), rules))

    def plus(self, rule: Limit) -> EndpointRules:
        """These limits and `rule`, which is written above them (decorators apply bottom-up).
        Two different rules of one name would share their state, and limits of two scopes
        cannot be decided together: `ConfigError` naming both."""
        check_together((*self.rules, rule))
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
        return f"EndpointRules({[rule.label for rule in self.rules]!r})"


def check_together(limits: Sequence[Limit]) -> None:
    """Raises `ConfigError` when `limits` cannot be decided on one request: two different
    rules of one name (they would share their state), or two scopes (a route's limits are
    stored under one scope, or under the route)."""
    scopes = {limit.scope for limit in limits}
    if len(scopes) > 1:
        names = ", ".join(sorted(repr(scope) for scope in scopes))
        raise ConfigError(
            f"limits of several scopes ({names}, None being the route's own) on one endpoint:"
            " the limits of a request are decided together under one scope; put the shared"
            " limit on its own, or give every limit of the endpoint that scope"
        )
    known: dict[str, str] = {}
    for limit in limits:
        if limit.rule is None:
            continue
        rules = limit.rule.native_rules
        for rule_id, definition in zip(rules.ids, rules.definitions, strict=True):
            if known.setdefault(rule_id, definition) != definition:
                raise ConfigError(
                    f"two different rules are named {rule_id!r} on one endpoint:"
                    f" {known[rule_id]} and {definition}; rules of one name share their"
                    " state, so give one of them another name"
                )


def endpoint_rules(endpoint: Any, guard: HttpGuard | None) -> EndpointRules | None:
    """The rules `endpoint` carries from `guard`'s decorators (or dependency)."""
    rules = getattr(endpoint, ATTR, None)
    if isinstance(rules, EndpointRules) and rules.guard is guard:
        return rules
    return None


def decorated(
    guard: HttpGuard | None,
    endpoint: Callable[..., Any],
    rule: Limit,
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
    request (the user, the rules' `key_func`s). Built once per route.

    A route whose limits depend on the request (`Limit.per_request`) is `per_request`: each
    request resolves them into the `RequestRules` of the rules that apply to it (cached)."""

    __slots__ = (
        "front",
        "key_funcs",
        "needs_user",
        "per_request",
        "route",
        "route_rules",
        "shadow",
        "simple",
        "soft_ids",
    )

    def __init__(
        self,
        front: _native.Front,
        route: _native.RouteLimits | None,
        route_rules: Iterable[Limit],
        rules: Sequence[RateLimitRule],
        *,
        shadow_mode: bool = False,
        key_funcs: Sequence[KeyFunc] = (),
        soft_ids: frozenset[str] = frozenset(),
        per_request: PerRequest | None = None,
    ) -> None:
        self.front = front
        self.route = route
        self.route_rules = frozenset(route_rules)
        """The declared limits, which the request carries under `MARK` once decided."""
        self.needs_user = any(rule.key == _USER for rule in rules)
        self.shadow = shadow_mode or any(rule.shadow for rule in rules)
        """Whether some rule only observes (the outcome may list shadow denials to log)."""
        self.key_funcs = tuple(key_funcs)
        """The key functions of the rules, by custom key slot: each rule counts by the value
        of its own function."""
        self.per_request = per_request
        self.simple = not self.key_funcs and not self.needs_user and per_request is None
        """Whether the peer and headers are enough to decide (no user, no key function,
        nothing resolved per request)."""
        self.soft_ids = soft_ids
        """The route ids of the rules of `block=False` limits: a denial they report lets
        the request through (`SoftDenial`)."""

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


class PerRequest:
    """The limits of a route that must be resolved for each request, and where they go."""

    __slots__ = ("limits", "method", "template", "with_globals")

    def __init__(
        self, template: str, method: str | None, limits: tuple[Limit, ...], with_globals: bool
    ) -> None:
        self.template = template
        self.method = method
        self.limits = limits
        self.with_globals = with_globals


class SoftDenial:
    """The outcome of a request denied by a `block=False` limit: it goes through as if
    allowed (with the rate-limit headers), and its endpoint reads the denied `decision`
    (`request.state.rate_limit` in Starlette and FastAPI, `request.limited` in Django).
    Nothing was consumed, as with every denial."""

    __slots__ = ("outcome",)

    allowed = True
    soft = True

    def __init__(self, outcome: _native.Outcome) -> None:
        self.outcome = outcome

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.outcome.headers

    @property
    def decision(self) -> _native.Decision | None:
        return self.outcome.decision

    @property
    def status(self) -> int:
        return self.outcome.status

    @property
    def body(self) -> bytes:
        return self.outcome.body

    @property
    def rule(self) -> str | None:
        return self.outcome.rule


Answer = _native.Outcome | SoftDenial
"""What deciding a request gives an adapter: the outcome, or a soft denial (allowed)."""


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
        self._resolved_rules: dict[tuple[Any, ...], RequestRules] = {}
        self._probes: dict[str, _native.RouteLimits] = {}
        self.errors = ErrorLog()
        """What went wrong with the callables of limits, logged once per limit per minute."""
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

    def rule(self, limit: RateSource, **options: Unpack[LimitOptions]) -> Limit:
        """The limit a decorator of this guard describes, validated now (a bad one raises at
        import time, a `jwt:` key without `jwt_keys` too)."""
        limit_ = limit_rule(limit, **options)
        self._check_limit(limit_)
        return limit_

    def request_rules(
        self,
        template: str,
        method: str | None,
        rules: Sequence[Limit],
        *,
        with_globals: bool = True,
    ) -> RequestRules:
        """What a request to the route `template` (`/items/{id}`, never a raw URL) limited by
        `rules` is decided against: with the global rules, or (not `with_globals`: a decorator
        without the middleware) without them. Built once per route; limits of several scopes
        (or two different rules of one name) are a `ConfigError`."""
        cache_key = (template, method, with_globals, tuple(rules))
        found = self._request_rules.get(cache_key)
        if found is None:
            limits = tuple(dict.fromkeys(rules))
            check_together(limits)
            for limit in limits:
                self._check_limit(limit)
            if any(limit.per_request for limit in limits):
                found = RequestRules(
                    self.front if with_globals else self._front_without_globals,
                    None,
                    limits,
                    (),
                    per_request=PerRequest(template, method, limits, with_globals),
                )
            else:
                chosen = tuple((limit.rule, limit.block) for limit in limits if limit.rule)
                scope = limits[0].scope if limits else None
                found = self._route_rules(template, method, chosen, scope, with_globals, limits)
            if len(self._request_rules) >= _MAX_REQUEST_RULES:
                self._request_rules.clear()
            self._request_rules[cache_key] = found
        return found

    def _route_rules(
        self,
        template: str,
        method: str | None,
        chosen: Sequence[tuple[RateLimitRule, bool]],
        scope: str | None,
        with_globals: bool,
        declared: Iterable[Limit],
    ) -> RequestRules:
        """The `RequestRules` of a route's rules (each with whether it blocks) under `scope`
        (None: the route's own)."""
        rules = [rule for rule, _ in chosen]
        key_funcs = list(self._global_key_funcs) if with_globals else []
        front = self.front if with_globals else self._front_without_globals
        route = None
        soft_ids: frozenset[str] = frozenset()
        if rules:
            specs = front_specs(rules, key_funcs)
            route = front.route(template, specs, method, scope=scope)
            if not all(block for _, block in chosen):
                ids = iter(route.rule_ids)
                soft_ids = frozenset(
                    rule_id
                    for rule, block in chosen
                    for rule_id in [next(ids) for _ in range(len(rule.native_rules))]
                    if not block
                )
        return RequestRules(
            front,
            route,
            declared,
            [*self._global_rules, *rules] if with_globals else rules,
            shadow_mode=self.config.shadow_mode,
            key_funcs=key_funcs,
            soft_ids=soft_ids,
        )

    def _check_limit(self, limit: Limit) -> None:
        for rule in (limit.rule, limit.fallback):
            if rule is not None:
                self._check_jwt(rule.key)
        self._check_jwt(str(limit.fields.get("key", "")))

    def _check_jwt(self, key: str) -> None:
        if key.startswith("jwt:") and self.config.jwt_verify and not self.config.jwt_keys:
            raise ConfigError(
                f"rule key {key!r} needs jwt_keys in the configuration to verify tokens"
                " (or jwt_verify=False to read them unverified)"
            )

    # -- how an adapter reads its request (overridden by the adapters) --------------------

    def key_request(self, source: Any) -> Any:
        """What the rules' `key_func`s (and the callables of limits) receive for `source`."""
        return source

    def method_of(self, source: Any) -> str | None:
        """The request method of `source` (upper case; None when it has none)."""
        method = getattr(source, "method", None)
        return method if isinstance(method, str) else None

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

    # -- limits resolved per request ----------------------------------------------------

    def _resolved(
        self, per_request: PerRequest, chosen: list[Chosen]
    ) -> tuple[RequestRules, list[int | None] | None] | None:
        """The `RequestRules` of the rules that apply to this request (cached; None: nothing
        to decide) and the costs aligned with its route's limits (None: the declared ones)."""
        if not chosen:
            if per_request.with_globals and self.global_only is not None:
                return self.global_only, None
            return None
        picked = tuple((rule, limit.block) for limit, rule, _ in chosen)
        scope = chosen[0][0].scope
        cache_key = (per_request, picked)
        found = self._resolved_rules.get(cache_key)
        if found is None:
            found = self._route_rules(
                per_request.template,
                per_request.method,
                picked,
                scope,
                per_request.with_globals,
                per_request.limits,
            )
            if len(self._resolved_rules) >= _MAX_REQUEST_RULES:
                self._resolved_rules.clear()
            self._resolved_rules[cache_key] = found
        costs = None
        if any(cost is not None for _, _, cost in chosen):
            costs = [cost for _, rule, cost in chosen for _ in range(len(rule.native_rules))]
        return found, costs

    def _probe(self, limit: Limit) -> _native.RouteLimits:
        """A route with one rule keyed as `limit`, whose plan says the key of a request."""
        key = str(limit.fields.get("key", "ip"))
        probe = self._probes.get(key)
        if probe is None:
            rules = limit_rule("1/second").rule
            assert rules is not None
            probe = self._front_without_globals.route(
                "/.rate-guard-key", [(rules.native_rules, key, 1, False)]
            )
            self._probes[key] = probe
        return probe

    def _planned_key(self, limit: Limit, peer: Any, headers: Headers, user: str | None) -> str:
        plan = self._front_without_globals.plan(peer, headers, self._probe(limit), user=user)
        return plan.values[0]

    def _resolution(
        self, per_request: PerRequest, request: Any, method: str | None
    ) -> Generator[tuple[Any, tuple[Any, ...]], Any, list[Chosen]]:
        """Resolves the limits of `per_request` for one request (see `Limit`): the limits that
        apply, each with its rule and cost. Written once for sync and async code: it yields
        each callable to call, `(func, args)` (`(_KEY, (limit,))` for the key a limit callable
        is given), and is sent what it returned (awaited) or thrown what it raised, by
        `_aresolve` or `_resolve`."""
        chosen: list[Chosen] = []
        for limit in per_request.limits:
            if limit.methods is not None and method not in limit.methods:
                continue
            if limit.exempt_when is not None:
                try:
                    exempt = yield (
                        limit.exempt_when,
                        ((request,) if limit.exempt_takes_request else ()),
                    )
                except Exception:
                    self.errors.error(limit, "exempt_when raised", "it applies", exc_info=True)
                    exempt = False
                if exempt:
                    continue
            rule = limit.rule
            if limit.provider is not None:
                try:
                    args = ((yield _KEY, (limit,)),) if limit.provider_takes_argument else ()
                    rate = yield limit.provider, args
                except Exception:
                    self.errors.error(
                        limit, "the limit callable raised", _then(limit), exc_info=True
                    )
                    rule = limit.fallback
                else:
                    rule = self._rule_of(limit, rate)
            if rule is None:
                continue
            cost = None
            if limit.cost is not None:
                try:
                    cost = self._cost_of(limit, (yield limit.cost, (request,)))
                except Exception:
                    self.errors.error(
                        limit, "the cost callable raised", _DECLARED_COST, exc_info=True
                    )
            chosen.append((limit, rule, cost))
        return chosen

    async def _aresolve(
        self, per_request: PerRequest, source: Any, peer: Any, headers: Headers
    ) -> tuple[RequestRules, list[int | None] | None] | None:
        """`_resolution` on the event loop."""
        request = self.key_request(source)
        steps = self._resolution(per_request, request, self.method_of(source))
        try:
            func, args = next(steps)
            while True:
                try:
                    if func is _KEY:
                        value = await self._akey(args[0], request, source, peer, headers)
                    else:
                        value = await _awaited_value(func(*args))
                except Exception as e:
                    func, args = steps.throw(e)
                else:
                    func, args = steps.send(value)
        except StopIteration as done:
            return self._resolved(per_request, done.value)

    def _resolve(
        self, per_request: PerRequest, source: Any, peer: Any, headers: Headers
    ) -> tuple[RequestRules, list[int | None] | None] | None:
        """`_resolution` for sync code (an async callable runs through `run_async`)."""
        request = self.key_request(source)
        steps = self._resolution(per_request, request, self.method_of(source))
        try:
            func, args = next(steps)
            while True:
                try:
                    if func is _KEY:
                        value = self._key(args[0], request, source, peer, headers)
                    else:
                        value = func(*args)
                        if inspect.isawaitable(value):
                            value = self.run_async(_awaited_value, value)
                except Exception as e:
                    func, args = steps.throw(e)
                else:
                    func, args = steps.send(value)
        except StopIteration as done:
            return self._resolved(per_request, done.value)

    def _rule_of(self, limit: Limit, rate: Any) -> RateLimitRule | None:
        """The rule of the rate a limit callable returned: None (no limit) as is; an invalid
        one is logged and replaced by the fallback."""
        if rate is None:
            return None
        rule = limit.rule_for(rate)
        if rule is None:
            self.errors.error(
                limit,
                f"the limit callable returned {_shown(rate)}, not a rate string or None",
                _then(limit),
            )
            return limit.fallback
        return rule

    def _cost_of(self, limit: Limit, value: Any) -> int | None:
        """A cost a cost callable returned, if the engine accepts it (else logged; the
        declared cost)."""
        cost = check_cost(value)
        if cost is None:
            self.errors.error(
                limit,
                f"the cost callable returned {_shown(value)}, not a cost from 1 to 2^32-1",
                _DECLARED_COST,
            )
        return cost

    async def _akey(
        self, limit: Limit, request: Any, source: Any, peer: Any, headers: Headers
    ) -> Any:
        """What a one-argument limit callable receives: the request (`given="request"`), or
        the request's key for this limit (its `key_func`'s value, or the identity the engine
        resolves for its key without its kind tag, as slowapi gives `get_remote_address`'s
        value: `"203.0.113.7"`, not `"ip:203.0.113.7"`)."""
        if limit.given == "request":
            return request
        key_func = limit.fields.get("key_func")
        if key_func is not None:
            return await acall_key_func(key_func, request)
        user = await self.auser_of(source) if limit.fields.get("key") == _USER else None
        return self._planned_key(limit, peer, headers, user)

    def _key(self, limit: Limit, request: Any, source: Any, peer: Any, headers: Headers) -> Any:
        """`_akey` for sync code."""
        if limit.given == "request":
            return request
        key_func = limit.fields.get("key_func")
        if key_func is not None:
            return (
                self.run_async(acall_key_func, key_func, request)
                if is_async(key_func)
                else call_key_func(key_func, request)
            )
        user = self.user_of(source) if limit.fields.get("key") == _USER else None
        return self._planned_key(limit, peer, headers, user)

    # -- the decision -------------------------------------------------------------------

    async def adecide(
        self, rules: RequestRules, source: Any, peer: Any, headers: Headers
    ) -> Answer | None:
        """Decides one request: the limits that depend on it, the values of its keys that the
        peer and headers do not give (the user, the key functions'), the decision of every
        rule in one native call, then the log of a denial or of shadow denials. None when the
        limiter failed (logged; the request goes through) or nothing applies. Every adapter's
        middleware and decorators call this (or `decide`, its sync form)."""
        if rules.simple:  # the common case: one native call, no keyword to parse
            try:
                outcome = await rules.front.adecide_request(self._guard, peer, headers, rules.route)
            except Exception:
                logger.exception("rate limiter failed; the request is let through")
                return None
        else:
            costs = None
            if rules.per_request is not None:
                resolved = await self._aresolve(rules.per_request, source, peer, headers)
                if resolved is None:
                    return None
                rules, costs = resolved
            custom = await rules.acustom_keys(self.key_request(source)) if rules.key_funcs else None
            user = await self.auser_of(source) if rules.needs_user else None
            try:
                outcome = await rules.front.adecide_request(
                    self._guard, peer, headers, rules.route, user=user, custom=custom, costs=costs
                )
            except Exception:
                logger.exception("rate limiter failed; the request is let through")
                return None
        if rules.shadow or not outcome.allowed:
            self.log(outcome, rules)
            if not outcome.allowed and outcome.rule in rules.soft_ids:
                return SoftDenial(outcome)
        return outcome

    def decide(
        self, rules: RequestRules, source: Any, peer: Any, headers: Headers
    ) -> Answer | None:
        """`adecide` for sync code (WSGI, sync views and endpoints): the native call
        releases the GIL while it decides."""
        costs = None
        if rules.per_request is not None:
            resolved = self._resolve(rules.per_request, source, peer, headers)
            if resolved is None:
                return None
            rules, costs = resolved
        custom = (
            rules.custom_keys(self.key_request(source), self.run_async) if rules.key_funcs else None
        )
        user = self.user_of(source) if rules.needs_user else None
        try:
            outcome = rules.front.decide_request(
                self._guard, peer, headers, rules.route, user=user, custom=custom, costs=costs
            )
        except Exception:
            logger.exception("rate limiter failed; the request is let through")
            return None
        if rules.shadow or not outcome.allowed:
            self.log(outcome, rules)
            if not outcome.allowed and outcome.rule in rules.soft_ids:
                return SoftDenial(outcome)
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


def denied(answer: Answer | None) -> TypeGuard[_native.Outcome]:
    """Whether `answer` refuses the request (a soft denial does not)."""
    return answer is not None and not answer.allowed


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


async def _awaited_value(value: Any) -> Any:
    """`value`, awaited when it is awaitable."""
    return await value if inspect.isawaitable(value) else value


def _then(limit: Limit) -> str:
    """What decides a request whose limit callable failed."""
    if limit.fallback is not None:
        return f"its fallback {limit.fallback.limit!r} decides the request"
    return "it is left out for this request"


def _shown(value: Any) -> str:
    """`value` for a log line, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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

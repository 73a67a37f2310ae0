"""What one `limit(...)` decorator declares (`Limit`), and how its parts that depend on the
request are resolved: a limit or a cost computed by a callable, a predicate that exempts the
request, the methods the limit applies to.

Only glue lives here: a rate string a callable returns is handed to the engine's parser (by
building a `RateLimitRule`, cached), a cost to the engine's range check; nothing is parsed or
counted in Python. A callable that raises or returns something unusable never fails the
request: the limit's `fallback` decides it (without one the limit is left out for that
request), and the error is logged once per limit per minute.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from py_rate_guard import _native
from py_rate_guard.exceptions import ConfigError
from py_rate_guard.models.config import Algorithm, KeyFunc, RateLimitRule

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ErrorLog", "Limit", "LimitOptions", "limit_rule"]

logger = logging.getLogger("py_rate_guard")

RateSource = str | Callable[..., Any] | None
"""A limit: a rate string, None (no limit), or a callable returning either (sync or async)."""

_MAX_RESOLVED = 4096


class LimitOptions(TypedDict, total=False):
    """The keywords of every `limit(...)` decorator (`StarletteRateGuard.limit`,
    `FastAPIRateGuard.dependency`, Django's `rate_limit`). The `RateLimitRule` fields keep the
    model's defaults; the others say when and how the limit applies."""

    key: str | None
    """`"ip"` when None or left out (`"custom"` with a `key_func`)."""
    key_func: KeyFunc | str | None
    algorithm: Algorithm
    cost: int | Callable[..., Any]
    """What a request weighs (1), or a callable computing it from the request (sync or async)."""
    burst: int | None
    name: str | None
    shadow: bool
    exempt_when: Callable[..., Any] | None
    """A predicate (no argument, or the request; sync or async): True leaves the limit out."""
    scope: str | None
    """A shared limit's name: every route declaring the scope counts against one quota."""
    methods: str | Iterable[str] | None
    """The methods the limit applies to (`"POST"`, `["POST", "PUT"]`); others pass it."""
    block: bool
    """False: a denial lets the request through, and the endpoint reads the decision."""
    fallback: str | None
    """The rate that decides when the limit callable fails or returns something invalid."""


_LIMIT_OPTIONS = LimitOptions.__optional_keys__ | LimitOptions.__required_keys__
_RULE_FIELDS = frozenset({"key", "key_func", "algorithm", "burst", "name", "shadow"})


class Limit:
    """One `limit(...)` declaration, validated when it is written: a value (equal
    declarations are equal), so a decorator applied again builds nothing new.

    `rule` is the rule when the rate is a string (None: no limit, or a callable decides);
    `per_request` says whether anything must be resolved for each request."""

    __slots__ = (
        "_hash",
        "_identity",
        "block",
        "cost",
        "exempt_takes_request",
        "exempt_when",
        "fallback",
        "fields",
        "given",
        "methods",
        "per_request",
        "provider",
        "provider_takes_argument",
        "rule",
        "scope",
    )

    def __init__(
        self,
        limit: RateSource,
        fields: dict[str, Any],
        *,
        cost: int | Callable[..., Any] = 1,
        exempt_when: Callable[..., Any] | None = None,
        methods: str | Iterable[str] | None = None,
        block: bool = True,
        fallback: str | None = None,
        scope: str | None = None,
        given: Literal["key", "request"] = "key",
    ) -> None:
        if given not in ("key", "request"):
            raise ConfigError(f"given must be 'key' or 'request', not {given!r}")
        described = limit if isinstance(limit, str) else None
        if callable(cost):
            self.cost: Callable[..., Any] | None = cost
            static_cost: Any = 1
        else:
            self.cost = None
            static_cost = cost
        self.fields = {**fields, "cost": static_cost}
        # The options are checked now, whatever the limit: a bad key fails at import.
        probe = described if described is not None else fallback or "1/second"
        checked = build_rule(probe, self.fields)
        self.rule = checked if described is not None else None
        self.fallback = None if fallback is None else build_rule(fallback, self.fields)
        if limit is None or isinstance(limit, str):
            self.provider: Callable[..., Any] | None = None
            self.provider_takes_argument = False
        elif callable(limit):
            self.provider = limit
            self.provider_takes_argument = _arity(limit, "limit") == 1
        else:
            raise ConfigError(
                "limit must be a rate string, None (no limit) or a callable returning one,"
                f" not {type(limit).__name__}"
            )
        self.given = given
        if exempt_when is not None and not callable(exempt_when):
            raise ConfigError(f"exempt_when must be a callable, not {type(exempt_when).__name__}")
        self.exempt_when = exempt_when
        self.exempt_takes_request = (
            exempt_when is not None and _arity(exempt_when, "exempt_when") == 1
        )
        self.methods = _methods(methods)
        if not isinstance(block, bool):
            raise ConfigError(f"block must be True or False, not {block!r}")
        self.block = block
        if scope is not None and not isinstance(scope, str):
            raise ConfigError(f"scope must be a string naming the shared limit, not {scope!r}")
        if scope is not None:
            try:
                _native.check_scope(scope)  # a bad name fails here, not on every request
            except UnicodeEncodeError:
                raise ConfigError(
                    f"scope {scope!r} is not valid Unicode text: it holds a lone surrogate"
                ) from None
        self.scope = scope
        self.per_request = (
            self.provider is not None
            or self.cost is not None
            or self.exempt_when is not None
            or self.methods is not None
        )
        self._identity = (
            self.rule,
            self.provider,
            given,
            self.cost,
            exempt_when,
            self.methods,
            block,
            self.fallback,
            scope,
            None if self.rule is not None else checked,
        )
        self._hash = hash(self._identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limit) and self._identity == other._identity

    def __hash__(self) -> int:
        return self._hash

    @property
    def label(self) -> str:
        """How logs name the limit."""
        if self.rule is not None:
            return repr(self.rule.limit)
        if self.provider is not None:
            return getattr(self.provider, "__qualname__", repr(self.provider))
        return "None"

    def __repr__(self) -> str:
        return f"Limit({self.label})"

    def rule_for(self, rate: Any) -> RateLimitRule | None:
        """The rule of a rate a limit callable returned (this limit's options); None when it is
        not a usable rate string (the engine's parser says)."""
        if not isinstance(rate, str):
            return None
        try:
            return build_rule(rate, self.fields)
        except ConfigError:
            return None


def limit_rule(
    limit: RateSource, *, given: Literal["key", "request"] = "key", **options: Unpack[LimitOptions]
) -> Limit:
    """The limit a `limit(...)` decorator describes, validated now: a bad one raises
    `ConfigError` at import time, naming what is wrong; an unknown keyword is a `TypeError`.

    `limit` is a rate string, None (no limit), or a callable returning one of them (or
    awaitable, where the framework is async), called for each request: with no argument, or,
    when it takes one, with the request's key (`given="key"`, slowapi's convention) or with
    the request (`given="request"`, for an adapter that wraps its own calling convention)."""
    unknown = options.keys() - _LIMIT_OPTIONS
    if unknown:
        raise TypeError(f"limit() got an unexpected keyword argument {min(unknown)!r}")
    fields: dict[str, Any] = {name: options[name] for name in _RULE_FIELDS & options.keys()}  # type: ignore[literal-required]
    if fields.get("key", "") is None:
        del fields["key"]
    return Limit(
        limit,
        fields,
        cost=options.get("cost", 1),
        exempt_when=options.get("exempt_when"),
        methods=options.get("methods"),
        block=options.get("block", True),
        fallback=options.get("fallback"),
        scope=options.get("scope"),
        given=given,
    )


_built: dict[tuple[str, tuple[tuple[str, Any], ...]], RateLimitRule | ConfigError] = {}


def build_rule(limit: str, fields: dict[str, Any]) -> RateLimitRule:
    """`RateLimitRule(limit=limit, **fields)` (the engine parses the rate), cached: a limit
    callable returns a few rates over and over. A bad rule raises `ConfigError`."""
    cache_key = (limit, tuple(fields.items()))
    try:
        found = _built.get(cache_key)
    except TypeError:  # an unhashable option: pydantic will say what is wrong with it
        found, cache_key = None, None  # type: ignore[assignment]
    if found is None:
        try:
            found = RateLimitRule(limit=limit, **fields)
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            found = ConfigError(f"invalid limit {limit!r}: {e}")
        if cache_key is not None:
            if len(_built) >= _MAX_RESOLVED:
                _built.clear()
            _built[cache_key] = found
    if isinstance(found, ConfigError):
        raise found
    return found


def check_cost(value: Any) -> int | None:
    """A cost a callable returned, if the engine accepts it (an int in the cost range)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return _native.check_int("cost", value)
    except ValueError:
        return None


class ErrorLog:
    """Logs what went wrong with a limit's callable at most once per limit per `period`
    seconds (the others are counted and reported with the next record), so that a broken
    callable on a busy route does not flood the log. Bounded: forgets everything past 4096
    limits (there are as many as declarations)."""

    def __init__(self, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self._last: dict[Limit, tuple[float, int]] = {}

    def error(self, limit: Limit, what: str, then: str, *, exc_info: bool = False) -> None:
        """Logs `what` went wrong with `limit` and what `then` happens (with the traceback
        being handled, when `exc_info`), unless it was logged less than `period` seconds
        ago."""
        now = self.clock()
        last = self._last.get(limit)
        if last is not None and now - last[0] < self.period:
            self._last[limit] = (last[0], last[1] + 1)
            return
        if len(self._last) >= _MAX_RESOLVED:
            self._last.clear()
        self._last[limit] = (now, 0)
        suppressed = f" ({last[1]} more since the last report)" if last and last[1] else ""
        logger.error("limit %s: %s; %s%s", limit.label, what, then, suppressed, exc_info=exc_info)


def _arity(func: Callable[..., Any], what: str) -> int:
    """How many arguments `func` is called with: 0 or 1 (by its signature; 1 if unknown)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 1
    if len(positional) > 1:
        raise ConfigError(f"{what} callable takes no argument or one, not {len(positional)}")
    return len(positional)


def _methods(methods: str | Iterable[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise ConfigError(
            f"methods must name HTTP methods ('POST', ['POST', 'PUT']), not {methods!r}"
        )
    found = frozenset(name.strip().upper() for name in names)
    # HEAD runs the GET endpoint (Starlette, Django), and a route's own limits count it with
    # GET: a limit on GET applies to HEAD too, or HEAD would be a way around it.
    return found | {"HEAD"} if "GET" in found else found

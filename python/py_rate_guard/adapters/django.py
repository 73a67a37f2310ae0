"""Django: `RateLimitMiddleware` (for `MIDDLEWARE`, sync and async), the `rate_limit(...)`
decorator (function views, class-based views and their methods), and the configuration from
`settings.RATE_GUARD` (a dict validated into `RateGuardConfig` when the middleware loads: a bad
one raises `ImproperlyConfigured` naming the field).

```python
# settings.py
MIDDLEWARE = [
    # ...
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "py_rate_guard.adapters.django.RateLimitMiddleware",
]
RATE_GUARD = {"global_rules": [{"limit": "100/minute"}], "redis_url": "redis://localhost:6379/0"}

# views.py
from py_rate_guard.adapters.django import rate_limit

@rate_limit(limit="5/minute")
def search(request): ...
```

The middleware decides each request once, when Django has resolved its view: the global rules
and the view's limits together (one store call, all-or-nothing), keyed by the URL pattern
(`items/<int:id>`), never the raw path. A request that resolves to no view (a 404, or one an
earlier middleware answered) is counted against the global rules when its response comes back.
Without the middleware, a decorated view decides its own limits.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from pydantic import ValidationError

from py_rate_guard import _native
from py_rate_guard.adapters._http import (
    Answer,
    EndpointRules,
    HttpGuard,
    Limit,
    LimitOptions,
    RequestRules,
    SoftDenial,
    check_together,
    covered,
    decorated,
    endpoint_rules,
    is_async,
    limit_rule,
    logger,
    mark_wrapper,
    user_id,
)
from py_rate_guard.exceptions import ConfigError
from py_rate_guard.models.config import RateGuardConfig, import_callable

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ALL", "UNSAFE", "DjangoRateGuard", "RateLimitMiddleware", "get_guard", "rate_limit"]

F = TypeVar("F", bound=Callable[..., Any])

ALL = None
"""`method=ALL` (the default): the limit applies to every method (django-ratelimit's `ALL`)."""

UNSAFE = ("DELETE", "PATCH", "POST", "PUT")
"""`method=UNSAFE`: the methods that change something (django-ratelimit's `UNSAFE`)."""

_UNSET: Any = object()

# What a request carries: the route rules decided for it so far, and the headers its response
# gets.
_DECIDED = "_rate_guard_decided"
_HEADERS = "_rate_guard_headers"


class DjangoRateGuard(HttpGuard):
    """The guard of `settings.RATE_GUARD` (see `get_guard()`); decides Django requests."""

    # -- how a Django request is read (`HttpGuard.adecide`/`decide` do the rest) ---------

    async def auser_of(self, source: HttpRequest) -> str | None:
        auser = getattr(source, "auser", None)
        if auser is not None:
            return user_id(await auser())
        return await sync_to_async(self.user_of)(source)

    def run_async(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return async_to_sync(func)(*args)

    def decide_view(self, request: HttpRequest, rules: RequestRules) -> Answer | None:
        """`HttpGuard.decide` of a Django request (WSGI, sync views); sets `request.limited`."""
        answer = self.decide(rules, request, _peer(request), _headers(request))
        _note_limited(request, answer)
        return answer

    async def adecide_view(self, request: HttpRequest, rules: RequestRules) -> Answer | None:
        """`HttpGuard.adecide` of a Django request (ASGI, async views); sets
        `request.limited`."""
        answer = await self.adecide(rules, request, _peer(request), _headers(request))
        _note_limited(request, answer)
        return answer

    # -- the answer to a denied request -------------------------------------------------

    def limited_response(self, request: HttpRequest, outcome: _native.Outcome) -> HttpResponseBase:
        """The answer to a denied request: the `limited_handler`'s (with the rate-limit headers
        it did not set) or the JSON 429. Raises the configuration's `exception_class` instead
        when there is one; an exception raised by the handler reaches Django too."""
        error = self.denial_error(outcome)
        if error is not None:
            raise error
        handler = self.config.limited_handler
        if handler is None:
            return self.default_response(outcome)
        response = handler(request, self.limited_exception(outcome))
        if inspect.isawaitable(response):
            response = async_to_sync(_awaited)(response)
        return self._handler_response(response, outcome)

    async def alimited_response(
        self, request: HttpRequest, outcome: _native.Outcome
    ) -> HttpResponseBase:
        """`limited_response` on the event loop (a sync handler runs in a thread)."""
        error = self.denial_error(outcome)
        if error is not None:
            raise error
        handler = self.config.limited_handler
        if handler is None:
            return self.default_response(outcome)
        call = handler if is_async(handler) else sync_to_async(handler)
        response = await call(request, self.limited_exception(outcome))
        return self._handler_response(response, outcome)

    def _handler_response(self, response: Any, outcome: _native.Outcome) -> HttpResponseBase:
        """What the `limited_handler` answered, with the rate-limit headers it did not set; the
        default answer (logged) when it did not return a response."""
        if isinstance(response, HttpResponseBase):
            set_headers(response, outcome.headers, keep_existing=True)
            return response
        logger.error("limited_handler returned %r, not an HttpResponse", type(response))
        return self.default_response(outcome)

    def default_response(self, outcome: _native.Outcome) -> HttpResponse:
        response = HttpResponse(
            outcome.body, status=outcome.status, content_type="application/json"
        )
        set_headers(response, outcome.headers)
        return response

    # -- decorated views deciding on their own ------------------------------------------

    def decorator_rules(
        self, request: HttpRequest | None, rules: EndpointRules, view: Callable[..., Any]
    ) -> RequestRules | None:
        """What a decorated view decides itself (its rules without the global ones); None
        when there is nothing to decide (the middleware did, the guard is off, the path is
        exempt)."""
        if request is None or not self.enabled:
            return None
        decided = getattr(request, _DECIDED, None)
        if covered(decided, rules) or self.is_exempt(request.path_info):
            return None
        rule_set = rules.rule_set
        setattr(
            request, _DECIDED, rule_set | decided if isinstance(decided, frozenset) else rule_set
        )
        return self.request_rules(
            _template(request, view),
            _handler_method(request, view),
            rules.rules,
            with_globals=False,
        )


_guard: DjangoRateGuard | None = None
_guard_lock = threading.Lock()


def get_guard() -> DjangoRateGuard:
    """The guard built from `settings.RATE_GUARD`, once per process (again when the setting
    changes, as under `override_settings`). Raises `ImproperlyConfigured` saying what is
    wrong with the setting."""
    global _guard
    guard = _guard
    if guard is None:
        with _guard_lock:
            if _guard is None:
                _guard = _build_guard()
            guard = _guard
    return guard


def _build_guard() -> DjangoRateGuard:
    raw = getattr(settings, "RATE_GUARD", None)
    if raw is None:
        raw = {}
    if isinstance(raw, RateGuardConfig):
        config = raw
    elif isinstance(raw, dict):
        try:
            config = RateGuardConfig(**raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'RATE_GUARD'}: {error['msg']}"
                for error in e.errors()
            )
            raise ImproperlyConfigured(f"settings.RATE_GUARD is invalid: {problems}") from None
    else:
        raise ImproperlyConfigured(
            f"settings.RATE_GUARD must be a dict (or a RateGuardConfig), not {type(raw).__name__}"
        )
    try:
        return DjangoRateGuard(config)
    except ConfigError as e:
        raise ImproperlyConfigured(f"settings.RATE_GUARD is invalid: {e}") from None


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _guard
    if setting == "RATE_GUARD":
        with _guard_lock:
            _guard = None


setting_changed.connect(_setting_changed, dispatch_uid="py_rate_guard.adapters.django")


class RateLimitMiddleware:
    """Decides each request once: the global rules and the limits of its view together (see
    the module's documentation). Put it after `AuthenticationMiddleware` when rules are keyed
    by `user`. Works under WSGI and ASGI."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        get_guard()  # a bad setting fails at start-up, not on the first request
        self.async_mode = iscoroutinefunction(get_response)
        self.process_view: Callable[..., Any]
        if self.async_mode:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view
        else:
            self.process_view = self._process_view

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        response = self.get_response(request)
        rules = self._start_unrouted(request)
        if rules is not None:
            guard = get_guard()
            outcome = guard.decide_view(request, rules)
            if _denied(outcome):
                return guard.limited_response(request, outcome)
            _keep_headers(request, outcome)
        return self._finish(request, response)

    async def __acall__(self, request: HttpRequest) -> Any:
        response = await self.get_response(request)
        rules = self._start_unrouted(request)
        if rules is not None:
            guard = get_guard()
            outcome = await guard.adecide_view(request, rules)
            if _denied(outcome):
                return await guard.alimited_response(request, outcome)
            _keep_headers(request, outcome)
        return self._finish(request, response)

    def _process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        rules = self._start(request, view)
        if rules is None:
            return None
        guard = get_guard()
        outcome = guard.decide_view(request, rules)
        if _denied(outcome):
            return guard.limited_response(request, outcome)
        _keep_headers(request, outcome)
        return None

    async def _aprocess_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        rules = self._start(request, view)
        if rules is None:
            return None
        guard = get_guard()
        outcome = await guard.adecide_view(request, rules)
        if _denied(outcome):
            return await guard.alimited_response(request, outcome)
        _keep_headers(request, outcome)
        return None

    @classmethod
    def _start_unrouted(cls, request: HttpRequest) -> RequestRules | None:
        """What a request that reached no view (a 404, or an earlier middleware answered) is
        decided against, when its response comes back: it still counts against the global
        rules. None when it was decided already or there is nothing to decide."""
        if getattr(request, _DECIDED, None) is not None:
            return None
        return cls._start(request, None)

    @staticmethod
    def _start(request: HttpRequest, view: Callable[..., Any] | None) -> RequestRules | None:
        """What `request` (going to `view`, if known) is decided against; marks it decided."""
        guard = get_guard()
        if not guard.enabled or guard.is_exempt(request.path_info):
            setattr(request, _DECIDED, frozenset())
            return None
        rules = None if view is None else _view_rules(guard, request, view)
        if rules is None:
            rules = guard.global_only
        setattr(request, _DECIDED, frozenset() if rules is None else rules.route_rules)
        return rules

    @staticmethod
    def _finish(request: HttpRequest, response: Any) -> Any:
        headers = getattr(request, _HEADERS, None)
        if headers and isinstance(response, HttpResponseBase):
            set_headers(response, headers)
        return response


def _denied(outcome: Answer | None) -> TypeGuard[_native.Outcome]:
    return outcome is not None and not outcome.allowed


def _note_limited(request: HttpRequest, answer: Answer | None) -> None:
    """`request.limited`, as django-ratelimit sets it: True once a `block=False` limit refused
    the request (a later decision never sets it back), else False."""
    limited = isinstance(answer, SoftDenial) or getattr(request, "limited", False) is True
    request.limited = limited  # type: ignore[attr-defined]


def _keep_headers(request: HttpRequest, outcome: Answer | None) -> None:
    """Keeps the rate-limit headers of an allowed request for its response."""
    if outcome is not None:
        setattr(request, _HEADERS, outcome.headers)


def rate_limit(
    limit: Any = _UNSET,
    *,
    rate: Any = _UNSET,
    group: str | None = None,
    method: str | Iterable[str] | None = ALL,
    **options: Unpack[LimitOptions],
) -> Callable[[F], F]:
    """Limits the decorated view to `limit` per `key` (default: per client address) on its URL
    pattern. Decorates a function view (sync or async), a class-based view (every method), or
    one method of it (`def get(self, request)`, or through `method_decorator`). Stacked
    decorators add limits decided together. A bad limit raises `ConfigError` at import.

    With django-ratelimit's conventions:

    - `limit` (or `rate`, its other name) is a rate string (`"5/m"`, `"100/hour"`), None (no
      limit), or a callable `rate(group, request)` (or its dotted path) that returns, for each
      request, a rate string, a `(count, seconds)` tuple or None;
    - `group` names a limit that every view declaring it shares (one quota); the rate
      callable receives it (without one: the view's dotted name);
    - `method` is the method or methods the limit applies to (`"POST"`, `["GET", "POST"]`,
      `UNSAFE`; `ALL` by default); other methods pass it;
    - `block=False` lets a request over the limit through: the view runs and reads
      `request.limited` (True when some limit of the request refused it).

    The other keywords (`LimitOptions`): `key`, `key_func`, `algorithm` (`"sliding_window"`),
    `cost` (1, or a callable of the request), `burst`, `name`, `shadow` (False),
    `exempt_when`, `fallback` (the rate used when the rate callable fails)."""
    source = _rate_source(limit, rate)
    fields = _django_options(dict(options), group=group, method=method)
    fixed = None if _is_rate_callable(source) else _limit(source, fields)
    by_group: dict[str, Limit] = {}

    def limit_of(view: Any) -> Limit:
        if fixed is not None:
            return fixed
        name = group if group is not None else _view_name(view)
        found = by_group.get(name)
        if found is None:
            found = by_group[name] = _limit(_GroupRate(source, name), fields, given="request")
        return found

    def decorate(view: F) -> F:
        try:
            if inspect.isclass(view):
                view_class: Any = view
                rule = limit_of(view_class)
                view_class.dispatch = decorated(None, view_class.dispatch, rule, _wrap)
                _check_handlers(view_class)
                return view
            return cast(F, decorated(None, view, limit_of(view), _wrap))
        except ConfigError as e:
            raise ConfigError(f"{e} (a scope is rate_limit's group)") from None

    return decorate


def _check_handlers(view_class: Any) -> None:
    """Raises `ConfigError` when the limits of the whole class-based view and those of one of
    its handlers (`get`, `post`, ...), decided together on a request, cannot be (two groups,
    two different rules of one name): at import, not on every request."""
    whole = endpoint_rules(view_class.dispatch, None)
    if whole is None:
        return
    for method in getattr(view_class, "http_method_names", ()):
        own = endpoint_rules(getattr(view_class, method, None), None)
        if own is not None:
            check_together((*whole.rules, *own.rules))


def _rate_source(limit: Any, rate: Any) -> Any:
    """The limit given as `limit` or `rate` (exactly one of them), a dotted path imported."""
    if (limit is _UNSET) == (rate is _UNSET):
        raise TypeError(
            "rate_limit() takes the limit once: as `limit` or as `rate` (django-ratelimit's"
            " name), not both"
            if limit is not _UNSET
            else "rate_limit() needs a limit (or rate)"
        )
    source = rate if limit is _UNSET else limit
    if isinstance(source, str) and "/" not in source and " per " not in source and "." in source:
        try:  # django-ratelimit's convention: a string with a dot names a rate callable
            return import_callable(source)
        except ValueError as e:
            raise ConfigError(f"invalid rate {source!r}: {e}") from None
    return source


def _is_rate_callable(source: Any) -> bool:
    return source is not None and not isinstance(source, str)


def _django_options(options: dict[str, Any], *, group: str | None, method: Any) -> dict[str, Any]:
    """The shared layer's keywords for django-ratelimit's `group` (`scope`) and `method`
    (`methods`)."""
    fields = dict(options)
    for ours, theirs, value, unset in (
        ("scope", "group", group, None),
        ("methods", "method", method, ALL),
    ):
        if value is unset:
            continue
        if fields.get(ours) is not None:
            raise TypeError(f"rate_limit() takes {theirs!r} or {ours!r}, not both")
        fields[ours] = list(value) if isinstance(value, (list, tuple)) else value
    return fields


def _limit(source: Any, fields: dict[str, Any], *, given: str = "key") -> Limit:
    return limit_rule(source, given=given, **fields)  # type: ignore[arg-type]


class _GroupRate:
    """django-ratelimit's rate callable `rate(group, request)`, as the shared layer calls a
    limit callable (with the request): its `(count, seconds)` tuples written as rate strings,
    which the engine parses. A value: equal for one callable and one group."""

    __slots__ = ("func", "group")

    def __init__(self, func: Callable[..., Any], group: str) -> None:
        self.func = func
        self.group = group

    def __call__(self, request: Any) -> Any:
        value = self.func(self.group, request)
        if inspect.isawaitable(value):
            return _arate_string(value)
        return _rate_string(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _GroupRate) and (self.func, self.group) == (
            other.func,
            other.group,
        )

    def __hash__(self) -> int:
        return hash((self.func, self.group))

    def __repr__(self) -> str:  # how the error log names the limit
        return f"{getattr(self.func, '__qualname__', repr(self.func))} (group {self.group!r})"


def _rate_string(value: Any) -> Any:
    """A `(count, seconds)` tuple as a rate string (`"5/60s"`); anything else as it is (the
    shared layer takes strings and None, and reports the rest)."""
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(part, int) and not isinstance(part, bool) for part in value)
    ):
        return f"{value[0]}/{value[1]}s"
    return value


async def _arate_string(value: Awaitable[Any]) -> Any:
    return _rate_string(await value)


def _view_name(view: Any) -> str:
    """django-ratelimit's default group: the view's module and qualified name."""
    while isinstance(view, functools.partial):
        view = view.func
    return f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', repr(view))}"


def _wrap(view: Callable[..., Any], rules: EndpointRules) -> Callable[..., Any]:
    if is_async(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await _adecide_then(view, rules, args, kwargs)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            if args and getattr(type(args[0]), "view_is_async", False) is True:
                # The `dispatch` of an async class-based view returns a coroutine.
                return _adecide_then(view, rules, args, kwargs)
            request = _request(args, kwargs)
            guard = get_guard()
            request_rules = guard.decorator_rules(request, rules, view)
            outcome = None
            if request is not None and not hasattr(request, "limited"):
                request.limited = False  # type: ignore[attr-defined]
            if request_rules is not None and request is not None:
                outcome = guard.decide_view(request, request_rules)
                if _denied(outcome):
                    return guard.limited_response(request, outcome)
            return _with_headers(view(*args, **kwargs), outcome)

        wrapper = sync_wrapper
    mark_wrapper(wrapper, view, rules)
    return wrapper


async def _adecide_then(
    view: Callable[..., Any], rules: EndpointRules, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = _request(args, kwargs)
    guard = get_guard()
    request_rules = guard.decorator_rules(request, rules, view)
    outcome = None
    if request is not None and not hasattr(request, "limited"):
        request.limited = False  # type: ignore[attr-defined]
    if request_rules is not None and request is not None:
        outcome = await guard.adecide_view(request, request_rules)
        if _denied(outcome):
            return await guard.alimited_response(request, outcome)
    response = view(*args, **kwargs)
    if inspect.isawaitable(response):
        response = await response
    return _with_headers(response, outcome)


def _with_headers(response: Any, outcome: Answer | None) -> Any:
    """The response of a decorated view, with the rate-limit headers of its decision."""
    if outcome is not None and isinstance(response, HttpResponseBase):
        set_headers(response, outcome.headers)
    return response


def _view_rules(
    guard: DjangoRateGuard, request: HttpRequest, view: Callable[..., Any]
) -> RequestRules | None:
    """What a request to `view` is decided against: its rules (those of a class-based view's
    method for this request's method included) with the global rules; None when it has none."""
    rules: list[Limit] = []
    own = endpoint_rules(view, None)
    if own is not None:
        rules.extend(own.rules)
    method = None
    view_class = getattr(view, "view_class", None)
    if view_class is not None and request.method:
        handler = getattr(view_class, request.method.lower(), None)
        if handler is None and request.method == "HEAD":
            handler = getattr(view_class, "get", None)
        per_method = endpoint_rules(handler, None)
        if per_method is not None:
            rules.extend(per_method.rules)
            method = request.method
    if not rules:
        return None
    return guard.request_rules(_template(request, view), method, list(dict.fromkeys(rules)))


def _handler_method(request: HttpRequest, view: Callable[..., Any]) -> str | None:
    """The request's method when `view` is a class-based view's handler of it (`get`, `post`,
    `get` for HEAD), whose limits count apart from the other handlers' as they do under the
    middleware; None for a whole view."""
    method = request.method
    name = getattr(view, "__name__", None)
    owner = str(getattr(view, "__qualname__", "")).rpartition(".")[0]
    if not method or not isinstance(name, str) or not owner or owner.endswith("<locals>"):
        return None  # not defined in a class: a function view, whatever its name
    if name == method.lower() or (method == "HEAD" and name == "get"):
        return method
    return None


def set_headers(
    response: HttpResponseBase, headers: list[tuple[bytes, bytes]], *, keep_existing: bool = False
) -> None:
    """Sets the rate-limit `headers` on a Django response (several values of one field are
    joined by commas); with `keep_existing`, not those it already has."""
    joined: dict[str, str] = {}
    for name, value in headers:
        field = name.decode("latin-1")
        text = value.decode("latin-1")
        joined[field] = f"{joined[field]}, {text}" if field in joined else text
    for field, text in joined.items():
        if keep_existing and field in response.headers:
            continue
        response.headers[field] = text


def _template(request: HttpRequest, view: Callable[..., Any]) -> str:
    """The URL pattern of the view serving `request` (`/items/<int:id>`); the view's qualified
    name when Django did not resolve one."""
    match = request.resolver_match
    route = getattr(match, "route", None)
    if route:
        return "/" + str(route).lstrip("/^")
    return f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', '')}"


def _peer(request: HttpRequest) -> str | None:
    peer = request.META.get("REMOTE_ADDR")
    return str(peer) if peer else None


def _headers(request: HttpRequest) -> list[tuple[str, str]]:
    """The request's headers, as the WSGI/ASGI handler decoded them (latin-1, which the native
    front reads back as the raw bytes)."""
    return [
        (name[5:].replace("_", "-"), value)
        for name, value in request.META.items()
        if name.startswith("HTTP_") and isinstance(value, str)
    ]


def _request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HttpRequest | None:
    for value in args:
        if isinstance(value, HttpRequest):
            return value
    value = kwargs.get("request")
    return value if isinstance(value, HttpRequest) else None


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value

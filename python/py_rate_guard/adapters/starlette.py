"""Starlette: `StarletteRateGuard`, its `@guard.limit(...)` decorator, and a pure-ASGI
`RateLimitMiddleware` (not `BaseHTTPMiddleware`: streaming responses pass through untouched).

```python
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from py_rate_guard.adapters.starlette import RateLimitMiddleware, StarletteRateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

guard = StarletteRateGuard(RateGuardConfig(global_rules=[RateLimitRule(limit="100/minute")]))

@guard.limit("5/minute")
async def search(request):
    return JSONResponse({"results": []})

app = Starlette(
    routes=[Route("/search", search)],
    middleware=[Middleware(RateLimitMiddleware, guard=guard)],
)
```

With the middleware, every request is decided once, before the router runs: the global rules
and the limits of the route it goes to, together (one store call, all-or-nothing). Without it,
a decorated endpoint decides its own limits. WebSocket connections are decided when they open.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from anyio import from_thread
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from py_rate_guard import _native
from py_rate_guard.adapters._http import (
    MARK,
    Answer,
    EndpointRules,
    HttpGuard,
    LimitOptions,
    RequestRules,
    covered,
    decorated,
    denied,
    is_async,
    mark_wrapper,
    user_id,
)
from py_rate_guard.adapters._limits import RateSource
from py_rate_guard.adapters._routes import RouteTable, route_template
from py_rate_guard.models.config import RateGuardConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RateLimitMiddleware", "StarletteRateGuard"]

logger = logging.getLogger("py_rate_guard")

F = TypeVar("F", bound=Callable[..., Any])
Split = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]
"""What a decorator's wrapper finds among its arguments: the connection, and the response to
put the rate-limit headers on when the endpoint returns a plain value (FastAPI)."""

_POLICY_VIOLATION = 1008


class StarletteRateGuard(HttpGuard):
    """A guard for Starlette applications: `@guard.limit(...)` on endpoints, and
    `RateLimitMiddleware(app, guard=guard)` for the global rules and one decision per request.
    It is a `RateGuard` too (`guard.hit(...)` decides by hand)."""

    def __init__(self, config: RateGuardConfig | None = None) -> None:
        super().__init__(config)
        self._decorator_rules: dict[tuple[int, int, EndpointRules], RequestRules] = {}

    def limit(self, limit: RateSource, **options: Unpack[LimitOptions]) -> Callable[[F], F]:
        """Limits the decorated endpoint (a function taking the request, or a method of an
        `HTTPEndpoint`, sync or async) to `limit` per `key` (default: per client address), on
        its route (the path template, never the raw URL). Stacked decorators add limits that
        are decided together.

        `limit` is a rate string, None (no limit), or a callable (sync or async) called for
        each request, as slowapi calls it: with the request's key when it takes one argument,
        with nothing when it takes none; it returns a rate string or None.

        Keywords (`LimitOptions`): `key`, `key_func`, `algorithm` (`"sliding_window"`),
        `burst`, `name`, `shadow` (False), as in `RateLimitRule`; `cost` (an int, or a
        callable given the request), `exempt_when` (a callable given nothing or the request:
        True leaves the limit out), `methods` (the methods it applies to), `block` (False: a
        denied request goes on and reads `request.state.rate_limit`), `fallback` (the rate
        used when the limit callable fails), `scope` (see `shared_limit`)."""
        rule = self.rule(limit, **options)

        def decorate(endpoint: F) -> F:
            return cast(F, decorated(self, endpoint, rule, self._wrap))

        return decorate

    def shared_limit(self, limit: RateSource, scope: str, **options: Any) -> Callable[[F], F]:
        """`limit(...)` counted against one quota named `scope` by every endpoint that declares
        it (slowapi's `shared_limit`): the route's path and method are not part of its keys, so
        a Rust service declaring the scope shares it too."""
        return self.limit(limit, scope=scope, **options)

    def _wrap(self, endpoint: Callable[..., Any], rules: EndpointRules) -> Callable[..., Any]:
        wrapper = self._deciding_wrapper(endpoint, rules, _connection_only)
        mark_wrapper(wrapper, endpoint, rules)
        return wrapper

    def _deciding_wrapper(
        self, endpoint: Callable[..., Any], rules: EndpointRules, split: Split
    ) -> Callable[..., Any]:
        """The wrapper (async or sync, as `endpoint` is) that decides `rules` before calling
        `endpoint`, unless the middleware decided them: a denied request gets the limited
        answer, an allowed one the rate-limit headers on the endpoint's response (or on the
        response `split` found among the arguments, which FastAPI merges into its answer)."""
        if is_async(endpoint):

            @functools.wraps(endpoint)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                connection, response = split(args, kwargs)
                if connection is not None and covered(connection.scope.get(MARK), rules):
                    return await endpoint(*args, **kwargs)  # the middleware decided
                outcome = await self.adecide_endpoint(connection, rules, endpoint)
                if denied(outcome):
                    return await self.limited_response(connection, outcome)
                result = await endpoint(*args, **kwargs)
                if outcome is not None:
                    put_headers(result, response, outcome.headers)
                return result

        else:

            @functools.wraps(endpoint)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                connection, response = split(args, kwargs)
                outcome = self.decide_endpoint(connection, rules, endpoint)
                if denied(outcome):
                    return self.limited_response_sync(connection, outcome)
                result = endpoint(*args, **kwargs)
                if outcome is not None:
                    put_headers(result, response, outcome.headers)
                return result

        return wrapper

    # -- how a Starlette request is read ------------------------------------------------

    def key_request(self, source: HTTPConnection | Scope) -> HTTPConnection:
        """The connection the `key_func`s receive: the endpoint's own, or one made from the
        scope (the middleware runs before any is made)."""
        if isinstance(source, HTTPConnection):
            return source
        return Request(source) if source["type"] == "http" else HTTPConnection(source)

    def user_of(self, source: HTTPConnection | Scope) -> str | None:
        return scope_user(source.scope if isinstance(source, HTTPConnection) else source)

    def method_of(self, source: HTTPConnection | Scope) -> str | None:
        scope = source.scope if isinstance(source, HTTPConnection) else source
        method = scope.get("method")
        return method if isinstance(method, str) else None

    def run_async(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return from_thread.run(func, *args)  # sync endpoints run in the thread pool

    # -- a decorated endpoint deciding its own rules ------------------------------------

    def _endpoint_request_rules(
        self,
        connection: HTTPConnection | None,
        rules: EndpointRules,
        endpoint: Callable[..., Any],
    ) -> RequestRules | None:
        """What a decorated endpoint decides itself (None: nothing to decide)."""
        if connection is None or not self.config.enabled:
            return None
        scope = connection.scope
        decided = scope.get(MARK)
        if decided is not None and covered(decided, rules):
            return None  # the middleware decided this route's rules with the global rules
        if self.exempting and self.is_exempt(route_path(scope)):
            return None
        scope[MARK] = rules.rule_set | decided if isinstance(decided, frozenset) else rules.rule_set
        # Per route object (routes live as long as the application): no template to rebuild.
        key = (id(scope.get("route")), id(endpoint), rules)
        found = self._decorator_rules.get(key)
        if found is None:
            found = self.request_rules(
                route_template(scope, endpoint), None, rules.rules, with_globals=False
            )
            if len(self._decorator_rules) >= 4096:
                self._decorator_rules.clear()
            self._decorator_rules[key] = found
        return found

    async def adecide_endpoint(
        self,
        connection: HTTPConnection | None,
        rules: EndpointRules,
        endpoint: Callable[..., Any],
    ) -> Answer | None:
        """The outcome of a decorated endpoint deciding its own rules; None when there is
        nothing to decide (the middleware did, the guard is off, the path is exempt). Its
        decision is kept on `request.state.rate_limit`."""
        request_rules = self._endpoint_request_rules(connection, rules, endpoint)
        if request_rules is None or connection is None:
            return None
        scope = connection.scope
        client, headers = scope.get("client"), scope["headers"]
        answer = await self.adecide(request_rules, connection, client, headers)
        keep_decision(scope, answer)
        return answer

    def decide_endpoint(
        self,
        connection: HTTPConnection | None,
        rules: EndpointRules,
        endpoint: Callable[..., Any],
    ) -> Answer | None:
        """`adecide_endpoint` for a sync endpoint (running in the thread pool)."""
        request_rules = self._endpoint_request_rules(connection, rules, endpoint)
        if request_rules is None or connection is None:
            return None
        scope = connection.scope
        answer = self.decide(request_rules, connection, scope.get("client"), scope["headers"])
        keep_decision(scope, answer)
        return answer

    # -- the answer to a denied request -------------------------------------------------

    def default_response(self, outcome: _native.Outcome) -> Response:
        response = Response(outcome.body, status_code=outcome.status)
        response.raw_headers.extend(outcome.headers)  # the body's content-type included
        return response

    async def limited_response(
        self, connection: HTTPConnection | None, outcome: _native.Outcome
    ) -> Response | None:
        """What a denied request gets: the `limited_handler`'s response (with the rate-limit
        headers it did not set) or the JSON 429. A WebSocket is closed instead (None). Raises
        the configuration's `exception_class` instead, for the application's exception
        handlers to answer; an exception raised by the handler is raised too."""
        if isinstance(connection, WebSocket):
            await connection.close(code=_POLICY_VIOLATION)
            return None
        error = self.denial_error(outcome)
        if error is not None:
            raise error
        handler = self.config.limited_handler
        if handler is not None and connection is not None:
            # An exception the handler raises reaches the framework (its handlers answer).
            response = handler(connection, self.limited_exception(outcome))
            if inspect.isawaitable(response):
                response = await response
            if isinstance(response, Response):
                add_raw_headers(response, outcome.headers, keep_existing=True)
                return response
            logger.error("limited_handler returned %r, not a Response", type(response))
        return self.default_response(outcome)

    def limited_response_sync(
        self, connection: HTTPConnection | None, outcome: _native.Outcome
    ) -> Response | None:
        """`limited_response` from a sync endpoint (a thread of the thread pool)."""
        return from_thread.run(self.limited_response, connection, outcome)


class RateLimitMiddleware:
    """Decides every request once, before the router runs: the global rules and the limits of
    the route the request goes to, together. Denied requests get a 429 (or the configured
    handler's response); allowed ones get the rate-limit headers on their response, whose body
    passes through untouched. WebSocket connections are decided when they open.

    `app.add_middleware(RateLimitMiddleware, guard=guard)`.
    """

    def __init__(self, app: ASGIApp, guard: StarletteRateGuard) -> None:
        if not isinstance(guard, StarletteRateGuard):
            raise TypeError(
                "guard must be a StarletteRateGuard or a FastAPIRateGuard,"
                f" not {type(guard).__name__}"
            )
        self.app = app
        self.guard = guard
        self._table: RouteTable | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Runs on every request: kept flat.
        kind = scope["type"]
        guard = self.guard
        config = guard.config
        if kind != "http":
            if kind == "lifespan":
                await self.app(scope, self._on_startup(scope, receive), send)
                return
            if kind != "websocket" or not config.limit_websockets:
                await self.app(scope, receive, send)
                return
        if not config.enabled or (guard.exempting and guard.is_exempt(route_path(scope))):
            await self.app(scope, receive, send)
            return
        table = self._table
        app = scope.get("app")
        if table is None or not table.current(app):
            table = self._table = RouteTable(guard, app)
        if table.limited:
            rules = self._find(table, scope)
            if rules is None:
                rules = guard.global_only
                if rules is None:
                    await self.app(scope, receive, send)
                    return
            scope[MARK] = rules.route_rules  # what decorators need not decide again
        else:
            rules = guard.global_only
            if rules is None:
                await self.app(scope, receive, send)
                return
        outcome = await guard.adecide(rules, scope, scope.get("client"), scope["headers"])
        if outcome is None:
            await self.app(scope, receive, send)
            return
        if not outcome.allowed:  # a soft denial (block=False) is allowed: it goes on
            await self._deny(scope, receive, send, cast(_native.Outcome, outcome))
            return
        keep_decision(scope, outcome)
        headers = outcome.headers
        if headers and kind == "http":
            await self.app(scope, receive, _with_headers(send, headers))
        else:
            await self.app(scope, receive, send)

    def _on_startup(self, scope: Scope, receive: Receive) -> Receive:
        """`receive` that reads the application's routes when it starts, so that a limit that
        cannot be built fails the start-up, naming what is wrong."""

        async def receive_startup() -> Message:
            message = await receive()
            app = scope.get("app")
            if message["type"] == "lifespan.startup" and app is not None:
                self._table = RouteTable(self.guard, app, strict=True)
            return message

        return receive_startup

    @staticmethod
    def _find(table: RouteTable, scope: Scope) -> RequestRules | None:
        try:
            return table.find(scope)
        except Exception:
            logger.exception(
                "cannot match the request to a route; its limits are decided by"
                " their decorators alone"
            )
            return None

    async def _deny(
        self, scope: Scope, receive: Receive, send: Send, outcome: _native.Outcome
    ) -> None:
        guard = self.guard
        if scope["type"] == "websocket":
            message = await receive()  # websocket.connect: answer it with a denial
            if message["type"] != "websocket.connect":
                return
            if "websocket.http.response" in scope.get("extensions", {}):
                await guard.default_response(outcome)(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
            return
        config = guard.config
        if config.limited_handler is None and config.exception_class is None:
            body = outcome.body  # its headers include its content-type
            headers = [(b"content-length", str(len(body)).encode()), *outcome.headers]
            await send(
                {"type": "http.response.start", "status": outcome.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        try:
            response = await guard.limited_response(Request(scope, receive), outcome)
        except Exception as e:
            # Raised on purpose (exception_class, or the limited_handler's): the application's
            # exception handlers answer, as they would have had the endpoint raised it.
            await _answer_exception(scope, receive, send, e)
            return
        if response is not None:
            await response(scope, receive, send)


async def _answer_exception(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    """Answers `error` with the exception handlers of the application (`scope["app"]`), which
    the middleware runs outside of; an error none of them handles goes on up to the server
    error middleware, as any exception raised in a middleware."""

    async def raise_error(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    handlers = getattr(scope.get("app"), "exception_handlers", None)
    await ExceptionMiddleware(raise_error, handlers=dict(handlers or {}))(scope, receive, send)


def keep_decision(scope: Scope, answer: Answer | None) -> None:
    """Keeps the decision of a request where its endpoint reads it: `request.state.rate_limit`
    (a `Decision`; `.limited` is True after a soft denial, by a `block=False` limit)."""
    decision = None if answer is None else answer.decision
    if decision is None:
        return
    state = scope.get("state")
    if state is None:
        scope["state"] = {"rate_limit": decision}
    elif isinstance(state, dict):
        state["rate_limit"] = decision


def add_raw_headers(
    response: Any, headers: list[tuple[bytes, bytes]], *, keep_existing: bool = False
) -> None:
    """Appends the rate-limit `headers` to a Starlette `response` (anything else is left
    alone); with `keep_existing`, not those it already has."""
    raw = getattr(response, "raw_headers", None)
    if not headers or not isinstance(raw, list):
        return
    if keep_existing:
        present = {name.lower() for name, _ in raw}
        headers = [(name, value) for name, value in headers if name.lower() not in present]
    raw.extend(headers)


def put_headers(result: Any, response: Any, headers: list[tuple[bytes, bytes]]) -> None:
    """The rate-limit headers go on the endpoint's own `Response`, or on the `response` that
    FastAPI merges into the response it builds from a returned value."""
    if isinstance(response, Response) and not isinstance(result, Response):
        response.raw_headers.extend(headers)
    else:
        add_raw_headers(result, headers)


def scope_user(scope: Scope) -> str | None:
    """The user of a request: `scope["user"]` (Starlette's `AuthenticationMiddleware`) or
    `request.state.user`."""
    user = scope.get("user")
    if user is None:
        state = scope.get("state")
        user = state.get("user") if isinstance(state, dict) else getattr(state, "user", None)
    return user_id(user)


def route_path(scope: Scope) -> str:
    """The path the application routes (without the `root_path` it is mounted under), which
    `exempt_paths` name."""
    path: str = scope.get("path", "")
    root = scope.get("root_path")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _connection_only(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, None]:
    return _connection(args, kwargs), None


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection | None:
    for value in args:
        if isinstance(value, HTTPConnection):
            return value
    for value in kwargs.values():
        if isinstance(value, HTTPConnection):
            return value
    return None


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    # A plain function handing back `send`'s awaitable: no coroutine of its own per message.
    def send_with_headers(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        return send(message)

    return send_with_headers

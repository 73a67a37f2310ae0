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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from anyio import from_thread
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from py_rate_guard import _native
from py_rate_guard.adapters._http import (
    MARK,
    HttpGuard,
    RouteLimit,
    Target,
    covered,
    decorated,
    is_async,
    mark_wrapper,
    user_id,
)
from py_rate_guard.adapters._routes import RouteTable, route_template
from py_rate_guard.models.config import Algorithm, KeyFunc, RateGuardConfig

__all__ = ["RateLimitMiddleware", "StarletteRateGuard"]

logger = logging.getLogger("py_rate_guard")

F = TypeVar("F", bound=Callable[..., Any])

_POLICY_VIOLATION = 1008


class StarletteRateGuard(HttpGuard):
    """A guard for Starlette applications: `@guard.limit(...)` on endpoints, and
    `RateLimitMiddleware(app, guard=guard)` for the global rules and one decision per request.
    It is a `RateGuard` too (`guard.hit(...)` decides by hand)."""

    def __init__(self, config: RateGuardConfig | None = None) -> None:
        super().__init__(config)
        self._alone_targets: dict[tuple[int, int, RouteLimit], Target] = {}

    def limit(
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
    ) -> Callable[[F], F]:
        """Limits the decorated endpoint (a function taking the request, or a method of an
        `HTTPEndpoint`, sync or async) to `limit` per `key` (default: per client address), on
        its route (the path template, never the raw URL). Stacked decorators add limits that
        are decided together."""
        rule = self.rule(
            limit,
            key=key,
            key_func=key_func,
            algorithm=algorithm,
            cost=cost,
            burst=burst,
            name=name,
            shadow=shadow,
        )

        def decorate(endpoint: F) -> F:
            return cast(F, decorated(self, endpoint, rule, self._wrap))

        return decorate

    def _wrap(self, endpoint: Callable[..., Any], limit: RouteLimit) -> Callable[..., Any]:
        if is_async(endpoint):

            @functools.wraps(endpoint)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                connection = _connection(args, kwargs)
                outcome = await self.endpoint_outcome(connection, limit, endpoint)
                if outcome is not None and not outcome.allowed:
                    return await self.limited_response(connection, outcome)
                response = await endpoint(*args, **kwargs)
                if outcome is not None:
                    add_headers(response, outcome.headers)
                return response

        else:

            @functools.wraps(endpoint)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                connection = _connection(args, kwargs)
                outcome = self.endpoint_outcome_sync(connection, limit, endpoint)
                if outcome is not None and not outcome.allowed:
                    return self.limited_response_sync(connection, outcome)
                response = endpoint(*args, **kwargs)
                if outcome is not None:
                    add_headers(response, outcome.headers)
                return response

        mark_wrapper(wrapper, endpoint, limit)
        return wrapper

    # -- one request --------------------------------------------------------------------

    def _alone_target(
        self, connection: HTTPConnection | None, limit: RouteLimit, endpoint: Callable[..., Any]
    ) -> Target | None:
        """The target a decorated endpoint decides itself (None: nothing to decide)."""
        if connection is None or not self.config.enabled:
            return None
        scope = connection.scope
        decided = scope.get(MARK)
        if decided is not None and covered(decided, limit):
            return None  # the middleware decided this route's limits with the global rules
        if self.exempting and self.is_exempt(route_path(scope)):
            return None
        scope[MARK] = limit.rule_set | decided if isinstance(decided, frozenset) else limit.rule_set
        # Per route object (routes live as long as the application): no template to rebuild.
        key = (id(scope.get("route")), id(endpoint), limit)
        target = self._alone_targets.get(key)
        if target is None:
            target = self.target(route_template(scope, endpoint), None, limit.rules, alone=True)
            if len(self._alone_targets) >= 4096:
                self._alone_targets.clear()
            self._alone_targets[key] = target
        return target

    async def endpoint_outcome(
        self, connection: HTTPConnection | None, limit: RouteLimit, endpoint: Callable[..., Any]
    ) -> _native.Outcome | None:
        """The outcome of a decorated endpoint deciding its own limits; None when there is
        nothing to decide (the middleware did, the guard is off, the path is exempt)."""
        target = self._alone_target(connection, limit, endpoint)
        if target is None or connection is None:
            return None
        scope = connection.scope
        if not target.simple:
            return await self.adecide_scope(scope, target, connection, alone=True)
        try:
            outcome = await self._route_front.adecide_request(
                self._guard, scope.get("client"), scope["headers"], target.native
            )
        except Exception:
            logger.exception("rate limiter failed; the request is let through")
            return None
        if target.shadow or not outcome.allowed:
            self.log(outcome, target)
        return outcome

    def endpoint_outcome_sync(
        self, connection: HTTPConnection | None, limit: RouteLimit, endpoint: Callable[..., Any]
    ) -> _native.Outcome | None:
        """`endpoint_outcome` for a sync endpoint (running in the thread pool)."""
        target = self._alone_target(connection, limit, endpoint)
        if target is None or connection is None:
            return None
        scope = connection.scope
        custom = target.custom_keys(connection, from_thread.run) if target.key_funcs else None
        user = scope_user(scope) if target.needs_user else None
        return self.decide(
            target, _peer(scope), scope["headers"], user=user, custom=custom, alone=True
        )

    async def adecide_scope(
        self,
        scope: Scope,
        target: Target,
        connection: HTTPConnection | None = None,
        *,
        alone: bool = False,
    ) -> _native.Outcome | None:
        """Decides the request of `scope` against `target` (None: the limiter failed, which
        is logged, and the request goes through)."""
        custom = None
        if target.key_funcs:
            if connection is None:
                connection = Request(scope) if scope["type"] == "http" else HTTPConnection(scope)
            custom = await target.acustom_keys(connection)
        user = scope_user(scope) if target.needs_user else None
        front = self._route_front if alone else self._front
        try:  # on every request: `HttpGuard.adecide` inlined, one coroutine less
            outcome = await front.adecide_request(
                self._guard,
                scope.get("client"),
                scope["headers"],
                target.native,
                user=user,
                custom=custom,
            )
        except Exception:
            logger.exception("rate limiter failed; the request is let through")
            return None
        if target.shadow or not outcome.allowed:
            self.log(outcome, target)
        return outcome

    # -- the answer to a denied request -------------------------------------------------

    def default_response(self, outcome: _native.Outcome) -> Response:
        response = Response(outcome.body, status_code=outcome.status)
        response.raw_headers.extend(outcome.headers)  # the body's content-type included
        return response

    async def limited_response(
        self, connection: HTTPConnection | None, outcome: _native.Outcome
    ) -> Response | None:
        """What a denied request gets: the `limited_handler`'s response (with the rate-limit
        headers it did not set) or the JSON 429. A WebSocket is closed instead (None)."""
        if isinstance(connection, WebSocket):
            await connection.close(code=_POLICY_VIOLATION)
            return None
        handler = self.config.limited_handler
        if handler is not None and connection is not None:
            try:
                response = handler(connection, self.limited_exception(outcome))
                if inspect.isawaitable(response):
                    response = await response
            except Exception:
                logger.exception("limited_handler failed; the default 429 is sent")
            else:
                if isinstance(response, Response):
                    add_headers(response, outcome.headers, keep_existing=True)
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
        # Runs on every request: kept flat, with the common case (no key_func, no user key)
        # calling the native front directly.
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
            target = self._find(table, scope)
            if target is None:
                target = guard.globals_target
                if target is None:
                    await self.app(scope, receive, send)
                    return
            scope[MARK] = target.route_rules  # what decorators need not decide again
        else:
            target = guard.globals_target
            if target is None:
                await self.app(scope, receive, send)
                return
        if target.simple:
            try:  # one native call: the keys, the decision, the answer's headers
                outcome = await guard.front.adecide_request(
                    guard.native, scope.get("client"), scope["headers"], target.native
                )
            except Exception:
                logger.exception("rate limiter failed; the request is let through")
                await self.app(scope, receive, send)
                return
            allowed = outcome.allowed
            if target.shadow or not allowed:
                guard.log(outcome, target)
        else:
            decided = await guard.adecide_scope(scope, target)
            if decided is None:
                await self.app(scope, receive, send)
                return
            outcome, allowed = decided, decided.allowed
        if not allowed:
            await self._deny(scope, receive, send, outcome)
            return
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
    def _find(table: RouteTable, scope: Scope) -> Target | None:
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
        if guard.config.limited_handler is None:
            body = outcome.body  # its headers include its content-type
            headers = [(b"content-length", str(len(body)).encode()), *outcome.headers]
            await send(
                {"type": "http.response.start", "status": outcome.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        response = await guard.limited_response(Request(scope, receive), outcome)
        if response is not None:
            await response(scope, receive, send)


def add_headers(
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


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


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

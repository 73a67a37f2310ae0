"""The Starlette adapter through Starlette's test client: the pure-ASGI middleware (streaming
untouched, WebSockets decided when they open, mounts), the decorator on functions and
`HTTPEndpoint` methods, sync and async."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from py_rate_guard.adapters.starlette import RateLimitMiddleware, StarletteRateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PEER = ("203.0.113.7", 50000)


def make_guard(**fields: Any) -> StarletteRateGuard:
    return StarletteRateGuard(RateGuardConfig(key_prefix=f"t{uuid.uuid4().hex[:12]}", **fields))


def app_with(guard: StarletteRateGuard, routes: list[Any], **kwargs: Any) -> Starlette:
    middleware = [*kwargs.pop("middleware", []), Middleware(RateLimitMiddleware, guard=guard)]
    return Starlette(routes=routes, middleware=middleware, **kwargs)


def statuses(c: TestClient, path: str, n: int) -> list[int]:
    return [c.get(path).status_code for _ in range(n)]


def test_middleware_decides_global_and_route_limits_once() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="10/minute")])

    @guard.limit("3/minute")
    async def search(request: Request) -> Response:
        return JSONResponse({"q": request.query_params.get("q")})

    async def home(request: Request) -> Response:
        return PlainTextResponse("home")

    c = TestClient(app_with(guard, [Route("/search", search), Route("/", home)]), client=PEER)
    r = c.get("/search", params={"q": "x"})
    assert (r.json(), r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == (
        {"q": "x"},
        "3",
        "2",
    )
    assert statuses(c, "/search", 3) == [200, 200, 429]
    # 3 admitted requests so far used the global quota of 10: the denied one did not.
    assert c.get("/").headers["x-ratelimit-remaining"] == "6"


def test_streaming_responses_pass_through_untouched() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="5/minute")])
    chunks = [b"first,", b"second,", b"x" * 100_000, b"last"]

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream")

    sent: list[dict[str, Any]] = []

    def recorder(app: Any) -> Any:
        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            async def keep(message: dict[str, Any]) -> None:
                sent.append(message)
                await send(message)

            await app(scope, receive, keep)

        return record

    app = app_with(guard, [Route("/stream", stream)])
    c = TestClient(recorder(app), client=PEER)
    r = c.get("/stream")
    assert r.content == b"".join(chunks)
    assert r.headers["x-ratelimit-remaining"] == "4"
    bodies = [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]
    assert [b for b in bodies if b] == chunks  # chunk by chunk, not buffered


def items_endpoint(guard: StarletteRateGuard) -> type[HTTPEndpoint]:
    class Items(HTTPEndpoint):
        @guard.limit("1/minute")
        async def get(self, request: Request) -> Response:
            return PlainTextResponse("list")

        @guard.limit("2/minute")
        def post(self, request: Request) -> Response:  # sync: runs in the thread pool
            return PlainTextResponse("added")

    return Items


@pytest.mark.parametrize("middleware", [True, False])
def test_http_endpoint_methods_carry_their_own_limits(middleware: bool) -> None:
    guard = make_guard()
    routes = [Route("/items", items_endpoint(guard))]
    app = app_with(guard, routes) if middleware else Starlette(routes=routes)
    c = TestClient(app, client=PEER)
    r = c.post("/items")
    assert (r.text, r.headers["x-ratelimit-limit"]) == ("added", "2")
    assert [c.post("/items").status_code, c.post("/items").status_code] == [200, 429]
    assert [c.get("/items").status_code, c.get("/items").status_code] == [200, 429]
    c2 = TestClient(app, client=("198.51.100.2", 1))
    assert c2.get("/items").status_code == 200  # another client, its own bucket


def test_decorator_alone_sync_and_async_functions() -> None:
    guard = make_guard()

    @guard.limit("1/minute")
    def sync_page(request: Request) -> Response:
        return PlainTextResponse("sync")

    @guard.limit("1/minute")
    async def async_page(request: Request) -> Response:
        return PlainTextResponse("async")

    app = Starlette(routes=[Route("/s", sync_page), Route("/a", async_page)])
    c = TestClient(app, client=PEER)
    for path in ("/s", "/a"):
        r = c.get(path)
        assert (r.status_code, r.headers["x-ratelimit-remaining"]) == (200, "0")
        r = c.get(path)
        assert r.status_code == 429
        assert r.json() == {"detail": "Rate limit exceeded: 1 per 1 minute"}


def test_mounted_routes_are_keyed_by_their_full_template() -> None:
    guard = make_guard()

    @guard.limit("2/minute")
    async def user(request: Request) -> Response:
        return JSONResponse(request.path_params)

    inner = Starlette(routes=[Route("/users/{uid:int}", user)])
    app = app_with(guard, [Mount("/api/{version}", app=inner)])
    c = TestClient(app, client=PEER)
    r = c.get("/api/v1/users/1")
    assert (r.json(), r.headers["x-ratelimit-remaining"]) == ({"version": "v1", "uid": 1}, "1")
    assert [c.get(p).status_code for p in ("/api/v2/users/2", "/api/v1/users/3")] == [200, 429]


def test_websockets_are_decided_when_they_open() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="2/minute")])

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    c = TestClient(app_with(guard, [WebSocketRoute("/ws", echo)]), client=PEER)
    for _ in range(2):
        with c.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
    # The test client speaks the WebSocket Denial Response extension: a 429 with its headers.
    with pytest.raises(WebSocketDenialResponse) as denial, c.websocket_connect("/ws"):
        pass
    assert denial.value.status_code == 429
    assert int(denial.value.headers["retry-after"]) >= 1


def test_websockets_without_the_denial_extension_are_closed() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute")])

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    app = app_with(guard, [WebSocketRoute("/ws", echo)])

    async def without_extension(scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "extensions": {}}
        await app(scope, receive, send)

    c = TestClient(without_extension, client=PEER)
    with c.websocket_connect("/ws"):
        pass
    with pytest.raises(WebSocketDisconnect) as info, c.websocket_connect("/ws"):
        pass
    assert info.value.code == 1008


def test_websockets_are_left_alone_when_asked() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute")], limit_websockets=False)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("open")
        await websocket.close()

    c = TestClient(app_with(guard, [WebSocketRoute("/ws", echo)]), client=PEER)
    for _ in range(3):
        with c.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "open"


def test_decorated_websocket_endpoint_closes_when_denied_alone() -> None:
    guard = make_guard()

    @guard.limit("1/minute")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("open")
        await websocket.close()

    c = TestClient(Starlette(routes=[WebSocketRoute("/ws", echo)]), client=PEER)
    with c.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "open"
    with pytest.raises(WebSocketDisconnect) as info, c.websocket_connect("/ws"):
        pass
    assert info.value.code == 1008


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


def test_user_key_reads_starlette_authentication() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute", key="user")])

    async def me(request: Request) -> Response:
        return PlainTextResponse(request.user.display_name)

    app = app_with(
        guard,
        [Route("/me", me)],
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderAuth())],
    )
    c = TestClient(app, client=PEER)
    assert [c.get("/me", headers={"x-user": u}).status_code for u in ("ann", "bob", "ann")] == [
        200,
        200,
        429,
    ]
    # Anonymous (an unauthenticated user) falls back to the client address.
    assert statuses(c, "/me", 2) == [200, 429]


def test_non_http_scopes_and_other_apps_pass_through() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute")])

    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("bare")(scope, receive, send)

    c = TestClient(RateLimitMiddleware(bare, guard=guard), client=PEER)
    r = c.get("/anything")
    assert (r.text, r.headers["x-ratelimit-remaining"]) == ("bare", "0")
    assert c.get("/else").status_code == 429  # global rules apply to any ASGI app


def test_exempt_paths_are_paths_of_the_application_under_a_root_path() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute")], exempt_paths=["/health"])

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = app_with(guard, [Route("/health", health)])
    c = TestClient(app, client=PEER, root_path="/api")
    assert [c.get("/api/health").status_code for _ in range(3)] == [200, 200, 200]

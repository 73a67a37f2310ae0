"""The FastAPI adapter through FastAPI's test client: the quick start, the decorator with and
without the middleware, the `Depends` form, one decision per request, responses and switches."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response, WebSocket
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from py_rate_guard import ConfigError
from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PEER = ("203.0.113.7", 50000)


def make_guard(
    store: str = "memory", redis_url: str | None = None, **fields: Any
) -> FastAPIRateGuard:
    fields.setdefault("key_prefix", f"t{uuid.uuid4().hex[:12]}")
    if store == "redis":
        fields.update(redis_url=redis_url, redis_timeout=2.0)
    return FastAPIRateGuard(RateGuardConfig(**fields))


def client(app: FastAPI, peer: tuple[str, int] = PEER) -> TestClient:
    return TestClient(app, client=peer)


def statuses(c: TestClient, path: str, n: int, **kwargs: Any) -> list[int]:
    return [c.get(path, **kwargs).status_code for _ in range(n)]


def test_quick_start_runs_as_written() -> None:
    config = RateGuardConfig(global_rules=[RateLimitRule(limit="100/minute")])
    guard = FastAPIRateGuard(config)
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/sensitive-data")
    @guard.limit(limit="5/minute")
    async def get_data(request: Request):  # type: ignore[no-untyped-def]
        return {"data": "..."}

    c = client(app)
    for remaining in (4, 3, 2, 1, 0):
        r = c.get("/sensitive-data")
        assert r.status_code == 200
        assert r.json() == {"data": "..."}
        assert r.headers["x-ratelimit-limit"] == "5"
        assert r.headers["x-ratelimit-remaining"] == str(remaining)
        assert 1 <= int(r.headers["x-ratelimit-reset"]) <= 120  # sliding: up to 2 periods
    r = c.get("/sensitive-data")
    assert r.status_code == 429
    assert r.json() == {"detail": "Rate limit exceeded: 5 per 1 minute"}
    assert r.headers["content-type"] == "application/json"
    assert 1 <= int(r.headers["retry-after"]) <= 120
    assert r.headers["x-ratelimit-remaining"] == "0"


def test_routes_without_limits_get_the_global_rules_headers() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="3/minute")])
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/free")
    async def free() -> dict[str, bool]:
        return {"ok": True}

    c = client(app)
    r = c.get("/free")
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("3", "2")
    assert statuses(c, "/free", 3) == [200, 200, 429]
    assert c.get("/no-such-route").status_code == 429  # a 404 counts against global rules too


def test_middleware_and_decorator_decide_once() -> None:
    """Each request is decided once: 3/minute admits exactly 3 (two decisions would admit 1)."""
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("3/minute")
    async def x() -> dict[str, int]:
        return {"x": 1}

    @app.get("/dep", dependencies=[Depends(guard.dependency("3/minute"))])
    async def dep() -> dict[str, int]:
        return {"dep": 1}

    c = client(app)
    assert statuses(c, "/x", 4) == [200, 200, 200, 429]
    assert statuses(c, "/dep", 4) == [200, 200, 200, 429]


def test_a_route_denial_consumes_no_global_quota() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="5/minute")])
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/limited")
    @guard.limit("2/minute")
    async def limited() -> dict[str, int]:
        return {}

    @app.get("/free")
    async def free() -> dict[str, int]:
        return {}

    c = client(app)
    assert statuses(c, "/limited", 4) == [200, 200, 429, 429]
    # 2 admitted requests used the global quota; the 2 denied ones did not.
    assert c.get("/free").headers["x-ratelimit-remaining"] == "2"


def test_decorator_alone_limits_async_sync_and_parameterless_endpoints() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute")])
    app = FastAPI()  # no middleware: global rules do not apply, decorators decide alone

    @app.get("/async")
    @guard.limit("2/minute")
    async def no_request() -> dict[str, str]:
        return {"kind": "async"}

    @app.get("/sync/{item_id}")
    @guard.limit("2/minute")
    def sync_endpoint(item_id: int, q: str = "") -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.get("/own-response")
    @guard.limit("2/minute")
    async def own_response(response: Response) -> dict[str, str]:
        response.headers["x-own"] = "yes"
        return {"kind": "own"}

    @app.get("/returns-response")
    @guard.limit("2/minute")
    def returns_response(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.url.path)

    c = client(app)
    r = c.get("/async")
    assert r.json() == {"kind": "async"}
    assert r.headers["x-ratelimit-remaining"] == "1"
    assert statuses(c, "/async", 2) == [200, 429]

    r = c.get("/sync/7", params={"q": "hi"})
    assert r.json() == {"item_id": 7, "q": "hi"}
    assert r.headers["x-ratelimit-limit"] == "2"
    assert c.get("/sync/8").status_code == 200
    r = c.get("/sync/9")
    assert r.status_code == 429
    assert r.json() == {"detail": "Rate limit exceeded: 2 per 1 minute"}
    assert int(r.headers["retry-after"]) >= 1
    assert c.get("/sync/nope").status_code == 422  # validation still FastAPI's

    r = c.get("/own-response")
    assert (r.headers["x-own"], r.headers["x-ratelimit-remaining"]) == ("yes", "1")
    r = c.get("/returns-response")
    assert (r.text, r.headers["x-ratelimit-remaining"]) == ("/returns-response", "1")


def test_the_wrapper_keeps_the_signature_fastapi_documents() -> None:
    guard = make_guard()
    app = FastAPI()

    @app.get("/items/{item_id}")
    @guard.limit("5/minute")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        """Reads an item."""
        return {"item_id": item_id}

    assert read_item.__name__ == "read_item"
    assert read_item.__doc__ == "Reads an item."
    operation = app.openapi()["paths"]["/items/{item_id}"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["item_id", "q"]
    assert operation["summary"] == "Read Item"


def test_route_limits_are_keyed_by_the_path_template_not_the_url() -> None:
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/items/{item_id}")
    @guard.limit("2/minute")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/other/{item_id}")
    @guard.limit("2/minute")
    async def other(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    c = client(app)
    assert [c.get(f"/items/{i}").status_code for i in (1, 2, 3)] == [200, 200, 429]
    assert c.get("/other/1").status_code == 200  # another route, another bucket


def test_methods_of_one_path_count_apart() -> None:
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/things")
    @guard.limit("1/minute")
    async def list_things() -> list[int]:
        return []

    @app.post("/things")
    @guard.limit("1/minute")
    async def add_thing() -> dict[str, bool]:
        return {"added": True}

    c = client(app)
    assert [c.get("/things").status_code, c.post("/things").status_code] == [200, 200]
    assert [c.get("/things").status_code, c.post("/things").status_code] == [429, 429]


def test_stacked_decorators_are_decided_together() -> None:
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/stacked")
    @guard.limit("3/minute", key="global")
    @guard.limit("2/minute")
    async def stacked() -> dict[str, int]:
        return {}

    c = client(app)
    other = client(app, ("198.51.100.1", 1))
    assert statuses(c, "/stacked", 3) == [200, 200, 429]  # per-ip 2/minute denies first
    # The denial consumed nothing from the global 3/minute: another client has 1 left.
    assert statuses(other, "/stacked", 2) == [200, 429]


def test_included_routers_and_dependencies_are_found_by_the_middleware() -> None:
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)
    router = APIRouter(dependencies=[Depends(guard.dependency("2/minute", name="router_wide"))])

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @router.get("/param")
    async def param(_: None = Depends(guard.dependency("1/minute"))) -> dict[str, int]:
        return {}

    app.include_router(router, prefix="/v1")
    c = client(app)
    r = c.get("/v1/items/1")
    assert (r.status_code, r.headers["x-ratelimit-remaining"]) == (200, "1")
    assert [c.get(f"/v1/items/{i}").status_code for i in (2, 3)] == [200, 429]
    r = c.get("/v1/param")
    assert (r.status_code, r.headers["x-ratelimit-limit"]) == (200, "1")


def test_dependency_alone_raises_http_exception_with_headers() -> None:
    guard = make_guard()
    app = FastAPI()

    @app.get("/dep")
    async def dep(_: None = Depends(guard.dependency("1/minute"))) -> dict[str, int]:
        return {"ok": 1}

    c = client(app)
    r = c.get("/dep")
    assert (r.status_code, r.headers["x-ratelimit-remaining"]) == (200, "0")
    r = c.get("/dep")
    assert r.status_code == 429
    assert r.json() == {"detail": "Rate limit exceeded: 1 per 1 minute"}
    assert int(r.headers["retry-after"]) >= 1


def test_disabled_guard_lets_everything_through_without_headers() -> None:
    guard = make_guard(enabled=False, global_rules=[RateLimitRule(limit="1/minute")])
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute")
    async def x() -> dict[str, int]:
        return {}

    @app.get("/y", dependencies=[Depends(guard.dependency("1/minute"))])
    async def y() -> dict[str, int]:
        return {}

    c = client(app)
    for path in ("/x", "/y"):
        responses = [c.get(path) for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all("x-ratelimit-limit" not in r.headers for r in responses)


def test_shadow_mode_counts_and_logs_but_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    guard = make_guard(shadow_mode=True, global_rules=[RateLimitRule(limit="1/minute")])
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute")
    async def x() -> dict[str, int]:
        return {}

    c = client(app)
    with caplog.at_level(logging.INFO, logger="py_rate_guard"):
        assert statuses(c, "/x", 3) == [200, 200, 200]
    shadow = [r for r in caplog.records if getattr(r, "decision", None) == "shadow_blocked"]
    # The 2nd and 3rd requests would have been denied by both rules: one record per rule.
    assert len(shadow) == 4
    assert {r.route for r in shadow} == {"/x"}  # type: ignore[attr-defined]
    assert len({r.rule for r in shadow}) == 2  # type: ignore[attr-defined]


def test_a_shadow_rule_never_blocks_but_enforced_rules_do() -> None:
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/shadowed")
    @guard.limit("1/minute", shadow=True)
    async def shadowed() -> dict[str, int]:
        return {}

    @app.get("/mixed")
    @guard.limit("1/minute", shadow=True, name="trial")
    @guard.limit("3/minute")
    async def mixed() -> dict[str, int]:
        return {}

    c = client(app)
    assert statuses(c, "/shadowed", 3) == [200, 200, 200]
    assert statuses(c, "/mixed", 4) == [200, 200, 200, 429]


def test_exempt_paths_are_never_limited() -> None:
    guard = make_guard(
        global_rules=[RateLimitRule(limit="1/minute")], exempt_paths=["/health", "/metrics"]
    )
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics/{name}")
    @guard.limit("1/minute")
    async def metric(name: str) -> dict[str, str]:
        return {}

    @app.get("/healthy")
    async def healthy() -> dict[str, str]:
        return {}

    c = client(app)
    responses = [c.get("/health") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "x-ratelimit-limit" not in responses[0].headers
    assert statuses(c, "/metrics/cpu", 2) == [200, 200]
    assert statuses(c, "/healthy", 2) == [200, 429]  # a prefix is not a path


@pytest.mark.parametrize(
    ("style", "present", "absent"),
    [
        ("legacy", {"x-ratelimit-limit"}, {"ratelimit", "ratelimit-policy"}),
        ("ietf", {"ratelimit", "ratelimit-policy"}, {"x-ratelimit-limit"}),
        ("both", {"x-ratelimit-limit", "ratelimit", "ratelimit-policy"}, set()),
        ("none", set(), {"x-ratelimit-limit", "ratelimit", "ratelimit-policy"}),
    ],
)
def test_header_styles(style: str, present: set[str], absent: set[str]) -> None:
    guard = make_guard(headers=style)
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute")
    async def x() -> dict[str, int]:
        return {}

    c = client(app)
    allowed, denied = c.get("/x"), c.get("/x")
    assert (allowed.status_code, denied.status_code) == (200, 429)
    for response in (allowed, denied):
        assert present <= set(response.headers)
        assert not absent & set(response.headers)
    assert "retry-after" in denied.headers  # whatever the style
    if "ratelimit-policy" in present:
        assert "q=1" in allowed.headers["ratelimit-policy"]
        assert "w=60" in allowed.headers["ratelimit-policy"]
        assert "r=0" in allowed.headers["ratelimit"]


async def teapot(request: Request, exc: Exception) -> PlainTextResponse:
    return PlainTextResponse(f"slow down: {exc}", status_code=418)


def test_limited_handler_answers_denials_with_the_rate_headers() -> None:
    guard = make_guard(limited_handler=teapot)
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute")
    def x() -> dict[str, int]:
        return {}

    alone = make_guard(limited_handler=f"{__name__}.teapot")
    alone_app = FastAPI()

    @alone_app.get("/x")
    @alone.limit("1/minute")
    def y() -> dict[str, int]:
        return {}

    for app_under_test in (app, alone_app):
        c = client(app_under_test)
        assert c.get("/x").status_code == 200
        r = c.get("/x")
        assert r.status_code == 418
        assert r.text == "slow down: Rate limit exceeded: 1 per 1 minute"
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-remaining"] == "0"


def test_an_exception_of_the_limited_handler_reaches_the_framework() -> None:
    """Issue 15: the handler's exception is the application's to answer, not swallowed into
    the default 429 (test_adapters_slowapi.py: answered by the app's exception handlers)."""

    def broken(request: Request, exc: Exception) -> Response:
        raise RuntimeError("bug")

    guard = make_guard(limited_handler=broken)
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute")
    async def x() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER, raise_server_exceptions=False)
    assert statuses(c, "/x", 2) == [200, 500]


@pytest.mark.parametrize("middleware", [True, False])
def test_key_func_sync_and_async_key_their_rules(middleware: bool) -> None:
    # Without the middleware, the sync endpoint's decorator runs the async key function from
    # the thread pool.
    def tenant(request: Request) -> str | None:
        return request.headers.get("x-tenant")

    async def api_key(request: Request) -> str:
        return request.query_params.get("key", "anonymous")

    guard = make_guard()
    app = FastAPI()
    if middleware:
        app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/tenant")
    @guard.limit("1/minute", key_func=tenant)
    async def by_tenant() -> dict[str, int]:
        return {}

    @app.get("/key")
    @guard.limit("1/minute", key_func=api_key)
    def by_key() -> dict[str, int]:
        return {}

    c = client(app)
    assert [c.get("/tenant", headers={"x-tenant": t}).status_code for t in "abab"] == [
        200,
        200,
        429,
        429,
    ]
    assert c.get("/key", params={"key": "k1"}).status_code == 200
    assert c.get("/key", params={"key": "k2"}).status_code == 200
    assert c.get("/key", params={"key": "k1"}).status_code == 429


def test_a_failing_key_func_falls_back_to_the_client_address() -> None:
    def broken(request: Request) -> str:
        raise KeyError("no tenant")

    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute", key_func=broken)
    async def x() -> dict[str, int]:
        return {}

    assert statuses(client(app), "/x", 2) == [200, 429]
    assert client(app, ("198.51.100.9", 1)).get("/x").status_code == 200


def test_user_key_reads_the_user_set_before_the_limiter() -> None:
    guard = make_guard(global_rules=[RateLimitRule(limit="1/minute", key="user")])
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.middleware("http")  # added last, so it runs first: an authentication layer
    async def authenticate(request: Request, call_next: Any) -> Any:
        name = request.headers.get("x-user")
        if name:
            request.state.user = name
        return await call_next(request)

    @app.get("/me")
    async def me() -> dict[str, int]:
        return {}

    c = client(app)
    assert [c.get("/me", headers={"x-user": u}).status_code for u in ("ann", "bob", "ann")] == [
        200,
        200,
        429,
    ]
    # Without a user the rule falls back to the client address.
    assert statuses(c, "/me", 2) == [200, 429]


def test_bad_limits_fail_at_decoration_and_name_what_is_wrong() -> None:
    guard = make_guard()
    with pytest.raises(ConfigError, match="fortnight"):
        guard.limit("10/fortnight")
    with pytest.raises(ConfigError, match="key"):
        guard.limit("10/minute", key="cookie")
    with pytest.raises(ConfigError, match="jwt_keys"):
        guard.limit("10/minute", key="jwt:sub")
    with pytest.raises(ConfigError, match="burst"):
        guard.dependency("10/minute", burst=5)


def test_every_decorator_takes_the_same_keywords_and_refuses_others() -> None:
    from py_rate_guard.adapters.django import rate_limit
    from py_rate_guard.adapters.starlette import StarletteRateGuard

    guard = make_guard()
    decorators = [
        guard.limit,
        guard.dependency,
        StarletteRateGuard(RateGuardConfig(key_prefix="kw")).limit,
        rate_limit,
    ]
    for decorator in decorators:
        # Every keyword of `LimitOptions`, and `key=None` meaning the default key.
        decorator(
            limit="10/minute",
            key=None,
            key_func=None,
            algorithm="token_bucket",
            cost=2,
            burst=20,
            name="n",
            shadow=True,
        )
        with pytest.raises(TypeError, match="'fail_open'"):
            decorator("10/minute", fail_open=True)  # a rule field, but not a decorator's
        with pytest.raises(TypeError):
            decorator("10/minute", "ip")  # keywords only after the limit


def test_a_global_key_func_and_a_route_key_func_each_key_their_own_rule() -> None:
    guard = make_guard(
        global_rules=[RateLimitRule(limit="3/minute", key_func=lambda r: "a", name="g")]
    )
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("1/minute", key_func=lambda r: r.headers.get("x-tenant"))
    async def x() -> dict[str, int]:
        return {}

    with client(app) as c:
        # The route rule counts per tenant, the global rule for everyone ("a").
        assert c.get("/x", headers={"x-tenant": "t1"}).status_code == 200
        assert c.get("/x", headers={"x-tenant": "t1"}).status_code == 429
        assert c.get("/x", headers={"x-tenant": "t2"}).status_code == 200
        assert c.get("/x", headers={"x-tenant": "t3"}).status_code == 200
        assert c.get("/x", headers={"x-tenant": "t4"}).status_code == 429


def test_the_middleware_refuses_a_guard_of_another_kind() -> None:
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="StarletteRateGuard"):
        client(app).get("/")


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_redis_and_memory_stores_answer_alike(store: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    guard = make_guard(store, url, global_rules=[RateLimitRule(limit="4/minute")])
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/r")
    @guard.limit("2/minute")
    async def r() -> dict[str, int]:
        return {}

    @app.get("/free")
    async def free() -> dict[str, int]:
        return {}

    c = client(app)
    assert statuses(c, "/r", 3) == [200, 200, 429]
    assert [c.get("/free").headers["x-ratelimit-remaining"] for _ in range(2)] == ["1", "0"]
    assert c.get("/free").status_code == 429


def test_denials_are_logged_with_the_route_and_a_hashed_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = make_guard()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/items/{item_id}")
    @guard.limit("1/minute")
    async def item(item_id: int) -> dict[str, int]:
        return {}

    c = client(app)
    with caplog.at_level(logging.INFO, logger="py_rate_guard"):
        assert [c.get(f"/items/{i}").status_code for i in (1, 2)] == [200, 429]
    blocked = [r for r in caplog.records if getattr(r, "decision", None) == "blocked"]
    assert len(blocked) == 1
    record: Any = blocked[0]
    assert (record.route, record.status) == ("/items/{item_id}", 429)
    assert PEER[0] not in str(record.identity)  # hashed by default


@pytest.mark.parametrize("middleware", [True, False])
def test_websocket_endpoints_are_limited_when_they_open(middleware: bool) -> None:
    guard = make_guard()
    app = FastAPI()
    if middleware:
        app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.websocket("/ws")
    @guard.limit("1/minute")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    c = client(app)
    with c.websocket_connect("/ws") as connection:
        assert connection.receive_text() == "hi"
    with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect("/ws"):
        pass
    if middleware:  # before the application: a 429 through the denial response extension
        assert isinstance(refused.value, WebSocketDenialResponse)
        assert refused.value.status_code == 429
    else:  # in the endpoint: the connection is closed
        assert refused.value.code == 1008

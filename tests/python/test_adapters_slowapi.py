"""slowapi's own scenarios (laurentS/slowapi tests/test_fastapi_extension.py and
tests/test_starlette_extension.py) restated against our Starlette and FastAPI adapters through
their test clients: a limit chosen per request (`limit(callable)`, given the key), a cost
computed from the request, `exempt_when`, `shared_limit`, and what slowapi users reach for
beside them: method filters, soft decisions on `request.state.rate_limit`, `limit=None`, the
fallback of a callable that fails (logged once per limit per minute, never a 500), and
exceptions raised on a denial reaching the application's exception handlers."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import redis
from fastapi import Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from py_rate_guard import ConfigError, RateLimitExceeded
from py_rate_guard.adapters import fastapi as fastapi_adapter
from py_rate_guard.adapters import starlette as starlette_adapter
from py_rate_guard.adapters.fastapi import FastAPIRateGuard
from py_rate_guard.adapters.starlette import StarletteRateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PEER = ("203.0.113.7", 50000)


def config(store: str = "memory", redis_url: str | None = None, **fields: Any) -> RateGuardConfig:
    fields.setdefault("key_prefix", f"t{uuid.uuid4().hex[:12]}")
    if store == "redis":
        fields.update(redis_url=redis_url, redis_timeout=2.0)
    return RateGuardConfig(**fields)


def fastapi_app(with_middleware: bool = False, **fields: Any) -> tuple[FastAPI, FastAPIRateGuard]:
    guard = FastAPIRateGuard(config(**fields))
    app = FastAPI()
    if with_middleware:
        app.add_middleware(fastapi_adapter.RateLimitMiddleware, guard=guard)
    return app, guard


def starlette_guard(**fields: Any) -> StarletteRateGuard:
    return StarletteRateGuard(config(**fields))


def statuses(c: TestClient, path: str, n: int, **kwargs: Any) -> list[int]:
    return [c.get(path, **kwargs).status_code for _ in range(n)]


# -- a limit chosen per request ---------------------------------------------------------


@pytest.mark.parametrize("with_middleware", [False, True])
def test_dynamic_limit_provider_depending_on_key(with_middleware: bool) -> None:
    """slowapi's test_dynamic_limit_provider_depending_on_key: the provider is given the key
    (the key function's value)."""

    def custom_key_func(request: Request) -> str:
        return "admin" if request.headers.get("TOKEN") == "secret" else "user"

    def dynamic_limit_provider(key: str) -> str:
        return "10/minute" if key == "admin" else "5/minute"

    app, guard = fastapi_app(with_middleware)

    @app.get("/t1")
    @guard.limit(dynamic_limit_provider, key_func=custom_key_func)
    async def t1(request: Request, response: Response) -> dict[str, str]:
        return {"key": "value"}

    c = TestClient(app, client=PEER)
    assert statuses(c, "/t1", 10) == [200] * 5 + [429] * 5
    assert statuses(c, "/t1", 20, headers={"TOKEN": "secret"}) == [200] * 10 + [429] * 10


def test_the_provider_is_given_the_client_address_by_default() -> None:
    """Without a key function the key is the client's address as the engine resolves it
    (trusted proxies believed), bare as slowapi's `get_remote_address` gives it: a migrated
    tier function comparing addresses keeps matching (it was given "ip:198.51.100.1")."""
    seen: list[str] = []

    def per_client(key: str) -> str:
        seen.append(key)
        return "2/minute" if key == "198.51.100.1" else "3/minute"

    app, guard = fastapi_app(trusted_proxies=["203.0.113.0/24"])

    @app.get("/t")
    @guard.limit(per_client)
    def t() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    forwarded = {"X-Forwarded-For": "198.51.100.1"}
    assert statuses(c, "/t", 3, headers=forwarded) == [200, 200, 429]
    assert statuses(c, "/t", 4) == [200, 200, 200, 429]
    assert set(seen) == {"198.51.100.1", "203.0.113.7"}


@pytest.mark.parametrize("with_middleware", [False, True])
def test_the_provider_is_given_the_value_of_its_key_without_its_kind(
    with_middleware: bool,
) -> None:
    """A header key gives the header's value (a client without the header: its address, as
    it is counted); an IPv6 client is given the /64 network it is counted in."""
    seen: list[str] = []

    def per_key(key: str) -> str:
        seen.append(key)
        return "1/minute" if key in ("k:1", "2001:db8:1:2::/64") else "2/minute"

    app, guard = fastapi_app(with_middleware)

    @app.get("/h")
    @guard.limit(per_key, key="header:X-Api-Key")
    async def h() -> dict[str, int]:
        return {}

    @app.get("/ip")
    @guard.limit(per_key)
    async def ip() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert statuses(c, "/h", 2, headers={"X-Api-Key": "k:1"}) == [200, 429]
    assert statuses(c, "/h", 3) == [200, 200, 429]
    v6 = TestClient(app, client=("2001:db8:1:2::99", 1))
    assert statuses(v6, "/ip", 2) == [200, 429]
    assert (
        seen
        == ["k:1", "k:1", "203.0.113.7", "203.0.113.7", "203.0.113.7"] + ["2001:db8:1:2::/64"] * 2
    )


@pytest.mark.parametrize("sync_endpoint", [False, True])
def test_providers_without_argument_sync_or_async(sync_endpoint: bool) -> None:
    tier = {"rate": "2/minute"}

    async def async_provider() -> str:
        return tier["rate"]

    app, guard = fastapi_app()
    decorate = guard.limit(async_provider)
    if sync_endpoint:

        @app.get("/t")
        @decorate
        def t_sync() -> dict[str, int]:
            return {}

    else:

        @app.get("/t")
        @decorate
        async def t_async() -> dict[str, int]:
            return {}

    c = TestClient(app, client=PEER)
    assert statuses(c, "/t", 3) == [200, 200, 429]
    tier["rate"] = "5/minute"  # another rule: its own quota
    assert statuses(c, "/t", 6) == [200] * 5 + [429]


def test_none_means_no_limit_for_the_request() -> None:
    app, guard = fastapi_app(with_middleware=True, global_rules=[RateLimitRule(limit="8/minute")])

    @app.get("/unlimited")
    @guard.limit(None)
    async def unlimited() -> dict[str, int]:
        return {}

    @app.get("/staff")
    @guard.limit(
        lambda key: None if key == "staff" else "1/minute",
        key_func=lambda request: request.headers.get("user"),
    )
    async def staff() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    r = c.get("/unlimited")
    assert r.headers["x-ratelimit-limit"] == "8"  # the global rule only
    assert statuses(c, "/staff", 3, headers={"user": "staff"}) == [200] * 3
    assert statuses(c, "/staff", 2, headers={"user": "guest"}) == [200, 429]


def test_a_failing_provider_falls_back_and_is_logged_once_per_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    app, guard = fastapi_app()
    guard.errors.clock = lambda: now[0]

    def broken() -> str:
        raise RuntimeError("tier service down")

    @app.get("/fallback")
    @guard.limit(broken, fallback="2/minute")
    async def with_fallback() -> dict[str, int]:
        return {}

    @app.get("/skipped")
    @guard.limit(lambda: "lots per minute")
    async def without_fallback() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    with caplog.at_level(logging.ERROR, logger="py_rate_guard"):
        assert statuses(c, "/fallback", 3) == [200, 200, 429]
        assert statuses(c, "/skipped", 3) == [200] * 3  # no fallback: the limit is left out
    records = [r for r in caplog.records if r.name == "py_rate_guard"]
    assert len(records) == 2, [r.getMessage() for r in records]
    assert "the limit callable raised" in records[0].getMessage()
    assert "its fallback '2/minute' decides" in records[0].getMessage()
    assert "'lots per minute', not a rate string" in records[1].getMessage()
    caplog.clear()
    now[0] = 61.0
    with caplog.at_level(logging.ERROR, logger="py_rate_guard"):
        c.get("/skipped")
    (record,) = [r for r in caplog.records if r.name == "py_rate_guard"]
    assert "(2 more since the last report)" in record.getMessage()


def test_failing_predicates_and_costs_never_fail_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """exempt_when raising: the limit applies; a cost callable raising: the declared cost.
    Sync endpoints without the middleware: the sync resolution, async callables included."""
    guard = starlette_guard()

    async def broken_predicate(request: Request) -> bool:
        raise LookupError("no such tenant")

    def broken_cost(request: Request) -> int:
        raise ValueError("no items")

    @guard.limit("2/minute", exempt_when=broken_predicate, cost=broken_cost)
    def t(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/t", t)])
    c = TestClient(app, client=PEER)
    with caplog.at_level(logging.ERROR, logger="py_rate_guard"):
        assert statuses(c, "/t", 3) == [200, 200, 429]
    messages = [r.getMessage() for r in caplog.records if r.name == "py_rate_guard"]
    assert len(messages) == 1, messages  # once per limit per minute, whatever failed
    assert "exempt_when raised; it applies" in messages[0]


def test_bad_declarations_fail_at_import() -> None:
    guard = starlette_guard()
    with pytest.raises(ConfigError, match="invalid limit 'many'"):
        guard.limit(lambda: "1/minute", fallback="many")
    with pytest.raises(ConfigError, match="invalid limit ''"):
        guard.limit("")
    with pytest.raises(ConfigError, match="limit must be a rate string"):
        guard.limit(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="takes no argument or one"):
        guard.limit(lambda a, b: "1/minute")
    with pytest.raises(ConfigError, match="methods"):
        guard.limit("1/minute", methods=[])
    with pytest.raises(ConfigError, match="exempt_when must be a callable"):
        guard.limit("1/minute", exempt_when=True)  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ("a" * 65, "1 to 64 characters"),
        ("", "empty"),
        ("a\nb", "control characters"),
        ("a\ud800", "lone surrogate"),
    ],
)
def test_a_bad_scope_name_fails_where_it_is_written(scope: str, reason: str) -> None:
    """A scope name the engine refuses fails at import, not as a 500 on every request
    (it was accepted by the decorator and refused when the route was first built)."""
    guard = starlette_guard()
    with pytest.raises(ConfigError, match=reason):
        guard.shared_limit("1/minute", scope=scope)
    with pytest.raises(ConfigError, match=reason):
        guard.limit("1/minute", scope=scope)
    ok = "é" * 64
    app, fastapi_guard = fastapi_app()

    @app.get("/s")
    @fastapi_guard.shared_limit("1/minute", scope=ok)
    async def s() -> dict[str, int]:
        return {}

    assert statuses(TestClient(app, client=PEER), "/s", 2) == [200, 429]


# -- cost -------------------------------------------------------------------------------


def test_cost() -> None:
    """slowapi's test_cost (FastAPI)."""
    app, guard = fastapi_app()

    @app.get("/t1")
    @guard.limit("50/minute", cost=10)
    async def t1(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    @app.get("/t2")
    @guard.limit("50/minute", cost=15)
    async def t2(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    c = TestClient(app, client=PEER)
    for i in range(10):
        assert c.get("/t1").status_code == (200 if i < 5 else 429)
        assert c.get("/t2").status_code == (200 if i < 3 else 429)


# -- exempt_when ------------------------------------------------------------------------


def test_exempt_when_argument() -> None:
    """slowapi's test_exempt_when_argument (Starlette, sync endpoints): a predicate without
    argument, or given the request."""
    guard = starlette_guard()

    def dynamic(request: Request) -> bool:
        return request.headers.get("User-Agent") == "exempt"

    @guard.limit("1/minute", exempt_when=lambda: True)
    def always_true(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    @guard.limit("1/minute", exempt_when=lambda: False)
    def always_false(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    @guard.limit("1/minute", exempt_when=dynamic)
    def always_dynamic(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    app = Starlette(
        routes=[
            Route("/true", always_true),
            Route("/false", always_false),
            Route("/dynamic", always_dynamic),
        ]
    )
    c = TestClient(app, client=PEER)
    assert statuses(c, "/true", 2) == [200, 200]
    assert statuses(c, "/false", 2) == [200, 429]
    assert statuses(c, "/dynamic", 2, headers={"User-Agent": "exempt"}) == [200, 200]
    assert statuses(c, "/dynamic", 2) == [200, 429]


def test_async_exempt_when_under_the_middleware() -> None:
    async def internal(request: Request) -> bool:
        return request.headers.get("x-internal") == "1"

    app, guard = fastapi_app(with_middleware=True)

    @app.get("/t")
    @guard.limit("1/minute", exempt_when=internal)
    async def t() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert statuses(c, "/t", 3, headers={"x-internal": "1"}) == [200] * 3
    assert statuses(c, "/t", 2) == [200, 429]


# -- methods ----------------------------------------------------------------------------


def test_a_limit_on_some_methods_only() -> None:
    guard = starlette_guard()

    @guard.limit("2/minute", methods=["post", "PUT"])
    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.method)

    app = Starlette(routes=[Route("/items", items, methods=["GET", "POST", "PUT"])])
    c = TestClient(app, client=PEER)
    assert statuses(c, "/items", 4) == [200] * 4
    assert [c.post("/items").status_code for _ in range(2)] == [200, 200]
    assert c.put("/items").status_code == 429  # POST and PUT share the limit
    assert c.get("/items").status_code == 200


@pytest.mark.parametrize("with_middleware", [False, True])
def test_a_limit_on_get_applies_to_head(with_middleware: bool) -> None:
    """HEAD runs the GET endpoint: a limit on GET counts it, as a route's own limits count
    HEAD with GET (else HEAD was a way around a GET limit: the endpoint ran unlimited)."""
    app, guard = fastapi_app(with_middleware)
    calls: list[str] = []

    @app.api_route("/r", methods=["GET", "HEAD", "POST"])
    @guard.limit("2/minute", methods="get")
    async def r(request: Request) -> dict[str, int]:
        calls.append(request.method)
        return {}

    c = TestClient(app, client=PEER)
    assert [c.head("/r").status_code, c.get("/r").status_code] == [200, 200]
    assert [c.head("/r").status_code, c.get("/r").status_code] == [429, 429]
    assert calls == ["HEAD", "GET"]
    assert c.post("/r").status_code == 200


# -- soft decisions ---------------------------------------------------------------------


@pytest.mark.parametrize("with_middleware", [False, True])
def test_soft_decisions_let_the_endpoint_decide(with_middleware: bool) -> None:
    app, guard = fastapi_app(with_middleware)

    @app.get("/search")
    @guard.limit("2/minute", block=False)
    async def search(request: Request) -> dict[str, Any]:
        decision = request.state.rate_limit
        return {"limited": decision.limited, "remaining": decision.remaining}

    c = TestClient(app, client=PEER)
    answers = [c.get("/search") for _ in range(3)]
    assert [r.status_code for r in answers] == [200] * 3
    assert [r.json() for r in answers] == [
        {"limited": False, "remaining": 1},
        {"limited": False, "remaining": 0},
        {"limited": True, "remaining": 0},
    ]
    assert answers[2].headers["x-ratelimit-remaining"] == "0"


def test_a_blocking_global_rule_still_blocks_a_soft_route() -> None:
    app, guard = fastapi_app(with_middleware=True, global_rules=[RateLimitRule(limit="2/minute")])

    @app.get("/soft")
    @guard.limit("5/minute", block=False)
    async def soft() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert statuses(c, "/soft", 3) == [200, 200, 429]


# -- exceptions reaching the application ------------------------------------------------


class TeapotError(Exception):
    pass


@pytest.mark.parametrize("with_middleware", [False, True])
def test_an_exception_raised_in_limited_handler_reaches_the_app(with_middleware: bool) -> None:
    def handler(request: Request, exc: Exception) -> Response:
        raise TeapotError("limited")

    app, guard = fastapi_app(with_middleware, limited_handler=handler)

    @app.exception_handler(TeapotError)
    async def teapot(request: Request, exc: TeapotError) -> JSONResponse:
        return JSONResponse({"teapot": str(exc)}, status_code=418)

    @app.get("/t")
    @guard.limit("1/minute")
    async def t() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert c.get("/t").status_code == 200
    r = c.get("/t")
    assert (r.status_code, r.json()) == (418, {"teapot": "limited"})


@pytest.mark.parametrize("with_middleware", [False, True])
def test_an_unhandled_exception_of_limited_handler_reaches_the_server(
    with_middleware: bool,
) -> None:
    def handler(request: Request, exc: Exception) -> Response:
        raise TeapotError("nobody handles this")

    app, guard = fastapi_app(with_middleware, limited_handler=handler)

    @app.get("/t")
    @guard.limit("1/minute")
    async def t() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert c.get("/t").status_code == 200
    with pytest.raises(TeapotError):
        c.get("/t")
    quiet = TestClient(app, client=PEER, raise_server_exceptions=False)
    assert quiet.get("/t").status_code == 500


def test_limits_of_two_scopes_on_one_endpoint_are_refused() -> None:
    guard = starlette_guard()
    with pytest.raises(ConfigError, match="several scopes"):

        @guard.shared_limit("5/minute", scope="search")
        @guard.limit("1/second")
        async def both(request: Request) -> PlainTextResponse:
            return PlainTextResponse("")


def test_one_name_in_one_scope_has_one_definition_across_routes() -> None:
    # Two routes sharing the scope "s" under one rule name with two rates would share keys
    # with two meanings: refused when the application starts (the engine's front keeps the
    # definition of each shared rule), naming both.
    guard = starlette_guard()

    @guard.shared_limit("3/minute", scope="s", name="up")
    async def a(request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    @guard.shared_limit("5/minute", scope="s", name="up")
    async def b(request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    app = Starlette(
        routes=[Route("/a", a), Route("/b", b)],
        middleware=[Middleware(starlette_adapter.RateLimitMiddleware, guard=guard)],
    )
    with pytest.raises(ConfigError, match=r"(?s)3/minute.*5/minute"), TestClient(app):
        pass


def test_the_decision_of_an_allowed_request_is_on_request_state() -> None:
    guard = starlette_guard()

    @guard.limit("3/minute")
    async def t(request: Request) -> JSONResponse:
        return JSONResponse({"remaining": request.state.rate_limit.remaining})

    app = Starlette(
        routes=[Route("/t", t)],
        middleware=[Middleware(starlette_adapter.RateLimitMiddleware, guard=guard)],
    )
    c = TestClient(app, client=PEER)
    assert [c.get("/t").json()["remaining"] for _ in range(2)] == [2, 1]


# -- needs the engine's per-request costs and named scopes ------------------------------


def test_callable_cost(caplog: pytest.LogCaptureFixture) -> None:
    """slowapi's test_callable_cost (Starlette). Its second endpoint weighs `foo * 1.5`, a
    float: not a cost (an int from 1 to 2^32-1), so it is logged and the declared cost, 1,
    is used (limits would round 7.5 its own way)."""
    guard = starlette_guard()

    @guard.limit("50/minute", cost=lambda request: int(request.headers["foo"]))
    async def t1(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    @guard.limit("50/minute", cost=lambda request: int(request.headers["foo"]) * 1.5)
    async def t2(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    app = Starlette(routes=[Route("/t1", t1), Route("/t2", t2)])
    c = TestClient(app, client=PEER)
    with caplog.at_level(logging.ERROR, logger="py_rate_guard"):
        for i in range(10):
            r = c.get("/t1", headers={"foo": "10"})
            assert r.status_code == (200 if i < 5 else 429)
            assert c.get("/t2", headers={"foo": "5"}).status_code == 200
    (record,) = [r for r in caplog.records if r.name == "py_rate_guard"]
    assert "returned 7.5, not a cost" in record.getMessage()


@pytest.mark.parametrize("with_middleware", [False, True])
def test_async_cost_and_a_dynamic_limit_of_two_rates(with_middleware: bool) -> None:
    """A cost applies to every rate of the rule it weighs (costs are aligned with the route's
    limits); the global rules keep their own cost."""

    async def items(request: Request) -> int:
        return int(request.query_params.get("items", "1"))

    app, guard = fastapi_app(with_middleware, global_rules=[RateLimitRule(limit="100/minute")])

    @app.post("/batch")
    @guard.limit(lambda: "6/minute; 8/hour", cost=items)
    async def batch() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert c.post("/batch", params={"items": 5}).status_code == 200
    assert c.post("/batch", params={"items": 2}).status_code == 429  # 7 > 6 per minute
    r = c.post("/batch", params={"items": 1})
    assert r.status_code == 200
    if with_middleware:
        assert c.get("/docs").headers["x-ratelimit-remaining"] == "97"  # 3 requests, cost 1


def test_shared_decorator(store: str, request: pytest.FixtureRequest) -> None:
    """slowapi's test_shared_decorator (Starlette, sync endpoints), on memory and Redis."""
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    guard = starlette_guard(store=store, redis_url=url)
    shared = guard.shared_limit("5/minute", "somescope")

    @shared
    def t1(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    @shared
    def t2(request: Request) -> PlainTextResponse:
        return PlainTextResponse("test")

    app = Starlette(routes=[Route("/t1", t1), Route("/t2", t2)])
    c = TestClient(app, client=PEER)
    assert statuses(c, "/t1", 10) == [200] * 5 + [429] * 5
    assert c.get("/t2").status_code == 429  # the shared limit was used up through /t1


def test_a_scope_is_one_quota_across_applications_on_redis(redis_url: str) -> None:
    """Two services (a FastAPI and a Starlette application, two guards) on one Redis and one
    prefix: the scope, not the route, names the keys."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    api, api_guard = fastapi_app(
        store="redis", redis_url=redis_url, key_prefix=prefix, with_middleware=True
    )

    @api.get("/v1/search")
    @api_guard.shared_limit("3/minute", scope="search")
    async def v1() -> dict[str, int]:
        return {}

    site_guard = starlette_guard(store="redis", redis_url=redis_url, key_prefix=prefix)

    @site_guard.shared_limit("3/minute", scope="search")
    async def find(request: Request) -> PlainTextResponse:
        return PlainTextResponse("found")

    site = Starlette(routes=[Route("/find/{what}", find)])
    a, b = TestClient(api, client=PEER), TestClient(site, client=PEER)
    assert [a.get("/v1/search").status_code, b.get("/find/x").status_code] == [200, 200]
    assert [b.get("/find/y").status_code, a.get("/v1/search").status_code] == [200, 429]
    keys = redis.Redis.from_url(redis_url).keys(f"{prefix}:*")
    assert keys and all(b":sc." in key for key in keys), keys


def test_a_scope_under_a_dynamic_limit() -> None:
    """A callable limit keeps its scope: the rate it returns is shared by the routes."""
    guard = starlette_guard()
    shared = guard.shared_limit(lambda: "2/minute", scope="exports")

    @shared
    async def csv(request: Request) -> PlainTextResponse:
        return PlainTextResponse("csv")

    @shared
    async def pdf(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pdf")

    app = Starlette(routes=[Route("/csv", csv), Route("/pdf", pdf)])
    c = TestClient(app, client=PEER)
    assert [c.get(p).status_code for p in ("/csv", "/pdf", "/csv")] == [200, 200, 429]


class Throttled(Exception):
    pass


class LimitedHere(RateLimitExceeded):
    pass


@pytest.mark.parametrize("with_middleware", [False, True])
def test_exception_class_is_answered_by_the_apps_handlers(with_middleware: bool) -> None:
    """The configuration's `exception_class` (slowapi: `RateLimitExceeded` and
    `_rate_limit_exceeded_handler`) raised on a denial, answered by the app's handler: from
    the middleware, a decorator and a dependency."""
    app, guard = fastapi_app(with_middleware, exception_class=Throttled)

    @app.exception_handler(Throttled)
    async def throttled(request: Request, exc: Throttled) -> JSONResponse:
        limited = exc.__cause__
        assert isinstance(limited, RateLimitExceeded)
        return JSONResponse({"retry": limited.decision.retry_after is not None}, status_code=503)

    @app.get("/t")
    @guard.limit("1/minute")
    async def t() -> dict[str, int]:
        return {}

    @app.get("/d", dependencies=[Depends(guard.dependency("1/minute"))])
    async def d() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    for path in ("/t", "/d"):
        assert c.get(path).status_code == 200
        r = c.get(path)
        assert (r.status_code, r.json()) == (503, {"retry": True})


def test_a_rate_limit_exceeded_subclass_carries_the_decision() -> None:
    guard = starlette_guard(exception_class=LimitedHere)

    async def on_limit(request: Request, exc: LimitedHere) -> PlainTextResponse:
        return PlainTextResponse(f"remaining {exc.decision.remaining}", status_code=429)

    @guard.limit("1/minute")
    def t(request: Request) -> PlainTextResponse:  # sync: raised from the thread pool
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/t", t)], exception_handlers={LimitedHere: on_limit})
    c = TestClient(app, client=PEER)
    assert [c.get("/t").text for _ in range(2)] == ["ok", "remaining 0"]


def test_an_unhandled_exception_class_reaches_the_server() -> None:
    app, guard = fastapi_app(with_middleware=True, exception_class=Throttled)

    @app.get("/t")
    @guard.limit("1/minute")
    async def t() -> dict[str, int]:
        return {}

    c = TestClient(app, client=PEER)
    assert c.get("/t").status_code == 200
    with pytest.raises(Throttled):
        c.get("/t")


def test_rates_returned_per_request_are_cached_within_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A callable may return a rate per client (thousands of distinct strings): each is parsed
    by the engine once, and the caches of rules and routes stay bounded (their bound lowered
    here from 4096 to 50)."""
    from py_rate_guard.adapters import _http, _limits

    monkeypatch.setattr(_http, "_MAX_REQUEST_RULES", 50)
    monkeypatch.setattr(_limits, "_MAX_RESOLVED", 50)
    counter = iter(range(1, 10_000))
    guard = starlette_guard()

    @guard.limit(lambda: f"{next(counter)}/minute")
    async def t(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    c = TestClient(Starlette(routes=[Route("/t", t)]), client=PEER)
    for _ in range(120):
        assert c.get("/t").status_code == 200
    assert 0 < len(guard._resolved_rules) <= 50
    assert 0 < len(_limits._built) <= 50

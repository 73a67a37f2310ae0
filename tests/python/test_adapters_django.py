"""The Django adapter through Django's test clients (sync: WSGI handler; async: ASGI handler):
the middleware, `rate_limit` on function and class-based views, and `settings.RATE_GUARD`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from py_rate_guard import ConfigError
from py_rate_guard.adapters.django import RateLimitMiddleware, get_guard, rate_limit

MIDDLEWARE = ["py_rate_guard.adapters.django.RateLimitMiddleware"]
PEER = "203.0.113.7"


class FakeUser:
    is_authenticated = True

    def __init__(self, pk: str) -> None:
        self.pk = pk


def fake_auth(get_response: Any) -> Any:
    """Stands for AuthenticationMiddleware: `X-User: ann` logs in as ann."""

    def middleware(request: HttpRequest) -> Any:
        name = request.headers.get("x-user")
        request.user = FakeUser(name) if name else None  # type: ignore[assignment]
        return get_response(request)

    return middleware


@rate_limit("2/minute")
def item(request: HttpRequest, item_id: int) -> HttpResponse:
    return JsonResponse({"item_id": item_id})


def free(request: HttpRequest) -> HttpResponse:
    return HttpResponse("free")


@rate_limit("1/minute")
async def async_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("async")


@rate_limit("2/minute")
class Everything(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("get")

    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("post")


class PerMethod(View):
    @rate_limit("1/minute")
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("get")

    @method_decorator(rate_limit("2/minute"))
    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("post")


class AsyncView(View):
    @rate_limit("1/minute")
    async def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("async get")


async def tenant_of(request: HttpRequest) -> str | None:
    """An async key function: sync views run it to completion from their thread."""
    return request.headers.get("x-tenant")


@rate_limit("1/minute", key_func=tenant_of)
def tenant_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("tenant")


@rate_limit("1/minute", key_func=tenant_of)
async def async_tenant_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("async tenant")


def teapot(request: HttpRequest, exc: Exception) -> HttpResponse:
    return HttpResponse(f"teapot: {exc}", status=418)


class Ratelimited(PermissionDenied):
    """django-ratelimit's own exception class: a PermissionDenied, which Django answers 403."""


class AppLimited(Exception):
    """An application's exception that no Django handler knows."""


def broken_handler(request: HttpRequest, exc: Exception) -> HttpResponse:
    raise AppLimited("from the handler")


urlpatterns = [
    path("items/<int:item_id>", item),
    path("free", free),
    path("async", async_view),
    path("everything", Everything.as_view()),
    path("per-method", PerMethod.as_view()),
    path("async-class", AsyncView.as_view()),
    path("health", free),
    path("tenant", tenant_view),
    path("async-tenant", async_tenant_view),
]


@pytest.fixture
def rate_guard() -> Iterator[dict[str, Any]]:
    """`settings.RATE_GUARD` of the test (edit it before the first request), on a key prefix
    of its own."""
    config: dict[str, Any] = {"key_prefix": f"t{uuid.uuid4().hex[:12]}"}
    yield config


def configured(config: dict[str, Any], middleware: list[Any] | None = None) -> Any:
    return override_settings(
        RATE_GUARD=config, MIDDLEWARE=MIDDLEWARE if middleware is None else middleware
    )


def codes(c: Client, url: str, n: int, **kwargs: Any) -> list[int]:
    return [c.get(url, **kwargs).status_code for _ in range(n)]


def test_middleware_decides_global_and_view_limits_together(rate_guard: dict[str, Any]) -> None:
    rate_guard["global_rules"] = [{"limit": "5/minute"}]
    with configured(rate_guard):
        c = Client(REMOTE_ADDR=PEER)
        r = c.get("/items/1")
        assert r.json() == {"item_id": 1}
        assert (r["X-RateLimit-Limit"], r["X-RateLimit-Remaining"]) == ("2", "1")
        # Keyed by the URL pattern: other ids share the bucket.
        assert [c.get(f"/items/{i}").status_code for i in (2, 3, 4)] == [200, 429, 429]
        r = c.get("/items/5")
        assert r.json() == {"detail": "Rate limit exceeded: 2 per 1 minute"}
        assert r["Content-Type"] == "application/json"
        assert int(r["Retry-After"]) >= 1
        # Two admitted requests used the global quota of 5; the three denied ones did not.
        assert c.get("/free")["X-RateLimit-Remaining"] == "2"


def test_requests_reaching_no_view_count_against_the_global_rules(
    rate_guard: dict[str, Any],
) -> None:
    rate_guard["global_rules"] = [{"limit": "2/minute"}]
    with configured(rate_guard):
        c = Client(REMOTE_ADDR=PEER)
        r = c.get("/missing")
        assert (r.status_code, r["X-RateLimit-Remaining"]) == (404, "1")
        assert codes(c, "/missing", 2) == [404, 429]


def test_class_based_views_whole_and_per_method(rate_guard: dict[str, Any]) -> None:
    with configured(rate_guard):
        c = Client(REMOTE_ADDR=PEER)
        assert [c.get("/everything").status_code, c.post("/everything").status_code] == [200, 200]
        assert c.get("/everything").status_code == 429
        assert codes(c, "/per-method", 2) == [200, 429]
        assert [c.post("/per-method").status_code for _ in range(3)] == [200, 200, 429]


def test_the_decorator_decides_alone_without_the_middleware(rate_guard: dict[str, Any]) -> None:
    rate_guard["global_rules"] = [{"limit": "1/minute"}]  # the middleware's job: not applied
    with configured(rate_guard, middleware=[]):
        c = Client(REMOTE_ADDR=PEER)
        r = c.get("/items/1")
        assert (r.status_code, r["X-RateLimit-Remaining"]) == (200, "1")
        assert codes(c, "/items/2", 2) == [200, 429]
        assert codes(c, "/free", 2) == [200, 200]
        assert codes(c, "/per-method", 2) == [200, 429]
        assert [c.post("/per-method").status_code for _ in range(3)] == [200, 200, 429]
        assert codes(c, "/everything", 3) == [200, 200, 429]


@pytest.mark.parametrize("middleware", [MIDDLEWARE, []])
def test_async_views_under_the_async_handler(
    rate_guard: dict[str, Any], middleware: list[str]
) -> None:
    import asyncio

    async def run() -> list[tuple[int, str]]:
        c = AsyncClient(REMOTE_ADDR=PEER)
        out = []
        for url in ("/async", "/async", "/async-class", "/async-class"):
            r = await c.get(url)
            out.append((r.status_code, r.get("X-RateLimit-Remaining", "")))
        return out

    with configured(rate_guard, middleware=middleware):
        assert asyncio.run(run()) == [(200, "0"), (429, "0"), (200, "0"), (429, "0")]


def test_async_middleware_counts_unrouted_requests(rate_guard: dict[str, Any]) -> None:
    import asyncio

    rate_guard["global_rules"] = [{"limit": "1/minute"}]

    async def run() -> list[int]:
        c = AsyncClient(REMOTE_ADDR=PEER)
        return [(await c.get(url)).status_code for url in ("/missing", "/missing", "/free")]

    with configured(rate_guard):
        assert asyncio.run(run()) == [404, 429, 429]


@pytest.mark.parametrize("middleware", [MIDDLEWARE, []])
def test_an_async_key_func_keys_sync_and_async_views(
    rate_guard: dict[str, Any], middleware: list[str]
) -> None:
    import asyncio

    tenants = ("a", "b", "a")
    with configured(rate_guard, middleware=middleware):
        c = Client(REMOTE_ADDR=PEER)
        assert [c.get("/tenant", HTTP_X_TENANT=t).status_code for t in tenants] == [200, 200, 429]

        async def run() -> list[int]:
            c = AsyncClient(REMOTE_ADDR=PEER)
            return [
                (await c.get("/async-tenant", headers={"x-tenant": t})).status_code for t in tenants
            ]

        assert asyncio.run(run()) == [200, 200, 429]


def test_user_key_and_limited_handler_under_the_async_handler(rate_guard: dict[str, Any]) -> None:
    import asyncio

    rate_guard["global_rules"] = [{"limit": "1/minute", "key": "user"}]
    rate_guard["limited_handler"] = f"{__name__}.teapot"

    async def run() -> list[tuple[int, bytes]]:
        c = AsyncClient(REMOTE_ADDR=PEER)
        out = []
        for user in ("ann", "bob", "ann"):
            r = await c.get("/free", headers={"x-user": user})
            out.append((r.status_code, r.content))
        return out

    with configured(rate_guard, middleware=[f"{__name__}.fake_auth", *MIDDLEWARE]):
        assert asyncio.run(run()) == [
            (200, b"free"),
            (200, b"free"),
            (418, b"teapot: Rate limit exceeded: 1 per 1 minute"),
        ]


def test_user_key_reads_request_user(rate_guard: dict[str, Any]) -> None:
    rate_guard["global_rules"] = [{"limit": "1/minute", "key": "user"}]
    with configured(rate_guard, middleware=[f"{__name__}.fake_auth", *MIDDLEWARE]):
        c = Client(REMOTE_ADDR=PEER)
        users = ("ann", "bob", "ann")
        assert [c.get("/free", HTTP_X_USER=u).status_code for u in users] == [200, 200, 429]
        assert codes(c, "/free", 2) == [200, 429]  # no user: the client address


def test_switches_enabled_exempt_shadow(rate_guard: dict[str, Any]) -> None:
    base = {**rate_guard, "global_rules": [{"limit": "1/minute"}]}
    with configured({**base, "enabled": False}):
        r = Client(REMOTE_ADDR=PEER).get("/items/1")
        assert r.status_code == 200 and "X-RateLimit-Limit" not in r
        assert codes(Client(REMOTE_ADDR=PEER), "/items/1", 3) == [200, 200, 200]
    with configured({**base, "key_prefix": base["key_prefix"] + "e", "exempt_paths": ["/health"]}):
        c = Client(REMOTE_ADDR=PEER)
        assert codes(c, "/health", 3) == [200, 200, 200]
        assert codes(c, "/free", 2) == [200, 429]
    with configured({**base, "key_prefix": base["key_prefix"] + "s", "shadow_mode": True}):
        assert codes(Client(REMOTE_ADDR=PEER), "/items/1", 4) == [200, 200, 200, 200]


def test_limited_handler_from_settings(rate_guard: dict[str, Any]) -> None:
    rate_guard["limited_handler"] = f"{__name__}.teapot"
    for middleware in (MIDDLEWARE, []):
        with configured({**rate_guard, "key_prefix": uuid.uuid4().hex}, middleware=middleware):
            c = Client(REMOTE_ADDR=PEER)
            c.get("/items/1")
            c.get("/items/1")
            r = c.get("/items/1")
            assert r.status_code == 418
            assert r.content == b"teapot: Rate limit exceeded: 2 per 1 minute"
            assert int(r["Retry-After"]) >= 1


@pytest.mark.parametrize("middleware", [MIDDLEWARE, []])
def test_the_exception_class_is_raised_into_django(
    rate_guard: dict[str, Any], middleware: list[str]
) -> None:
    # django-ratelimit's RATELIMIT_EXCEPTION_CLASS: Django's handling answers the denial.
    rate_guard["exception_class"] = f"{__name__}.Ratelimited"
    with configured(rate_guard, middleware=middleware):
        assert codes(Client(REMOTE_ADDR=PEER), "/items/1", 3) == [200, 200, 403]
    rate_guard["exception_class"] = AppLimited
    rate_guard["key_prefix"] += "x"
    with configured(rate_guard, middleware=middleware):
        c = Client(REMOTE_ADDR=PEER)
        assert codes(c, "/items/1", 2) == [200, 200]
        with pytest.raises(AppLimited) as info:
            c.get("/items/1")
        assert info.value.__cause__.decision.remaining == 0  # type: ignore[union-attr]
        assert (
            Client(REMOTE_ADDR=PEER, raise_request_exception=False).get("/items/1").status_code
            == 500
        )


def test_the_exception_class_under_the_async_handler(rate_guard: dict[str, Any]) -> None:
    import asyncio

    rate_guard["exception_class"] = Ratelimited
    rate_guard["global_rules"] = [{"limit": "1/minute"}]

    async def run() -> list[int]:
        c = AsyncClient(REMOTE_ADDR=PEER)
        return [(await c.get(url)).status_code for url in ("/async", "/async", "/missing")]

    with configured(rate_guard):
        assert asyncio.run(run()) == [200, 403, 403]


@pytest.mark.parametrize("middleware", [MIDDLEWARE, []])
def test_an_exception_from_the_limited_handler_reaches_django(
    rate_guard: dict[str, Any], middleware: list[str]
) -> None:
    import asyncio

    rate_guard["limited_handler"] = broken_handler
    with configured(rate_guard, middleware=middleware):
        c = Client(REMOTE_ADDR=PEER)
        assert codes(c, "/items/1", 2) == [200, 200]
        with pytest.raises(AppLimited, match="from the handler"):
            c.get("/items/1")

        async def run() -> None:
            c = AsyncClient(REMOTE_ADDR=PEER)
            assert (await c.get("/async")).status_code == 200
            with pytest.raises(AppLimited, match="from the handler"):
                await c.get("/async")

        asyncio.run(run())


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"exception_class": "os.path.join"}, "exception_class"),
        ({"global_rules": [{"limit": "5/fortnight"}]}, "global_rules.0.limit"),
        ({"global_rules": [{"limit": "5/minute", "key": "cookie"}]}, "global_rules.0.key"),
        ({"redis_timeout": 0}, "redis_timeout"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies"),
        ({"headers": "fancy"}, "headers"),
        ({"global_rules": [{"limit": "5/minute", "key": "jwt:sub"}]}, "jwt_keys"),
        ({"redis_url": "http://nope"}, "redis"),
        ("not a dict", "must be a dict"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_field(setting: Any, message: str) -> None:
    with override_settings(RATE_GUARD=setting):
        with pytest.raises(ImproperlyConfigured, match="RATE_GUARD") as info:
            RateLimitMiddleware(lambda request: HttpResponse())
        assert message in str(info.value)


def test_a_bad_decorator_fails_at_import() -> None:
    with pytest.raises(ConfigError, match="fortnight"):
        rate_limit("1/fortnight")


def test_the_guard_follows_the_setting(rate_guard: dict[str, Any]) -> None:
    with configured(rate_guard):
        first = get_guard()
        assert get_guard() is first
    with configured({**rate_guard, "headers": "ietf"}):
        assert get_guard() is not first
        assert get_guard().config.headers == "ietf"


def test_client_address_behind_trusted_proxies_and_hostile_headers(
    rate_guard: dict[str, Any],
) -> None:
    rate_guard["global_rules"] = [
        {"limit": "1/minute"},
        {"limit": "5/minute", "key": "header:X-Api-Key"},
    ]
    rate_guard["trusted_proxies"] = ["10.0.0.0/8"]
    with configured(rate_guard):
        proxy = Client(REMOTE_ADDR="10.0.0.1")
        assert proxy.get("/free", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 200
        assert proxy.get("/free", HTTP_X_FORWARDED_FOR="203.0.113.2").status_code == 200
        assert proxy.get("/free", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.1").status_code == 429
        direct = Client(REMOTE_ADDR="198.51.100.1")
        assert direct.get("/free", HTTP_X_FORWARDED_FOR="203.0.113.3").status_code == 200
        assert direct.get("/free", HTTP_X_FORWARDED_FOR="203.0.113.4").status_code == 429
        # Huge and non-UTF-8 values (WSGI hands them over latin-1 decoded) are just values.
        odd = Client(REMOTE_ADDR="198.51.100.2")
        assert odd.get("/free", HTTP_X_API_KEY="\xff\xfe" + "k" * 1_000_000).status_code == 200

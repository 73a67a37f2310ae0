"""django-ratelimit's own scenarios (its `django_ratelimit/tests.py`) restated through Django's
test client against `rate_limit(...)`: `rate=` strings, callables `(group, request)` and their
dotted paths, `(count, seconds)` tuples, `None` and `"0/m"`, `group=` as one shared quota (on
memory and on Redis), `method=` with `ALL`/`UNSAFE`/lists, `block=False` and `request.limited`,
stacked decorators and class-based views. Each view answers whether it was limited, as
django-ratelimit's test views return `request.limited`."""

from __future__ import annotations

import asyncio
import logging
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

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from py_rate_guard import ConfigError
from py_rate_guard.adapters.django import ALL, UNSAFE, rate_limit

MIDDLEWARE = ["py_rate_guard.adapters.django.RateLimitMiddleware"]
PEER = "203.0.113.7"


class MockUser:
    """django-ratelimit's `MockUser`: pk 1, authenticated or not."""

    def __init__(self, authenticated: bool) -> None:
        self.pk = 1
        self.is_authenticated = authenticated


def mock_auth(get_response: Any) -> Any:
    """`X-Auth: 1` authenticates the request as user 1 (before the rate-limit middleware)."""

    def middleware(request: HttpRequest) -> Any:
        request.user = MockUser(request.headers.get("x-auth") == "1")  # type: ignore[assignment]
        return get_response(request)

    return middleware


def limited(request: HttpRequest) -> HttpResponse:
    return HttpResponse("limited" if request.limited else "ok")  # type: ignore[attr-defined]


def soft(rate: Any, **options: Any) -> Any:
    """`rate_limit(..., block=False)` on a fresh `limited` view."""

    def view(request: HttpRequest) -> HttpResponse:
        return limited(request)

    return rate_limit(rate=rate, block=False, **options)(view)


# What the rate callables saw: (group, path) pairs.
seen: list[tuple[str, str]] = []


def callable_rate(group: str, request: HttpRequest) -> Any:
    """django-ratelimit's `callable_rate`: no limit for authenticated users, (0, 1) for others."""
    seen.append((group, request.path))
    if request.user.is_authenticated:
        return None
    return (0, 1)


def get_rate(group: str, request: HttpRequest) -> Any:
    return (2, 60) if request.user.is_authenticated else (1, 60)


def rate_or_none(group: str, request: HttpRequest) -> Any:
    return None if request.headers.get("x-never-limit") else "1/m"


def zero_unless_authenticated(group: str, request: HttpRequest) -> Any:
    return "1/m" if request.user.is_authenticated else "0/m"


async def async_rate(group: str, request: HttpRequest) -> Any:
    await asyncio.sleep(0)
    return (1, 60) if request.headers.get("x-plan") != "pro" else (3, 60)


def broken_rate(group: str, request: HttpRequest) -> Any:
    if request.headers.get("x-break") == "raise":
        raise RuntimeError("the plan service is down")
    if request.headers.get("x-break") == "garbage":
        return {"not": "a rate"}
    return "1/m"


@rate_limit(rate=async_rate, block=False)
async def async_view(request: HttpRequest) -> HttpResponse:
    return limited(request)


class PostOnly(View):
    @method_decorator(rate_limit(rate="1/m", block=False))
    def post(self, request: HttpRequest) -> HttpResponse:
        return limited(request)


@method_decorator(rate_limit(rate="1/m", block=False), name="get")
class ClassDecorated(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return limited(request)


class Wrapped(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return limited(request)


class ByMethod(View):
    @method_decorator(rate_limit(rate="1/m", method="GET", block=False))
    def get(self, request: HttpRequest) -> HttpResponse:
        return limited(request)

    @method_decorator(rate_limit(rate="1/m", method="POST", block=False))
    def post(self, request: HttpRequest) -> HttpResponse:
        return limited(request)


class Another(View):
    @method_decorator(rate_limit(rate="1/m", method="GET", block=False))
    def get(self, request: HttpRequest) -> HttpResponse:
        return limited(request)


def stacked_views() -> list[Any]:
    @rate_limit(rate="1/m", block=False, key_func=lambda request: "min")
    @rate_limit(rate="10/d", block=False, key_func=lambda request: "day")
    def stacked(request: HttpRequest) -> HttpResponse:
        return limited(request)

    # One rate on one view is one count whatever the methods (unlike django-ratelimit, which
    # counts each method list apart): names count them apart.
    @rate_limit(rate="1/m", method="GET", block=False, name="get")
    @rate_limit(rate="1/m", method="POST", block=False, name="post")
    def stacked_methods(request: HttpRequest) -> HttpResponse:
        return limited(request)

    @rate_limit(rate="1/m", key="header:X-Real-Ip", block=False)
    @rate_limit(rate="1/m", key="header:X-Missing-Header", block=False)
    def by_header(request: HttpRequest) -> HttpResponse:
        return limited(request)

    return [stacked, stacked_methods, by_header]


stacked, stacked_methods, by_header = stacked_views()


urlpatterns = [
    path("ip", soft("1/m")),
    path("rate", soft("2/m")),
    path("block", rate_limit(rate="1/m")(limited)),
    path("method", soft("1/m", method="POST", group="a")),
    path("unsafe", soft("0/m", method=UNSAFE)),
    path("all", soft("1/m", method=ALL)),
    path("zero", soft("0/m")),
    path("block-all", rate_limit(rate="0/m")(limited)),
    path("none", soft(None)),
    path("callable", soft(get_rate, key="user")),
    path("callable-none", soft(rate_or_none)),
    path("callable-zero", soft(zero_unless_authenticated)),
    path("callable-import", soft(f"{__name__}.callable_rate", key="user")),
    path("callable-group", soft(callable_rate, group="tiers")),
    path("broken", soft(broken_rate)),
    path("broken-fallback", soft(broken_rate, fallback="2/m")),
    path("async", async_view),
    path("stacked", stacked),
    path("stacked-methods", stacked_methods),
    path("by-header", by_header),
    path("user-or-ip", soft("1/m", key="user")),
    path(
        "batch",
        soft(
            "5/m",
            cost=lambda request: int(request.headers.get("x-items", "1")),
            exempt_when=lambda request: request.headers.get("x-internal") == "1",
        ),
    ),
    path("sorted/get-post", soft("1/m", method=["GET", "POST"], group="sorted")),
    path("sorted/post-get", soft("1/m", method=("POST", "GET"), group="sorted")),
    path("shared/one", soft("2/m", group="shared")),
    path("shared/two", soft("2/m", group="shared")),
    path("alone/one", soft("2/m")),
    path("alone/two", soft("2/m")),
    path("post-only", PostOnly.as_view()),
    path("class-decorated", ClassDecorated.as_view()),
    path("wrapped", rate_limit(rate="1/m", block=False)(Wrapped.as_view())),
    path("by-method", ByMethod.as_view()),
    path("another", Another.as_view()),
]


@pytest.fixture(params=["middleware", "decorator"])
def mode(request: pytest.FixtureRequest) -> str:
    """Decided by the middleware, or by the decorated view alone."""
    return str(request.param)


@pytest.fixture
def client(mode: str) -> Iterator[Client]:
    """A client whose settings have a key prefix of their own (memory store)."""
    with configured({}, mode):
        yield Client(REMOTE_ADDR=PEER)


def configured(extra: dict[str, Any], mode: str, *, auth: bool = False) -> Any:
    chain = MIDDLEWARE if mode == "middleware" else []
    if auth:
        chain = [f"{__name__}.mock_auth", *chain]
    return override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=chain,
        RATE_GUARD={"key_prefix": f"t{uuid.uuid4().hex[:12]}", **extra},
    )


def answers(c: Client, url: str, n: int, method: str = "get", **kwargs: Any) -> list[str]:
    call = getattr(c, method)
    return [call(url, **kwargs).content.decode() for _ in range(n)]


def test_ip_and_rate(client: Client) -> None:
    assert answers(client, "/ip", 2) == ["ok", "limited"]
    assert answers(client, "/rate", 3, "post") == ["ok", "ok", "limited"]
    # Per client address.
    assert Client(REMOTE_ADDR="203.0.113.8").get("/ip").content == b"ok"


def test_block(client: Client) -> None:
    assert client.get("/block").content == b"ok"
    r = client.get("/block")
    assert r.status_code == 429 and int(r["Retry-After"]) >= 1


def test_block_raises_the_exception_class(mode: str) -> None:
    # django-ratelimit's test_ratelimit_custom_exception_class, and its Ratelimited default.
    class CustomRatelimitedException(Exception):
        pass

    with configured({"exception_class": CustomRatelimitedException}, mode):
        c = Client(REMOTE_ADDR=PEER)
        assert c.get("/block").content == b"ok"
        with pytest.raises(CustomRatelimitedException):
            c.get("/block")
    with configured({"exception_class": PermissionDenied}, mode):
        c = Client(REMOTE_ADDR=PEER)
        assert [c.get("/block").status_code for _ in range(2)] == [200, 403]


class CatchLimited:
    """django-ratelimit's RatelimitMiddleware: answers `Ratelimited` from `process_exception`
    (with its RATELIMIT_VIEW; here a 418)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if isinstance(exception, PermissionDenied):
            return HttpResponse("ratelimit view", status=418)
        return None


def test_process_exception_sees_the_exception_of_a_view_deciding_alone() -> None:
    # Without RateLimitMiddleware the decorated view raises from inside the view, where
    # Django calls other middleware's process_exception; with it, the exception comes from
    # process_view, which Django answers itself (403 for a PermissionDenied).
    for chain, denied in (
        ([f"{__name__}.CatchLimited"], 418),
        ([f"{__name__}.CatchLimited", *MIDDLEWARE], 403),
    ):
        with override_settings(
            ROOT_URLCONF=__name__,
            MIDDLEWARE=chain,
            RATE_GUARD={"key_prefix": uuid.uuid4().hex, "exception_class": PermissionDenied},
        ):
            c = Client(REMOTE_ADDR=PEER)
            assert [c.get("/block").status_code for _ in range(2)] == [200, denied]


def test_method(client: Client) -> None:
    assert answers(client, "/method", 2, "post") == ["ok", "limited"]
    assert answers(client, "/method", 2) == ["ok", "ok"]  # GET passes the POST limit


def test_unsafe_methods(client: Client) -> None:
    for method in ("get", "head", "options"):
        assert getattr(client, method)("/unsafe").status_code == 200
        assert getattr(client, method)("/unsafe").get("X-RateLimit-Limit") is None
    assert client.get("/unsafe").content == b"ok"
    for method in ("delete", "post", "put", "patch"):
        assert getattr(client, method)("/unsafe").content == b"limited", method
    assert answers(client, "/all", 2, "delete") == ["ok", "limited"]


def test_zero_rate(client: Client) -> None:
    assert answers(client, "/zero", 2, "post") == ["limited", "limited"]
    # Blocking: a 429 that no wait cures (no Retry-After), the limit shown as 0.
    r = client.get("/block-all")
    assert (r.status_code, r["X-RateLimit-Limit"], r["X-RateLimit-Remaining"]) == (429, "0", "0")
    assert "Retry-After" not in r


def test_none_rate(client: Client) -> None:
    assert answers(client, "/none", 7, "post") == ["ok"] * 7


def test_callable_rate(mode: str) -> None:
    with configured({}, mode, auth=True):
        c = Client(REMOTE_ADDR=PEER)
        assert answers(c, "/callable", 2, "post") == ["ok", "limited"]
        authenticated = answers(c, "/callable", 3, "post", HTTP_X_AUTH="1")
        assert authenticated == ["ok", "ok", "limited"]


def test_callable_rate_none(client: Client) -> None:
    assert answers(client, "/callable-none", 2, "post") == ["ok", "limited"]
    never = answers(client, "/callable-none", 2, "post", HTTP_X_NEVER_LIMIT="1")
    assert never == ["ok", "ok"]


def test_callable_rate_zero(mode: str) -> None:
    with configured({}, mode, auth=True):
        c = Client(REMOTE_ADDR=PEER)
        assert answers(c, "/callable-zero", 1, "post") == ["limited"]
        assert answers(c, "/callable-zero", 2, "post", HTTP_X_AUTH="1") == ["ok", "limited"]


def test_callable_rate_import_and_its_group(mode: str) -> None:
    seen.clear()
    with configured({}, mode, auth=True):
        c = Client(REMOTE_ADDR=PEER)
        assert answers(c, "/callable-import", 1, "post") == ["limited"]
        assert answers(c, "/callable-import", 2, "post", HTTP_X_AUTH="1") == ["ok", "ok"]
        assert answers(c, "/callable-group", 1) == ["limited"]
    # The group: the one given, else the view's dotted name (django-ratelimit's default).
    view_name = f"{__name__}.soft.<locals>.view"
    assert seen[0] == (view_name, "/callable-import")
    assert seen[-1] == ("tiers", "/callable-group")


def test_async_rate_callable_under_the_async_handler(mode: str) -> None:
    async def run() -> list[str]:
        c = AsyncClient(REMOTE_ADDR=PEER)
        out = [(await c.get("/async")).content.decode() for _ in range(2)]
        out += [(await c.get("/async", headers={"x-plan": "pro"})).content.decode()]
        return out

    with configured({}, mode):
        # Free: 1 a minute; pro: 3 a minute (one count under the view's pattern).
        assert asyncio.run(run()) == ["ok", "limited", "ok"]


def test_a_broken_rate_callable_never_fails_the_request(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="py_rate_guard"):
        # Without a fallback the limit is left out for that request.
        assert answers(client, "/broken", 3, HTTP_X_BREAK="raise") == ["ok"] * 3
        # With one, the fallback decides.
        fallback = answers(client, "/broken-fallback", 3, HTTP_X_BREAK="garbage")
        assert fallback == ["ok", "ok", "limited"]
        assert answers(client, "/broken-fallback", 1) == ["ok"]  # "1/m": its own count
    assert "the plan service is down" in caplog.text
    assert "not a rate string" in caplog.text
    # Logged once per limit per minute, not once per request.
    assert caplog.text.count("Traceback") == 1
    assert caplog.text.count("not a rate string") == 1


def test_key_header(client: Client) -> None:
    # A missing header falls back to the client address (django-ratelimit counts "" instead).
    assert answers(client, "/by-header", 2, "post", HTTP_X_REAL_IP="1.2.3.4") == [
        "ok",
        "limited",
    ]


def test_user_or_ip(mode: str) -> None:
    # django-ratelimit's key="user_or_ip" is key="user": anonymous requests count by address.
    with configured({}, mode, auth=True):
        c = Client(REMOTE_ADDR=PEER)
        assert answers(c, "/user-or-ip", 2, "post") == ["ok", "limited"]
        assert answers(c, "/user-or-ip", 2, "post", HTTP_X_AUTH="1") == ["ok", "limited"]


@pytest.mark.parametrize(
    ("prefix", "addresses", "expected"),
    [
        (32, ["10.1.1.1", "10.1.1.1", "10.1.1.2"], ["ok", "limited", "ok"]),
        (16, ["10.1.1.1", "10.1.0.1", "192.168.1.1"], ["ok", "limited", "ok"]),
    ],
)
def test_ratelimit_mask_v4(
    mode: str, prefix: int, addresses: list[str], expected: list[str]
) -> None:
    # RATELIMIT_IPV4_MASK is ipv4_prefix.
    with configured({"ipv4_prefix": prefix}, mode):
        got = [Client(REMOTE_ADDR=a).get("/ip").content.decode() for a in addresses]
        assert got == expected


@pytest.mark.parametrize(
    ("prefix", "addresses", "expected"),
    [
        (128, ["2001:db8::1000", "2001:db8::1000", "2001:db8::1001"], ["ok", "limited", "ok"]),
        (64, ["2001:db8::1000", "2001:db8::1001", "2001:db9::1000"], ["ok", "limited", "ok"]),
    ],
)
def test_ratelimit_mask_v6(
    mode: str, prefix: int, addresses: list[str], expected: list[str]
) -> None:
    # RATELIMIT_IPV6_MASK is ipv6_prefix.
    with configured({"ipv6_prefix": prefix}, mode):
        got = [Client(REMOTE_ADDR=a).get("/ip").content.decode() for a in addresses]
        assert got == expected


def test_costs_and_exemptions_from_the_request(client: Client) -> None:
    # The shared layer's cost= and exempt_when= through Django's decorator.
    assert answers(client, "/batch", 1, HTTP_X_ITEMS="4") == ["ok"]
    assert answers(client, "/batch", 1, HTTP_X_ITEMS="2") == ["limited"]  # 4 + 2 > 5
    assert answers(client, "/batch", 1) == ["ok"]  # 4 + 1
    assert answers(client, "/batch", 3, HTTP_X_INTERNAL="1") == ["ok"] * 3


def test_stacked_decorator(client: Client) -> None:
    # The second decorator must not reset request.limited back to False.
    assert answers(client, "/stacked", 2, "post") == ["ok", "limited"]


def test_stacked_methods(client: Client) -> None:
    assert client.get("/stacked-methods").content == b"ok"
    assert client.post("/stacked-methods").content == b"ok"
    assert client.get("/stacked-methods").content == b"limited"
    assert client.post("/stacked-methods").content == b"limited"


def test_sorted_methods(client: Client) -> None:
    # One group: the order of the methods does not matter.
    assert client.get("/sorted/get-post").content == b"ok"
    assert client.get("/sorted/post-get").content == b"limited"


def test_a_group_is_one_quota_for_every_view(client: Client) -> None:
    assert answers(client, "/shared/one", 1) + answers(client, "/shared/two", 2) == [
        "ok",
        "ok",
        "limited",
    ]
    # Without a group, each URL pattern counts alone.
    assert answers(client, "/alone/one", 2) + answers(client, "/alone/two", 2) == ["ok"] * 4


def test_a_group_is_one_quota_on_redis(redis_url: str, mode: str) -> None:
    with configured({"redis_url": redis_url, "redis_timeout": 2.0}, mode):
        c = Client(REMOTE_ADDR=PEER)
        assert answers(c, "/shared/one", 1) + answers(c, "/shared/two", 2) == [
            "ok",
            "ok",
            "limited",
        ]
        assert answers(c, "/sorted/get-post", 1) + answers(c, "/sorted/post-get", 1) == [
            "ok",
            "limited",
        ]
        assert answers(c, "/alone/one", 2) + answers(c, "/alone/two", 2) == ["ok"] * 4


def test_class_based_views(client: Client) -> None:
    # test_method_decorator, test_class_decorator, test_wrap_view
    assert answers(client, "/post-only", 2, "post") == ["ok", "limited"]
    assert answers(client, "/class-decorated", 2) == ["ok", "limited"]
    assert answers(client, "/wrapped", 2) == ["ok", "limited"]


def test_methods_and_views_counted_separately(client: Client) -> None:
    assert answers(client, "/by-method", 2) == ["ok", "limited"]
    assert answers(client, "/by-method", 1, "post") == ["ok"]
    assert answers(client, "/another", 1) == ["ok"]


def test_request_limited_is_false_when_nothing_refused(client: Client) -> None:
    assert client.get("/none").content == b"ok"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, TypeError, "needs a limit"),
        ({"limit": "1/m", "rate": "1/m"}, TypeError, "not both"),
        ({"rate": "1/fortnight"}, ConfigError, "fortnight"),
        ({"rate": "100/10"}, ConfigError, "100/10"),
        ({"rate": "no.such.rate"}, ConfigError, "cannot be imported"),
        ({"rate": "1/m", "method": []}, ConfigError, "methods"),
        ({"rate": "1/m", "group": "a", "scope": "b"}, TypeError, "not both"),
    ],
)
def test_bad_declarations_fail_at_import(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        rate_limit(**kwargs)(limited)


def test_a_group_is_shared_with_a_starlette_scope_on_redis(redis_url: str) -> None:
    # A group is the engine's named scope: a Starlette endpoint declaring the scope (slowapi's
    # shared_limit) counts against the same quota as the Django views of the group.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from py_rate_guard.adapters.starlette import StarletteRateGuard
    from py_rate_guard.models.config import RateGuardConfig

    prefix = f"t{uuid.uuid4().hex[:12]}"
    guard = StarletteRateGuard(
        RateGuardConfig(redis_url=redis_url, redis_timeout=2.0, key_prefix=prefix)
    )

    @guard.shared_limit("2/m", scope="shared")
    async def elsewhere(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/elsewhere", elsewhere)])
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=MIDDLEWARE,
        RATE_GUARD={"key_prefix": prefix, "redis_url": redis_url, "redis_timeout": 2.0},
    ):
        django_client = Client(REMOTE_ADDR=PEER)
        assert answers(django_client, "/shared/one", 1) == ["ok"]
        starlette_client = TestClient(app, client=(PEER, 1))
        assert starlette_client.get("/elsewhere").status_code == 200
        assert answers(django_client, "/shared/two", 1) == ["limited"]
        assert starlette_client.get("/elsewhere").status_code == 429


def test_limits_of_two_groups_on_one_view_fail_at_import() -> None:
    # A request's limits are decided together under one scope: django-ratelimit's independent
    # decorators of two groups on one view have no equivalent, and say so at import.
    with pytest.raises(ConfigError, match="group"):

        @rate_limit(rate="1/m", group="a")
        @rate_limit(rate="2/m")
        def view(request: HttpRequest) -> HttpResponse:
            return limited(request)

    with pytest.raises(ConfigError, match="several scopes"):

        @rate_limit(rate="2/m")
        class Mixed(View):
            @rate_limit(rate="1/m", group="g")
            def get(self, request: HttpRequest) -> HttpResponse:
                return limited(request)

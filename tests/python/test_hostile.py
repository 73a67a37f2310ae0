"""Hostile and extreme input (issue 12): every value the models accept, the engine accepts;
every value refused is refused where it is written, with an error naming the field, the value
and the range; call arguments are checked alike (`ConfigError`, never `OverflowError`).

Each Redis case ends with the server still answering PING.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import jwt
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

from django.http import HttpRequest, JsonResponse
from django.test import Client as DjangoClient
from django.test.utils import override_settings
from django.urls import path
from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from py_rate_guard import ConfigError, RateGuard, RateGuardError, _native
from py_rate_guard.adapters import django as django_adapter
from py_rate_guard.adapters.fastapi import FastAPIRateGuard
from py_rate_guard.adapters.fastapi import RateLimitMiddleware as FastAPIMiddleware
from py_rate_guard.adapters.starlette import RateLimitMiddleware, StarletteRateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

C = RateGuardConfig
R = RateLimitRule
U32 = 2**32 - 1
INTS = {field: (low, high) for field, low, high in _native.int_ranges()}
SECONDS = {field: (low, high) for field, low, high in _native.seconds_ranges()}
CONFIG_INTS = [f for f in INTS if f in C.model_fields]
RULE_INTS = [f for f in INTS if f in R.model_fields and f != "limit"]  # limit: a rate string


# -- helpers ------------------------------------------------------------------------------


def ping(url: str) -> bool:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@pytest.fixture
def redis_alive(store: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """After a Redis case, the server still answers PING."""
    yield
    if store == "redis":
        assert ping(request.getfixturevalue("redis_url"))


def config_for(store: str, request: pytest.FixtureRequest, **fields: Any) -> RateGuardConfig:
    fields.setdefault("key_prefix", f"t{uuid.uuid4().hex[:12]}")
    if store == "redis":
        fields.setdefault("redis_url", request.getfixturevalue("redis_url"))
        fields.setdefault("redis_timeout", 2.0)
    return C(**fields)


def refused(error: ValidationError | ConfigError, field: str, value: str, low: Any, high: Any):
    """The error names the field, the value and the range."""
    text = str(error)
    assert field in text, text
    assert value in text, text
    assert f"from {low} to {high}" in text, text


def seconds(value: float) -> str:
    """Seconds as the engine writes a range: `60`, `0.001`."""
    return str(int(value)) if value == int(value) else str(value)


# -- 9: numbers are checked where they are written ----------------------------------------


@pytest.mark.parametrize("field", CONFIG_INTS)
def test_config_integers_out_of_range_are_validation_errors(field: str) -> None:
    low, high = INTS[field]
    for bad in (low - 1, high + 1, 2**40, 2**64, 2**70, -(2**64)):
        if low <= bad <= high:
            continue
        with pytest.raises(ValidationError) as caught:
            C(**{field: bad})
        refused(caught.value, field, str(bad), low, high)
        assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("field", CONFIG_INTS)
def test_config_integers_at_both_ends_build_a_guard(field: str) -> None:
    low, high = INTS[field]
    for good in (low, high):
        guard = RateGuard(C(**{field: good}))
        assert guard.hit("a", "1/minute").allowed


def durations(field: str, value: float) -> dict[str, float]:
    """`field=value`, with cooldowns that keep the maximum at least the minimum."""
    if field == "breaker_cooldown":
        return {field: value, "breaker_max_cooldown": 86_400.0}
    if field == "breaker_max_cooldown":
        return {field: value, "breaker_cooldown": 0.001}
    return {field: value}


@pytest.mark.parametrize("field", list(SECONDS))
def test_config_durations_out_of_range_are_validation_errors(field: str) -> None:
    low, high = SECONDS[field]
    cases = {"0.0": 0.0, "-1.0": -1.0, "1e+300": 1e300, "inf": math.inf, "nan": math.nan}
    cases[repr(high * 2)] = high * 2
    for shown, bad in cases.items():
        with pytest.raises(ValidationError) as caught:
            C(**durations(field, bad))
        text = str(caught.value)
        assert (
            f"{field} must be from {seconds(low)} to {seconds(high)} seconds, not {shown}" in text
        ), text
    for good in (low, high):
        assert RateGuard(C(**durations(field, good))).hit("a", "1/minute").allowed


def test_redis_timeout_of_1e300_says_its_range() -> None:
    with pytest.raises(
        ValidationError, match=r"redis_timeout must be from 0\.001 to 60 seconds, not 1e\+300"
    ):
        C(redis_timeout=1e300)


def test_numbers_from_the_environment_are_checked_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_GUARD_REDIS_POOL_SIZE", "1000000000")
    with pytest.raises(
        ValidationError, match="redis_pool_size must be from 1 to 256, not 1000000000"
    ):
        C()
    monkeypatch.setenv("RATE_GUARD_REDIS_POOL_SIZE", "9" * 60)
    with pytest.raises(ValidationError, match="redis_pool_size must be from 1 to 256"):
        C()


@pytest.mark.parametrize("field", RULE_INTS)
def test_rule_integers_out_of_range_are_validation_errors(field: str) -> None:
    low, high = INTS[field]
    for bad in (0, -1, U32 + 1, 2**63, 2**64, 2**200):
        with pytest.raises(ValidationError) as caught:
            R(limit="5/minute", algorithm="token_bucket", **{field: bad})
        refused(caught.value, field, str(bad), low, high)


def test_rule_limits_the_engine_cannot_hold_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="4294967296"):
        R(limit="4294967296/hour")
    with pytest.raises(ValidationError, match="sliding_log"):
        R(limit="10001/hour", algorithm="sliding_log")
    assert R(limit="10000/hour", algorithm="sliding_log")
    with pytest.raises(ValidationError, match="max 10000 days"):
        R(limit="1/10001 days")
    assert R(limit="1/10000 days")
    assert R(limit=f"{U32}/hour", algorithm="token_bucket", burst=U32, cost=U32)


def test_token_bucket_refill_time_is_bounded() -> None:
    # burst x period / limit: 4294967295 x 1 day / 1 is far past 10,000 days.
    with pytest.raises(ValidationError, match=r"10000 days|10,000 days|refill"):
        R(limit="1/day", algorithm="token_bucket", burst=U32)


def test_key_specs_are_parsed_by_the_http_front() -> None:
    with pytest.raises(ValidationError) as caught:
        R(limit="5/minute", key="jwt:https://example.com/tenant")
    text = str(caught.value)
    assert "key" in text and "jwt:https://example.com/tenant" in text and "':'" in text
    for bad in ("header:X Api", "cookie:x", "header:" + "x" * 65, "IP"):
        with pytest.raises(ValidationError, match="invalid key spec"):
            R(limit="5/minute", key=bad)
    for good in ("ip", "global", "user", "header:X-Api-Key", "jwt:sub", "jwt:https//example.com/t"):
        assert R(limit="5/minute", key=good).key == good


def test_trusted_proxies_are_parsed_by_the_http_front() -> None:
    for bad in ("10.0.0.0/255.0.0.0", "10.0.0.0/33", "example.com", "", "::1/129"):
        with pytest.raises(ValidationError) as caught:
            C(trusted_proxies=[bad])
        assert "trusted_proxies" in str(caught.value) and repr(bad)[1:-1] in str(caught.value)
    config = C(trusted_proxies=["10.0.0.0/8", "2001:db8::/32", "unix", "192.0.2.1"])
    assert RateGuard(config).hit("a", "1/minute").allowed


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, RateGuardError)
    with pytest.raises(ValueError, match="cost"):
        RateGuard().hit("a", "1/minute", cost=0)


BAD_COSTS: list[tuple[Any, str]] = [
    (0, "0"),
    (-1, "-1"),
    (U32 + 1, str(U32 + 1)),
    (2**64, str(2**64)),
    (2**200, str(2**200)[:20]),
    (1.5, "1.5"),
    ("3", "'3'"),
    (True, "True"),
]


@pytest.mark.parametrize(("cost", "shown"), BAD_COSTS)
def test_call_costs_out_of_range_are_config_errors(
    store: str, request: pytest.FixtureRequest, redis_alive: None, cost: Any, shown: str
) -> None:
    guard = RateGuard(config_for(store, request))
    calls: list[Callable[[], Any]] = [
        lambda: guard.hit("a", "5/minute", cost=cost),
        lambda: guard.peek("a", "5/minute", cost=cost),
        lambda: guard.hit_many([("a", "5/minute")], cost=cost),
        lambda: asyncio.run(guard.ahit("a", "5/minute", cost=cost)),
        lambda: asyncio.run(guard.apeek("a", "5/minute", cost=cost)),
        lambda: asyncio.run(guard.ahit_many([("a", "5/minute")], cost=cost)),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as caught:
            call()
        refused(caught.value, "cost", shown, 1, U32)
    assert guard.hit("a", "5/minute").remaining == 4


@pytest.mark.parametrize("cost", [2**40, 2**64, -1])
def test_decorator_costs_out_of_range_fail_at_decoration(cost: int) -> None:
    starlette = StarletteRateGuard(C())
    fastapi = FastAPIRateGuard(C())
    for decorate in (
        lambda: starlette.limit("5/minute", cost=cost),
        lambda: fastapi.limit("5/minute", cost=cost),
        lambda: django_adapter.rate_limit("5/minute", cost=cost),
    ):
        with pytest.raises(ConfigError) as caught:
            decorate()
        refused(caught.value, "cost", str(cost), 1, U32)


def test_the_largest_counts_are_decided(
    store: str, request: pytest.FixtureRequest, redis_alive: None
) -> None:
    guard = RateGuard(config_for(store, request))
    bucket = R(limit=f"{U32}/hour", algorithm="token_bucket", burst=U32)
    assert guard.hit("a", bucket, cost=U32).allowed
    assert not guard.hit("a", bucket, cost=U32).allowed
    log = R(limit="10000/hour", algorithm="sliding_log")
    assert guard.hit("b", log, cost=10_000).remaining == 0
    assert not guard.hit("b", log).allowed


# -- 15a: identities ----------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["", 5, None, b"a", "\ud800"])
def test_bad_identities_are_config_errors(
    store: str, request: pytest.FixtureRequest, redis_alive: None, identity: Any
) -> None:
    guard = RateGuard(config_for(store, request))
    for call in (
        lambda: guard.hit(identity, "5/minute"),
        lambda: guard.peek(identity, "5/minute"),
        lambda: guard.reset(identity, "5/minute"),
        lambda: guard.hit_many([(identity, "5/minute")]),
        lambda: asyncio.run(guard.ahit(identity, "5/minute")),
        lambda: asyncio.run(guard.apeek(identity, "5/minute")),
    ):
        with pytest.raises(ConfigError, match="identity"):
            call()
    assert guard.hit("a", "5/minute").remaining == 4


def test_an_empty_key_func_value_falls_back_to_the_client_address() -> None:
    guard = StarletteRateGuard(C(global_rules=[R(limit="2/minute", key_func=lambda r: "")]))

    async def home(request: Any) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(RateLimitMiddleware, guard=guard)
    one = TestClient(app, client=("203.0.113.1", 1))
    two = TestClient(app, client=("203.0.113.2", 1))
    assert [one.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert two.get("/").status_code == 200  # its own address, not a bucket shared by ""
    front = _native.Front({"global_rules": [{"limit": "2/minute", "key": "custom"}]})
    assert front.plan("203.0.113.9", [], custom="").items[0][1] == "ip:203.0.113.9"


# -- 6: a rule's own cost ------------------------------------------------------------------


def test_a_rules_own_cost_is_its_default(
    store: str, request: pytest.FixtureRequest, redis_alive: None
) -> None:
    guard = RateGuard(config_for(store, request))
    heavy = R(limit="5/minute", cost=3)
    assert guard.peek("y", heavy).allowed
    assert guard.hit("y", heavy).remaining == 2
    assert not guard.peek("y", heavy).allowed  # 3 more do not fit
    assert guard.peek("y", heavy, cost=2).allowed  # an explicit cost overrides
    assert guard.hit("y", heavy, cost=1).remaining == 1
    assert asyncio.run(guard.ahit("z", heavy)).remaining == 2
    assert asyncio.run(guard.apeek("z", heavy, cost=1)).allowed
    assert guard.hit_many([("w", heavy)]).remaining == 2
    assert guard.hit("v", "5/minute").remaining == 4  # a rate string weighs 1


def test_rules_of_different_costs_are_each_charged_their_own(
    store: str, request: pytest.FixtureRequest, redis_alive: None
) -> None:
    guard = RateGuard(config_for(store, request))
    light = R(limit="5/minute", name="light")
    heavy = R(limit="10/minute", cost=3, name="heavy")
    assert guard.hit("y", [light, heavy]).allowed
    # light paid 1 (4 left), heavy paid 3 (7 left): each rule alone says so.
    assert guard.peek("y", light).remaining == 4
    assert guard.hit("y", heavy).remaining == 4
    # An explicit cost is charged to every rule.
    assert guard.hit("x", [light, heavy], cost=2).remaining == 3
    assert guard.peek("x", heavy).remaining == 8


def test_route_limits_charge_the_rules_cost() -> None:
    guard = StarletteRateGuard(C())

    @guard.limit("5/minute", cost=3)
    async def heavy(request: Any) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/h", heavy)])
    app.add_middleware(RateLimitMiddleware, guard=guard)
    c = TestClient(app)
    first = c.get("/h")
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining"] == "2"
    assert c.get("/h").status_code == 429


# -- 7: one name, one definition -------------------------------------------------------------


def test_two_definitions_of_one_name_are_refused_when_first_seen(
    store: str, request: pytest.FixtureRequest, redis_alive: None
) -> None:
    guard = RateGuard(config_for(store, request))
    small = R(limit="2/minute", name="api")
    large = R(limit="100/minute", name="api", algorithm="fixed_window")
    assert guard.hit("y", small).allowed
    for call in (
        lambda: guard.hit("y", large),
        lambda: guard.peek("y", large),
        lambda: guard.hit_many([("z", large)]),
        lambda: asyncio.run(guard.ahit("y", large)),
        lambda: guard.hit("y", [small, large]),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        text = str(caught.value)
        assert "'api'" in text or '"api"' in text, text
        assert "2/minute (sliding_window" in text and "100/minute (fixed_window" in text, text
    assert guard.hit("y", small).allowed
    assert not guard.hit("y", R(limit="2/minute", name="api")).allowed  # same definition


def test_two_definitions_of_one_name_among_global_rules_fail_the_guard() -> None:
    config = C(global_rules=[R(limit="2/minute", name="api"), R(limit="3/minute", name="api")])
    with pytest.raises(ConfigError, match=r"2/minute .* 3/minute"):
        RateGuard(config)
    with pytest.raises(ConfigError, match=r"2/minute .* 3/minute"):
        StarletteRateGuard(config)
    guard = RateGuard(C(global_rules=[R(limit="2/minute", name="api")]))
    with pytest.raises(ConfigError, match="api"):
        guard.hit("ip:203.0.113.1", R(limit="9/minute", name="api"))
    twice = C(global_rules=[R(limit="2/minute", name="api"), R(limit="2/minute", name="api")])
    assert RateGuard(twice).hit("a", R(limit="2/minute", name="api")).allowed


def test_two_definitions_of_one_name_on_one_endpoint_fail_at_decoration() -> None:
    guard = StarletteRateGuard(C())
    with pytest.raises(ConfigError, match=r"'api'.*2/minute.*100/minute"):

        @guard.limit("100/minute", name="api", algorithm="fixed_window")
        @guard.limit("2/minute", name="api")
        async def view(request: Any) -> JSONResponse:
            return JSONResponse({})

    with pytest.raises(ConfigError, match="api"):

        @django_adapter.rate_limit("100/minute", name="api")
        @django_adapter.rate_limit("2/minute", name="api")
        def django_view(request: HttpRequest) -> JsonResponse:
            return JsonResponse({})


# -- 12: numeric JWT claims keep their exact value -------------------------------------------

SECRET = "an HMAC secret of at least 32 bytes"


def test_numeric_jwt_subjects_beyond_2_53_are_distinct_buckets(
    store: str, request: pytest.FixtureRequest, redis_alive: None
) -> None:
    config = config_for(
        store, request, jwt_keys=[SECRET], global_rules=[R(limit="1/minute", key="jwt:sub")]
    )
    guard = StarletteRateGuard(config)
    assert guard.global_only is not None

    def outcome(sub: int) -> Any:
        token = jwt.encode({"sub": sub, "exp": int(time.time()) + 300}, SECRET, "HS256")
        headers = [(b"authorization", f"Bearer {token}".encode())]
        plan = guard.front.plan("203.0.113.9", headers)
        return plan.items[0][1], guard.front.decide(guard._guard, plan)

    for sub in (2**64, 2**64 + 1, 2**53 + 1, 2**53):
        identity, first = outcome(sub)
        assert identity == f"jwt:sub:{sub}"
        assert first.allowed, sub  # a bucket of its own
        assert not outcome(sub)[1].allowed


# -- 8: stacked key functions ---------------------------------------------------------------


def tenant(request: Any) -> str | None:
    return request.headers.get("x-tenant")


def team(request: Any) -> str | None:
    return request.headers.get("x-team")


async def ateam(request: Any) -> str | None:
    return request.headers.get("x-team")


def stacked_requests(get: Callable[[dict[str, str]], int]) -> None:
    """Per tenant 2, per team 3: each rule counts by its own function."""
    assert get({"x-tenant": "t1", "x-team": "a"}) == 200
    assert get({"x-tenant": "t1", "x-team": "b"}) == 200
    assert get({"x-tenant": "t1", "x-team": "c"}) == 429  # tenant t1 spent
    assert get({"x-tenant": "t2", "x-team": "a"}) == 200  # team a: 2 of 3
    assert get({"x-tenant": "t3", "x-team": "a"}) == 200  # team a: 3 of 3
    assert get({"x-tenant": "t4", "x-team": "a"}) == 429  # team a spent


@pytest.mark.parametrize("middleware", [True, False])
@pytest.mark.parametrize("team_func", [team, ateam])
def test_stacked_key_funcs_key_each_rule_starlette(
    middleware: bool, team_func: Callable[..., Any]
) -> None:
    guard = StarletteRateGuard(C())

    @guard.limit("2/minute", key_func=tenant, name="per-tenant")
    @guard.limit("3/minute", key_func=team_func, name="per-team")
    async def view(request: Any) -> JSONResponse:
        return JSONResponse({})

    @guard.limit("2/minute", key_func=tenant, name="per-tenant")
    @guard.limit("3/minute", key_func=team_func, name="per-team")
    def sync_view(request: Any) -> JSONResponse:
        return JSONResponse({})

    for route in ("/a", "/s"):
        app = Starlette(routes=[Route("/a", view), Route("/s", sync_view)])
        if middleware:
            app.add_middleware(RateLimitMiddleware, guard=guard)
        with TestClient(app) as c:
            stacked_requests(lambda h, route=route, c=c: c.get(route, headers=h).status_code)


def test_stacked_key_funcs_key_each_rule_fastapi() -> None:
    guard = FastAPIRateGuard(C(global_rules=[R(limit="100/minute", key_func=tenant)]))
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, guard=guard)

    @app.get("/x")
    @guard.limit("2/minute", key_func=tenant, name="per-tenant")
    @guard.limit("3/minute", key_func=team, name="per-team")
    async def x(request: Request) -> dict[str, int]:
        return {}

    with TestClient(app) as c:
        stacked_requests(lambda h: c.get("/x", headers=h).status_code)


@django_adapter.rate_limit("2/minute", key_func=tenant, name="per-tenant")
@django_adapter.rate_limit("3/minute", key_func=team, name="per-team")
def django_stacked(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("stacked", django_stacked)]


@pytest.mark.parametrize("middleware", [True, False])
def test_stacked_key_funcs_key_each_rule_django(middleware: bool) -> None:
    chain = ["py_rate_guard.adapters.django.RateLimitMiddleware"] if middleware else []
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=chain,
        RATE_GUARD={"key_prefix": f"t{uuid.uuid4().hex[:12]}"},
    ):
        c = DjangoClient()

        def get(h: dict[str, str]) -> int:
            return c.get("/stacked", headers=h).status_code

        stacked_requests(get)


# -- allocation cases, under a 3 GiB address-space limit ------------------------------------

_ALLOCATION_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from pydantic import ValidationError
from py_rate_guard import ConfigError, RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

url = sys.argv[1] if len(sys.argv) > 1 else None
refusals = [
    lambda: RateLimitRule(limit="4294967295/hour", algorithm="sliding_log"),
    lambda: RateGuardConfig(redis_pool_size=10**9),
    lambda: RateGuardConfig(memory_max_keys=2**70),
    lambda: RateGuardConfig(deny_cache_size=2**40),
    lambda: RateLimitRule(limit="1/second", algorithm="token_bucket", burst=2**32),
]
for refusal in refusals:
    try:
        refusal()
    except ValidationError:
        pass
    else:
        raise SystemExit(f"accepted: {refusal}")
guard = RateGuard(RateGuardConfig(redis_url=url, redis_timeout=5.0, key_prefix="alloc"))
log = RateLimitRule(limit="10000/hour", algorithm="sliding_log")
assert guard.hit("a", log, cost=10000).allowed
assert not guard.hit("a", log).allowed
try:
    guard.hit("a", "4294967295/hour", cost=2**64)
except ConfigError:
    pass
print("ok")
"""


def test_allocation_cases_exit_normally_under_a_memory_limit(
    store: str, request: pytest.FixtureRequest, redis_alive: None
) -> None:
    argv = [sys.executable, "-c", textwrap.dedent(_ALLOCATION_SCRIPT)]
    if store == "redis":
        argv.append(request.getfixturevalue("redis_url"))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


# -- the docs state every range --------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _doc_ranges() -> dict[str, str]:
    """`field -> range text` from the docs' table of ranges (`| `field` | from | to | ...`)."""
    text = DOCS.read_text()
    section = text.split("## Ranges", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", section, re.MULTILINE)
    return {field: f"{low.strip()}..{high.strip()}" for field, low, high in rows}


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else str(value)


def test_the_docs_state_every_range_of_the_engine() -> None:
    documented = _doc_ranges()
    expected = {field: f"{_number(low)}..{_number(high)}" for field, (low, high) in INTS.items()}
    expected |= {
        field: f"{_number(low)} s..{_number(high)} s" for field, (low, high) in SECONDS.items()
    }
    assert documented == expected


# -- values the engine would refuse later are refused by the model --------------------------


def test_a_bad_key_prefix_or_redis_url_is_refused_by_the_model_without_showing_a_password() -> None:
    with pytest.raises(ValidationError) as bad:
        RateGuardConfig(key_prefix="x" * 65)
    assert "key_prefix" in str(bad.value) and "longer than 64" in str(bad.value)
    with pytest.raises(ValidationError) as bad:
        RateGuardConfig(redis_url="redis://:hunter2@[::1/0")
    assert "redis_url" in str(bad.value) and "unclosed" in str(bad.value)
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ValidationError) as bad:
        RateGuardConfig(redis_url="redis://127.0.0.1:1/0?socket_timeout=5")
    assert "socket_timeout" in str(bad.value)
    # An empty URL (`RATE_GUARD_REDIS_URL=`) is no URL: the memory store.
    assert RateGuardConfig(redis_url="").redis_url is None


@pytest.mark.parametrize("limit", [5, None, b"1/s", [5], ["1/s", object()]])
def test_a_limit_of_the_wrong_type_is_a_config_error(limit: object) -> None:
    guard = RateGuard(RateGuardConfig())
    with pytest.raises(ConfigError, match="a limit is a rate string"):
        guard.hit("x", limit)  # type: ignore[arg-type]

"""`_native.Front`: keys resolved in Rust from raw headers (trusted proxies, JWT, route scoping),
one decision per request, sync and async, with the response headers and body to send."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import jwt
import pytest

from py_rate_guard import _native
from py_rate_guard._native import ConfigError, Front, Guard, Outcome, Plan, Rules

SpawnRedis = Callable[[], AbstractContextManager[tuple[str, "subprocess.Popen[bytes]"]]]
Headers = list[tuple[bytes, bytes]]
SECRET = "an HMAC secret of at least 32 bytes"
PEER = "203.0.113.9"


def rules(limit: str, *, algorithm: str = "fixed_window", name: str | None = None) -> Rules:
    return Rules([(limit, algorithm, None, name, None)])


def spec(
    limit: str, key: str = "ip", *, cost: int = 1, shadow: bool = False, name: str | None = None
) -> tuple[Rules, str, int, bool]:
    """A route rule as `Front.route` takes it."""
    return (rules(limit, name=name), key, cost, shadow)


def rule(
    limit: str, key: str = "ip", *, cost: int = 1, shadow: bool = False, name: str | None = None
) -> dict[str, Any]:
    """A global rule as the settings write it (fixed window, like `spec`)."""
    out: dict[str, Any] = {"limit": limit, "algorithm": "fixed_window", "key": key}
    return {**out, "cost": cost, "shadow": shadow, "name": name}


def new_front(**settings: Any) -> Front:
    """The native front of these settings (the engine's `Settings` fields)."""
    return Front(json.dumps(settings))


def new_guard(**settings: Any) -> Guard:
    return Guard(json.dumps(settings))


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def native_guard(store: str, request: pytest.FixtureRequest) -> Guard:
    """A native guard on `store` (memory or a real Redis), with a prefix of its own."""
    if store == "memory":
        return new_guard(key_prefix=prefix())
    url = request.getfixturevalue("redis_url")
    return new_guard(redis_url=url, key_prefix=prefix(), redis_timeout=2.0)


def header(outcome: Outcome, name: bytes) -> bytes | None:
    return next((v for n, v in outcome.headers if n == name), None)


def plan_keys(front: Front, peer: str | None, headers: Any, **kw: Any) -> list[str]:
    return front.plan(peer, headers, **kw).keys()


# --- keys: the cross-language schema (the same strings are pinned in the Rust suite) ---


def test_keys_match_the_rust_schema() -> None:
    front = new_front(
        global_rules=[{"limit": "100/minute"}, {"limit": "1000/hour", "key": "global"}],
        trusted_proxies=["10.0.0.0/8"],
    )
    route = front.route(
        "/items/{item_id}",
        [(Rules([("5/minute", "sliding_window", None, None, None)]), "ip", 1, False)],
    )
    headers = [(b"X-Forwarded-For", b"6.6.6.6, 203.0.113.9")]
    assert front.plan("10.1.2.3", headers, route).keys() == [
        "rate_guard:sliding_window.100.60s:{ip:203.0.113.9}",
        "rate_guard:sliding_window.1000.3600s:{global}",
        "rate_guard:rt.67276a996a53c04d.sliding_window.5.60s:{ip:203.0.113.9}",
    ]
    assert route.rule_ids == ["rt.67276a996a53c04d.sliding_window.5.60s"]
    login = front.route("/login", [spec("3/minute", name="login")], "post")
    assert login.method == "POST"
    assert front.plan(PEER, [], login).keys("app")[-1].startswith("app:rt.")


def test_every_key_spec_resolves() -> None:
    front = new_front(
        global_rules=[
            rule("1/s", "user", name="u"),
            rule("1/s", "custom", name="c"),
            rule("1/s", "header:X-Api-Key", name="h"),
        ]
    )
    headers = [(b"x-api-key", b" k-1 ")]
    plan = front.plan(PEER, headers, user="42", custom="tenant:7")
    assert [identity for _, identity, _, _ in plan.items] == [
        "user:42",
        "custom:tenant:7",
        "header:x-api-key:k-1",
    ]
    # Missing identities fall back to the client address.
    assert {identity for _, identity, _, _ in front.plan(PEER, []).items} == {f"ip:{PEER}"}


def test_headers_are_raw_bytes_of_any_case_and_any_value() -> None:
    front = new_front(global_rules=[rule("1/s", "header:X-Key")])
    assert front.plan(PEER, [(b"X-KEY", b"a}b\xff\\")]).keys() == [
        "rate_guard:fixed_window.1.1s:{header:x-key:a%7Db%5Cxff%5C%5C}"
    ]
    # WSGI-style str values are latin-1 decodings of the same bytes.
    assert plan_keys(front, PEER, [("x-key", "\xe9")]) == plan_keys(
        front, PEER, [(b"x-key", b"\xe9")]
    )
    # Lists of lists and tuples alike.
    assert plan_keys(front, PEER, [[b"x-key", b"v"]]) == plan_keys(front, PEER, ((b"x-key", b"v"),))
    with pytest.raises(TypeError, match="header value"):
        front.plan(PEER, [(b"x-key", 7)])  # type: ignore[list-item]


def test_a_one_megabyte_header_makes_a_bounded_key() -> None:
    front = new_front(
        global_rules=[rule("1/s", "header:X-Key"), rule("1/s", "jwt:sub", name="j")],
        jwt_keys=[SECRET],
    )
    huge = b"k" * (1 << 20)
    headers = [(b"x-key", huge), (b"authorization", b"Bearer " + huge), (b"x-forwarded-for", huge)]
    keys = front.plan(PEER, headers).keys()
    assert keys[0].startswith("rate_guard:fixed_window.1.1s:{#") and len(keys[0]) < 120
    assert keys[1] == f"rate_guard:j:{{ip:{PEER}}}"


def test_forwarded_for_is_believed_from_trusted_proxies_only() -> None:
    front = new_front(global_rules=[rule("1/s")], trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])
    forged = [(b"x-forwarded-for", b"1.1.1.1, 198.51.100.7, 10.0.0.5")]
    assert front.plan("10.0.0.1", forged).items[0][1] == "ip:198.51.100.7"
    assert front.plan("198.51.100.99", forged).items[0][1] == "ip:198.51.100.99"
    assert front.plan("10.0.0.1", [(b"x-forwarded-for", b"junk")]).items[0][1] == "ip:10.0.0.1"
    assert front.plan("2a00:1:2:3:4:5:6:7", []).items[0][1] == "ip:2a00:1:2:3::/64"
    assert front.plan("::ffff:198.51.100.1", []).items[0][1] == "ip:198.51.100.1"
    rfc7239 = new_front(
        global_rules=[rule("1/s")], trusted_proxies=["10.0.0.1"], forwarded_header="forwarded"
    )
    both = [(b"forwarded", b'for="[2a00::1]:443"'), (b"x-forwarded-for", b"6.6.6.6")]
    assert rfc7239.plan("10.0.0.1", both).items[0][1] == "ip:2a00::/64"
    # A peer that is not an address (a test client, a Unix socket) is trusted only with "unix".
    assert front.plan("testclient", forged).items[0][1] == "ip:testclient"
    unix = new_front(global_rules=[rule("1/s")], trusted_proxies=["unix"])
    assert unix.plan(None, forged).items[0][1] == "ip:10.0.0.5"


def test_jwt_claims_only_from_verified_tokens() -> None:
    front = new_front(global_rules=[rule("1/s", "jwt:sub")], jwt_keys=[SECRET])

    def identity(token: str) -> str:
        return front.plan(PEER, [(b"authorization", f"Bearer {token}".encode())]).items[0][1]

    now = int(time.time())
    good = jwt.encode({"sub": "alice", "exp": now + 600}, SECRET, algorithm="HS256")
    assert identity(good) == "jwt:sub:alice"
    forged = jwt.encode(
        {"sub": "alice", "exp": now + 600},
        "not the secret, but 32 bytes or more",
        algorithm="HS256",
    )
    expired = jwt.encode({"sub": "alice", "exp": now - 3600}, SECRET, algorithm="HS256")
    unsigned = jwt.encode({"sub": "alice", "exp": now + 600}, "", algorithm="none")
    for bad in [forged, expired, unsigned, good[:-4], "", "a.b.c"]:
        assert identity(bad) == f"ip:{PEER}", bad
    unverified = new_front(global_rules=[rule("1/s", "jwt:sub")], jwt_verify=False)
    assert unverified.plan(PEER, [(b"authorization", f"Bearer {forged}".encode())]).items[0][1] == (
        "jwt:sub:alice"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"global_rules": [rule("1/s", "cookie:x")]}, "cookie:x"),
        ({"trusted_proxies": ["proxy.local"]}, "proxy.local"),
        ({"ipv6_prefix": 129}, "129"),
        ({"headers": "draft"}, "draft"),
        ({"forwarded_header": "x-real-ip"}, "x-real-ip"),
        ({"global_rules": [rule("1/s", "jwt:sub")]}, "jwt:sub"),
        ({"jwt_keys": [SECRET], "jwt_algorithms": ["none"]}, "none"),
        ({"global_rules": [rule("1/s", cost=0)]}, "cost"),
        ({"global_rules": [rule("1/s", name="same"), rule("2/s", name="same")]}, "same"),
    ],
)
def test_bad_configuration_is_a_config_error_naming_it(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        new_front(**kwargs)


# --- decisions ---


def test_decide_allows_then_limits_with_exact_headers_and_body(native_guard: Guard) -> None:
    front = new_front(global_rules=[rule("100/hour", name="api")])
    route = front.route("/login", [spec("2/minute", name="login")], "POST")
    for remaining in [b"1", b"0"]:
        outcome = front.decide(native_guard, front.plan(PEER, [], route))
        assert outcome.allowed and outcome.status == 200 and outcome.body == b""
        assert header(outcome, b"x-ratelimit-limit") == b"2"
        assert header(outcome, b"x-ratelimit-remaining") == remaining
    denied = front.decide(native_guard, front.plan(PEER, [], route))
    assert not denied.allowed and denied.status == 429
    assert repr(denied) == (
        f"Outcome(allowed=False, status=429, rule={denied.rule!r}, shadow_denied=[])"
    )
    assert denied.rule is not None and denied.rule.endswith(".login")
    names = [name for name, _ in denied.headers]
    assert names == [
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
        b"retry-after",
        b"content-type",
    ]
    assert header(denied, b"content-type") == b"application/json"
    assert 1 <= int(header(denied, b"retry-after") or b"0") <= 60
    assert json.loads(denied.body) == {"detail": "Rate limit exceeded: 2 per 1 minute"}
    assert (
        denied.rule is not None and denied.rule.startswith("rt.") and denied.rule.endswith(".login")
    )
    assert denied.decision is not None and not denied.decision.allowed
    # The route's denial consumed no global quota: 100 - 2.
    elsewhere = front.decide(native_guard, front.plan(PEER, []))
    assert header(elsewhere, b"x-ratelimit-remaining") == b"97"


def test_ietf_headers(native_guard: Guard) -> None:
    front = new_front(global_rules=[rule("10/minute", name="api")], headers="ietf")
    outcome = front.decide(native_guard, front.plan(PEER, []))
    assert header(outcome, b"ratelimit-policy") == b'"api";q=10;w=60'
    assert (header(outcome, b"ratelimit") or b"").startswith(b'"api";r=9;t=')
    assert header(outcome, b"x-ratelimit-limit") is None


def test_shadow_rules_never_block(native_guard: Guard) -> None:
    front = new_front(global_rules=[rule("1/minute", name="tight", shadow=True)])
    outcomes = [front.decide(native_guard, front.plan(PEER, [])) for _ in range(3)]
    assert all(o.allowed for o in outcomes)
    assert [o.shadow_denied for o in outcomes] == [[], ["tight"], ["tight"]]
    assert outcomes[2].decision is None and outcomes[2].headers == []
    everything = new_front(global_rules=[rule("1/minute", name="tight2")], shadow_mode=True)
    for _ in range(3):
        assert everything.decide(native_guard, everything.plan(PEER, [])).allowed


def test_adecide_under_asyncio(native_guard: Guard) -> None:
    front = new_front(global_rules=[rule("3/minute")])

    async def go() -> list[Outcome]:
        plans: list[Plan] = [front.plan(PEER, []) for _ in range(5)]
        return list(await asyncio.gather(*(front.adecide(native_guard, p) for p in plans)))

    outcomes = asyncio.run(go())
    assert sorted(o.status for o in outcomes) == [200, 200, 200, 429, 429]
    # Sync and async share one quota.
    assert front.decide(native_guard, front.plan(PEER, [])).status == 429


def test_decide_request_is_plan_then_decide_in_one_call(native_guard: Guard) -> None:
    front = new_front(global_rules=[rule("3/minute", name="api")])
    route = front.route("/items/{id}", [spec("2/minute", name="items")])
    headers = [(b"user-agent", b"test")]
    # `peer` as ASGI's `scope["client"]`: a (host, port) pair (or a list), or None.
    first = front.decide_request(native_guard, (PEER, 51000), headers, route)
    assert first.allowed and header(first, b"x-ratelimit-remaining") == b"1"
    assert first.plan is not None
    assert first.plan.keys() == front.plan(PEER, headers, route).keys()
    assert [identity for _, identity, _, _ in first.plan.items] == [f"ip:{PEER}"] * 2

    async def go() -> Outcome:
        return await front.adecide_request(native_guard, [PEER, 51001], headers, route)

    second = asyncio.run(go())
    assert second.allowed and header(second, b"x-ratelimit-remaining") == b"0"
    assert second.plan is not None and len(second.plan) == 2
    denied = front.decide_request(native_guard, PEER, headers, route)
    assert denied.status == 429 and denied.plan is not None
    # The route's denial consumed no global quota; the other calls share it.
    assert header(front.decide(native_guard, front.plan(PEER, [])), b"x-ratelimit-remaining") == (
        b"0"
    )
    assert front.decide(native_guard, front.plan(PEER, [])).plan is None
    unix = front.decide_request(native_guard, None, headers)
    assert unix.plan is not None and unix.plan.items[0][1].startswith("ip:")


def test_a_dead_store_fails_open_or_closed(spawn_redis: SpawnRedis) -> None:
    closed_rule = {"limit": "5/minute", "algorithm": "fixed_window", "name": "login"}
    front = new_front(global_rules=[rule("5/minute", name="api")])
    closed = new_front(global_rules=[{**closed_rule, "fail_open": False}])
    with spawn_redis() as (url, proc):
        guard = new_guard(redis_url=url, key_prefix=prefix(), redis_timeout=0.5)
        assert front.decide(guard, front.plan(PEER, [])).source == "store"
        proc.kill()
        proc.wait()
        outcome = front.decide(guard, front.plan(PEER, []))
        assert outcome.allowed and outcome.degraded and outcome.source == "fail_open"
        assert outcome.headers == []
        refused = closed.decide(guard, closed.plan(PEER, []))
        assert refused.status == 503 and refused.source == "fail_closed"
        assert json.loads(refused.body) == {"detail": "Service temporarily unavailable"}
        assert int(header(refused, b"retry-after") or b"0") >= 1


def test_module_exports() -> None:
    for name in ["Front", "RouteLimits", "Plan", "Outcome"]:
        assert name in _native.__all__

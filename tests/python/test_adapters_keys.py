"""Keys through the adapters (DESIGN §4): the client address behind trusted proxies only,
IPv6 networks, `header:`, verified `jwt:` claims, and hostile headers that must neither crash
nor make huge keys."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SECRET = "test-secret-with-enough-bytes-for-hs256"


def app_for(rule: RateLimitRule, **fields: Any) -> FastAPI:
    fields.setdefault("key_prefix", f"t{uuid.uuid4().hex[:12]}")
    guard = FastAPIRateGuard(RateGuardConfig(global_rules=[rule], **fields))
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    return app


def status(app: FastAPI, peer: str, headers: dict[str, Any] | None = None) -> int:
    return TestClient(app, client=(peer, 1234)).get("/", headers=headers).status_code


def test_forwarded_headers_of_an_untrusted_peer_do_not_change_its_key() -> None:
    app = app_for(RateLimitRule(limit="1/minute"))  # no trusted proxies
    assert status(app, "198.51.100.7", {"x-forwarded-for": "203.0.113.1"}) == 200
    assert status(app, "198.51.100.7", {"x-forwarded-for": "203.0.113.2"}) == 429
    assert status(app, "198.51.100.7", {"forwarded": "for=203.0.113.3"}) == 429
    assert status(app, "198.51.100.8") == 200  # the key is the peer


def test_a_trusted_proxy_forwards_the_right_most_untrusted_hop() -> None:
    app = app_for(RateLimitRule(limit="1/minute"), trusted_proxies=["10.0.0.0/8"])
    proxy = "10.1.2.3"
    assert status(app, proxy, {"x-forwarded-for": "203.0.113.1"}) == 200
    assert status(app, proxy, {"x-forwarded-for": "203.0.113.2"}) == 200
    # A client that prepends a forged hop still gets its own (right-most untrusted) address.
    assert status(app, proxy, {"x-forwarded-for": "192.0.2.99, 203.0.113.1"}) == 429
    # Hops of other trusted proxies are skipped.
    assert status(app, proxy, {"x-forwarded-for": "203.0.113.2, 10.9.9.9"}) == 429
    # Only X-Forwarded-For is read: a Forwarded field (which this proxy would pass on
    # untouched) cannot pick an address.
    spoof = {"x-forwarded-for": "203.0.113.1", "forwarded": "for=203.0.113.77"}
    assert status(app, proxy, spoof) == 429


def test_a_proxy_writing_forwarded_is_read_from_forwarded_only() -> None:
    app = app_for(
        RateLimitRule(limit="1/minute"),
        trusted_proxies=["10.0.0.0/8"],
        forwarded_header="forwarded",
    )
    proxy = "10.1.2.3"
    assert status(app, proxy, {"forwarded": 'for="203.0.113.4"'}) == 200
    assert status(app, proxy, {"forwarded": "for=203.0.113.5;proto=https"}) == 200
    assert status(app, proxy, {"forwarded": "for=192.0.2.1, for=203.0.113.4"}) == 429
    assert (
        status(app, proxy, {"forwarded": "for=203.0.113.6", "x-forwarded-for": "203.0.113.4"})
        == 200
    )
    ipv6 = {"forwarded": 'for="[2001:db8:1:2::7]:4711"'}
    assert status(app, proxy, ipv6) == 200
    assert status(app, proxy, {"forwarded": 'for="[2001:db8:1:2::8]"'}) == 429  # same /64


def test_ipv6_clients_are_grouped_by_network() -> None:
    app = app_for(RateLimitRule(limit="1/minute"))
    assert status(app, "2001:db8:1:2::1") == 200
    assert status(app, "2001:db8:1:2:ffff::9") == 429  # same /64
    assert status(app, "2001:db8:1:3::1") == 200  # another /64
    wide = app_for(RateLimitRule(limit="1/minute"), ipv6_prefix=48)
    assert status(wide, "2001:db8:1:2::1") == 200
    assert status(wide, "2001:db8:1:3::1") == 429  # same /48


def test_header_key_counts_per_value_and_falls_back_to_the_address() -> None:
    app = app_for(RateLimitRule(limit="1/minute", key="header:X-Api-Key"))
    peer = "198.51.100.7"
    assert status(app, peer, {"x-api-key": "k1"}) == 200
    assert status(app, peer, {"X-API-KEY": "k2"}) == 200
    assert status(app, peer, {"x-api-key": "k1"}) == 429
    assert status(app, peer) == 200  # no key: the address, a bucket of its own
    assert status(app, peer) == 429


def token(sub: str, *, secret: str = SECRET, expires_in: float = 300, **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(time.time() + expires_in), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def test_jwt_claims_key_only_verified_tokens() -> None:
    app = app_for(RateLimitRule(limit="1/minute", key="jwt:sub"), jwt_keys=[SECRET])
    peer = "198.51.100.7"
    assert status(app, peer, bearer(token("ann"))) == 200
    assert status(app, peer, bearer(token("bob"))) == 200
    assert status(app, peer, bearer(token("ann"))) == 429
    # Forged (another key) and expired tokens fall back to the address: one shared bucket.
    assert status(app, peer, bearer(token("mallory", secret="x" * 40))) == 200
    assert status(app, peer, bearer(token("eve", expires_in=-600))) == 429
    assert status(app, peer, bearer("not.a.token")) == 429
    assert status(app, peer, bearer(token("eve", expires_in=-600))) == 429


def test_unverified_jwt_claims_only_when_asked() -> None:
    app = app_for(RateLimitRule(limit="1/minute", key="jwt:tenant"), jwt_verify=False)
    peer = "198.51.100.7"
    assert status(app, peer, bearer(token("a", secret="y" * 40, tenant="t1"))) == 200
    assert status(app, peer, bearer(token("b", secret="z" * 40, tenant="t2"))) == 200
    assert status(app, peer, bearer(token("c", secret="w" * 40, tenant="t1"))) == 429


def test_jwt_audience_and_issuer_are_checked() -> None:
    app = app_for(
        RateLimitRule(limit="1/minute", key="jwt:sub"),
        jwt_keys=[SECRET],
        jwt_audience="api",
        jwt_issuer="https://issuer.example",
    )
    peer = "198.51.100.7"
    good = {"aud": "api", "iss": "https://issuer.example"}
    assert status(app, peer, bearer(token("ann", **good))) == 200
    assert status(app, peer, bearer(token("bob", **good))) == 200
    # A token for another audience is not believed: the address, a bucket of its own.
    assert status(app, peer, bearer(token("carl", aud="other", iss=good["iss"]))) == 200
    assert status(app, peer, bearer(token("dan", aud="api", iss="https://evil.example"))) == 429


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "k" * 1_000_000},
        {"x-api-key": b"\xff\xfe\x00bad\x80"},
        {"authorization": "Bearer " + "a" * 1_000_000},
        {"authorization": b"Bearer \xff\xfe"},
        {"x-forwarded-for": ", ".join(["203.0.113.1"] * 50_000)},
        {"forwarded": b"for=\xff\xfe;proto=" + b"x" * 100_000},
    ],
    ids=["huge-key", "non-utf8-key", "huge-jwt", "non-utf8-jwt", "huge-xff", "bad-forwarded"],
)
def test_hostile_headers_neither_crash_nor_make_huge_keys(
    headers: dict[str, Any], redis_url: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    rules = [
        RateLimitRule(limit="10/minute", key="header:X-Api-Key"),
        RateLimitRule(limit="10/minute", key="jwt:sub"),
    ]
    guard = FastAPIRateGuard(
        RateGuardConfig(
            global_rules=rules,
            key_prefix=prefix,
            redis_url=redis_url,
            redis_timeout=2.0,
            trusted_proxies=["10.0.0.0/8"],
            jwt_keys=[SECRET],
        )
    )
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    c = TestClient(app, client=("10.0.0.1", 1234))
    assert [c.get("/", headers=headers).status_code for _ in range(2)] == [200, 200]
    keys = list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}:*"))
    assert keys, "the requests were counted"
    assert max(len(key) for key in keys) < 256

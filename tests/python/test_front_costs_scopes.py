"""`_native.Front` for issue 15: a request's own costs (`costs=`), decided in the same one
call, and named shared scopes (`Front.route(..., scope=...)`): one quota for every route that
declares the scope, on memory and on a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import pytest

from py_rate_guard._native import ConfigError, Front, Guard, Rules

PEER = "203.0.113.9"


def rules(limit: str, *, name: str | None = None) -> Rules:
    return Rules([(limit, "fixed_window", None, name, None)])


def spec(limit: str, *, cost: int = 1, name: str | None = None) -> tuple[Rules, str, int, bool]:
    return (rules(limit, name=name), "ip", cost, False)


def new_front(**settings: Any) -> Front:
    return Front(json.dumps(settings))


@pytest.fixture
def native_guard(store: str, request: pytest.FixtureRequest) -> Guard:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if store == "memory":
        return Guard(json.dumps({"key_prefix": prefix}))
    url = request.getfixturevalue("redis_url")
    return Guard(json.dumps({"redis_url": url, "key_prefix": prefix, "redis_timeout": 2.0}))


# --- per-request costs ----------------------------------------------------------------------


def test_costs_override_the_route_limits_for_one_request(native_guard: Guard) -> None:
    front = new_front(global_rules=[{"limit": "100/minute", "algorithm": "fixed_window"}])
    batch = front.route("/batch", [spec("10/minute", cost=2)])

    def remaining(costs: Any) -> tuple[bool, int]:
        outcome = front.decide_request(native_guard, PEER, [], batch, costs=costs)
        decision = outcome.decision
        assert decision is not None
        return outcome.allowed, decision.remaining

    assert remaining([4]) == (True, 6)
    assert remaining([None]) == (True, 4)  # None: the declared cost (2)
    assert remaining(None) == (True, 2)
    # Too heavy: refused, and nothing consumed, the global rule included.
    assert remaining([3])[0] is False
    assert remaining([2]) == (True, 0)
    # The global rule counted each admitted request at its own cost (1): 4 of 100.
    plan = front.plan(PEER, [], batch, costs=[7])
    assert [cost for _, _, cost, _ in plan.items] == [1, 7]


def test_costs_in_the_async_call(native_guard: Guard) -> None:
    front = new_front()
    batch = front.route("/batch", [spec("10/minute")])

    async def run() -> list[bool]:
        out = []
        for costs in ([6], [5], [4]):
            outcome = await front.adecide_request(native_guard, PEER, [], batch, costs=costs)
            out.append(outcome.allowed)
        return out

    assert asyncio.run(run()) == [True, False, True]


def test_costs_align_with_the_limits_of_the_route() -> None:
    front = new_front()
    # One spec of two rates gives two limits: `spec_indexes` maps each to its spec.
    route = front.route("/r", [spec("5/second; 100/minute"), spec("7/hour")])
    assert len(route.rule_ids) == 3
    assert route.spec_indexes == [0, 0, 1]
    plan = front.plan(PEER, [], route, costs=[2, None, 9])
    assert [cost for _, _, cost, _ in plan.items] == [2, 1, 9]


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        ([1], "1 given, but the route has 2 limits"),
        ([1, 2, 3], "3 given, but the route has 2 limits"),
        ([0, 1], "costs[0]: cost must be from 1 to 4294967295, not 0"),
        ([1, -1], "costs[1]: cost must be from 1 to 4294967295, not -1"),
        ([2**32, 1], "costs[0]: cost must be from 1 to 4294967295, not 4294967296"),
        ([10**40, 1], "costs[0]: cost must be from 1 to 4294967295"),
        ([True, 1], "costs[0]: cost must be an integer"),
        (["3", 1], "costs[0]: cost must be an integer"),
        ("12", "costs must be None or a list"),
        (5, "costs must be None or a list"),
    ],
)
def test_bad_costs_are_value_errors_naming_the_entry(costs: Any, message: str) -> None:
    front = new_front()
    guard = Guard(json.dumps({}))
    route = front.route("/r", [spec("5/second"), spec("7/hour")])
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        front.decide_request(guard, PEER, [], route, costs=costs)
    with pytest.raises(ValueError):
        front.plan(PEER, [], route, costs=costs)


def test_costs_without_a_route_must_be_empty() -> None:
    front = new_front(global_rules=[{"limit": "1/s"}])
    assert len(front.plan(PEER, [], None, costs=[])) == 1
    with pytest.raises(ConfigError, match="the route has 0 limits"):
        front.plan(PEER, [], None, costs=[3])


# --- named shared scopes --------------------------------------------------------------------


def test_routes_of_one_scope_share_one_quota(native_guard: Guard) -> None:
    front = new_front()
    upload = front.route("/upload", [spec("3/minute")], "POST", scope="uploads")
    bulk = front.route("/bulk/{id}", [spec("3/minute")], scope="uploads")
    own = front.route("/other", [spec("3/minute")])
    assert upload.scope == "uploads" and own.scope is None
    assert upload.rule_ids == bulk.rule_ids != own.rule_ids
    allowed = [
        front.decide_request(native_guard, PEER, [], route).allowed
        for route in (upload, bulk, upload, bulk)
    ]
    assert allowed == [True, True, True, False]
    # The unscoped route keeps its own quota.
    assert front.decide_request(native_guard, PEER, [], own).allowed


def test_shared_ids_are_the_documented_schema() -> None:
    front = new_front()
    route = front.route("/a", [spec("5/minute", name="up")], scope="uploads")
    digest = hashlib.sha256(b"rate-guard-scope-v1\nuploads\nup").hexdigest()[:16]
    assert route.rule_ids == [f"sc.{digest}.up"]
    assert front.plan(PEER, [], route).keys("p") == [f"p:sc.{digest}.up:{{ip:{PEER}}}"]


@pytest.mark.parametrize(
    ("scope", "reason"),
    [("", "empty"), ("x" * 65, "longer"), ("a\nb", "control"), ("a\x00", "control")],
)
def test_bad_scope_names_are_refused(scope: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid shared scope.*{reason}"):
        new_front().route("/a", [spec("1/s")], scope=scope)


def test_global_rules_cannot_take_a_shared_name() -> None:
    with pytest.raises(ConfigError, match=r'starts with "sc\.", which is reserved'):
        new_front(global_rules=[{"limit": "1/s", "name": "sc.mine"}])

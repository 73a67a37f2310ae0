"""Metrics and logs (issue 7): a FastAPI app with `/metrics` mounted counts exactly, the Redis
latency histogram fills, an outage shows the fallback gauge and storage errors and recovery
clears it, client addresses never become series, several processes add up, and log lines are
JSON with the fields operators filter on, identities as configured and denials sampled.

Gauges are process-wide (any degraded guard sets `rate_guard_fallback_active`), so the outage
runs in a fresh interpreter where no other test's guard can be degraded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families

from py_rate_guard import RateGuard, _native, logs, metrics
from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BIN = Path(sys.executable).parent

Sample = tuple[str, dict[str, str], float]


def samples(text: str) -> list[Sample]:
    """The `rate_guard_*` samples of a Prometheus text page."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("rate_guard_")
    ]


def value(page: list[Sample], name: str, **labels: str) -> float:
    """The value of the one sample `name` whose labels include `labels`."""
    found = [v for n, ls, v in page if n == name and labels.items() <= ls.items()]
    assert len(found) == 1, f"{name} {labels}: {len(found)} samples"
    return found[0]


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def app_with(
    guard: FastAPIRateGuard, route_limit: str = "2/minute", route_name: str = ""
) -> FastAPI:
    """`/items/{item_id}` limited to `route_limit` (rule `route_name`), `/plain` with the global
    rules only, and `/metrics/` serving prometheus_client's default registry."""
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, guard=guard)
    app.mount("/metrics", make_asgi_app())

    @app.get("/items/{item_id}")
    @guard.limit(limit=route_limit, name=route_name or None)
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {}

    return app


@contextlib.contextmanager
def json_logs(level: int = logging.INFO) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Records of the `py_rate_guard` logger, formatted by `JsonFormatter` and parsed back
    (every line must be JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("py_rate_guard")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


# -- metrics -----------------------------------------------------------------------------


def test_a_guard_registers_the_collector_once_in_the_default_registry() -> None:
    RateGuard(RateGuardConfig(key_prefix=prefix()))
    RateGuard(RateGuardConfig(key_prefix=prefix()))
    mine = [c for c in REGISTRY._collector_to_names if isinstance(c, metrics.RateGuardCollector)]
    assert len(mine) == 1
    page = generate_latest().decode()
    for name in (
        "rate_guard_requests_allowed_total counter",
        "rate_guard_requests_blocked_total counter",
        "rate_guard_shadow_blocked_total counter",
        "rate_guard_redis_latency_seconds histogram",
        "rate_guard_storage_errors_total counter",
        "rate_guard_deny_cache_hits_total counter",
        "rate_guard_fallback_active gauge",
        "rate_guard_breaker_state gauge",
    ):
        assert f"\n# TYPE {name}\n" in page, name
    # The native guard's placeholder rule is not a series.
    assert "rate_guard.py.unused" not in page


def test_fastapi_metrics_count_a_known_mix_exactly() -> None:
    g_name, r_name = f"g{uuid.uuid4().hex[:10]}", f"r{uuid.uuid4().hex[:10]}"
    guard = FastAPIRateGuard(
        RateGuardConfig(
            key_prefix=prefix(),
            global_rules=[RateLimitRule(limit="4/minute", name=g_name)],
            exempt_paths=["/metrics"],
        )
    )
    app = app_with(guard, "2/minute", r_name)
    one, two = TestClient(app, client=("10.0.0.1", 1)), TestClient(app, client=("10.0.0.2", 1))
    # Client one: the route's 2/minute decides (fewer remaining than the global 4/minute).
    items = [one.get("/items/7").status_code for _ in range(3)]
    # Client two: the global rule alone.
    plain = [two.get("/plain").status_code for _ in range(6)]
    assert items == [200, 200, 429]
    assert plain == [200] * 4 + [429] * 2

    page = samples(one.get("/metrics/").text)
    assert value(page, "rate_guard_requests_allowed_total", rule=g_name) == 4
    assert value(page, "rate_guard_requests_blocked_total", rule=g_name) == 2
    assert value(page, "rate_guard_shadow_blocked_total", rule=g_name) == 0
    # The route's rule counts under its own name, with the route template as a label.
    route = {"rule": r_name, "route": "/items/{item_id}", "algorithm": "sliding_window"}
    assert value(page, "rate_guard_requests_allowed_total", **route) == 2
    assert value(page, "rate_guard_requests_blocked_total", **route) == 1
    global_labels = next(
        ls for n, ls, _ in page if n.endswith("allowed_total") and ls["rule"] == g_name
    )
    assert global_labels["route"] == ""
    # Scraping is exempt: the counts did not move.
    again = samples(two.get("/metrics/").text)
    assert value(again, "rate_guard_requests_allowed_total", rule=g_name) == 4


def test_shadow_denials_are_counted_apart_from_requests() -> None:
    name = f"s{uuid.uuid4().hex[:10]}"
    guard = FastAPIRateGuard(
        RateGuardConfig(
            key_prefix=prefix(),
            global_rules=[RateLimitRule(limit="2/minute", name=name, shadow=True)],
            exempt_paths=["/metrics"],
        )
    )
    c = TestClient(app_with(guard), client=("10.0.0.3", 1))
    with json_logs() as records:
        assert [c.get("/plain").status_code for _ in range(5)] == [200] * 5
    shadow = [r for r in records() if r.get("event") == "rate_limited"]
    assert [(r["rule_name"], r["decision"], r["status"]) for r in shadow] == [
        (name, "shadow_blocked", 200)
    ] * 3
    page = samples(c.get("/metrics/").text)
    assert value(page, "rate_guard_shadow_blocked_total", rule=name) == 3
    # Shadow rules never decide a request: they add no allowed or blocked count.
    assert value(page, "rate_guard_requests_allowed_total", rule=name) == 0
    assert value(page, "rate_guard_requests_blocked_total", rule=name) == 0


def test_redis_calls_fill_the_latency_histogram(redis_url: str) -> None:
    guard = RateGuard(RateGuardConfig(redis_url=redis_url, key_prefix=prefix(), redis_timeout=2.0))
    before = metrics.snapshot()
    for i in range(20):
        assert guard.hit(f"client-{i}", "10/minute").allowed
    after = metrics.snapshot()
    # One store call per request: 20 observations, each in some bucket up to 1 s.
    assert after["latency_count"] - before["latency_count"] == 20
    assert after["latency_sum"] > before["latency_sum"]
    bounds = [b for b, _ in after["latency_buckets"]]
    assert bounds[0] == pytest.approx(50e-6) and bounds[-1] == 1.0
    counts = [n for _, n in after["latency_buckets"]]
    assert counts == sorted(counts), "buckets are cumulative"
    page = samples(generate_latest().decode())
    assert value(page, "rate_guard_redis_latency_seconds_bucket", le="+Inf") == value(
        page, "rate_guard_redis_latency_seconds_count"
    )


def test_memory_store_decisions_are_not_redis_latency() -> None:
    guard = RateGuard(RateGuardConfig(key_prefix=prefix()))
    before = metrics.snapshot()["latency_count"]
    for _ in range(5):
        guard.hit("x", "10/minute")
    assert metrics.snapshot()["latency_count"] == before


async def _asgi_get(app: Any, path: str, client: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": (client, 40000),
        "server": ("test", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def test_ten_thousand_client_addresses_add_no_series() -> None:
    guard = FastAPIRateGuard(
        RateGuardConfig(
            key_prefix=prefix(),
            global_rules=[RateLimitRule(limit="1/minute", name=f"b{uuid.uuid4().hex[:8]}")],
            exempt_paths=["/metrics"],
        )
    )
    app = app_with(guard, "1/minute", f"i{uuid.uuid4().hex[:8]}")
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 10_001)]

    async def run() -> list[int]:
        await _asgi_get(app, "/items/0", "192.0.2.1")  # builds the route's rules
        before = samples(generate_latest().decode())
        out = [len(before)]
        for ip in ips:
            out.append(await _asgi_get(app, f"/items/{len(out)}", ip))
            out.append(await _asgi_get(app, "/plain", ip))
        return out

    count_before, *codes = asyncio.run(run())
    assert codes.count(200) == 10_000 and codes.count(429) == 10_000
    text = generate_latest().decode()
    assert len(samples(text)) == count_before
    assert not any(ip in text for ip in ips[:100] + ips[-100:])


def test_metrics_enabled_false_counts_nothing() -> None:
    name = f"d{uuid.uuid4().hex[:10]}"
    rule = RateLimitRule(limit="1/minute", name=name)
    try:
        guard = RateGuard(RateGuardConfig(key_prefix=prefix(), metrics_enabled=False))
        assert not _native.metrics_enabled()
        for _ in range(3):
            guard.hit("x", rule)
        counts = [r for r in metrics.snapshot()["requests"] if r[0] == name]
        assert counts == [(name, "", "sliding_window", 0, 0, 0)]
    finally:
        metrics.attach(SimpleNamespace(metrics_enabled=True))
    assert _native.metrics_enabled()
    guard.hit("y", rule)
    assert [r[3] for r in metrics.snapshot()["requests"] if r[0] == name] == [1]


def _outage_scenario(url: str, redis_pid: int, key_prefix: str) -> dict[str, Any]:
    """Run in a fresh interpreter: a FastAPI app on Redis with the in-memory fallback, Redis
    paused (SIGSTOP: every call times out) and resumed."""
    with json_logs() as records:
        guard = FastAPIRateGuard(
            RateGuardConfig(
                redis_url=url,
                key_prefix=key_prefix,
                in_memory_fallback=True,
                redis_timeout=0.05,
                breaker_threshold=2,
                breaker_cooldown=0.05,
                breaker_max_cooldown=0.05,
                global_rules=[RateLimitRule(limit="1000/minute", name="outage")],
                exempt_paths=["/metrics"],
            )
        )
        c = TestClient(app_with(guard), client=("203.0.113.9", 1))

        def scrape() -> list[Sample]:
            return samples(c.get("/metrics/").text)

        out: dict[str, Any] = {"before_codes": [c.get("/plain").status_code for _ in range(3)]}
        out["before"] = scrape()
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            out["during_codes"] = [c.get("/plain").status_code for _ in range(6)]
            out["during"] = scrape()
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while value(scrape(), "rate_guard_fallback_active") != 0:
            assert time.monotonic() < deadline, "no recovery"
            c.get("/plain")
        out["after"] = scrape()
        logs.drain()
        out["logs"] = records()
    return out


def in_fresh_interpreter(func: Callable[..., Any], *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(func, *args).result(timeout=120)


def test_redis_outage_shows_fallback_and_errors_and_recovery_clears_them(
    spawn_redis: Any,
) -> None:
    with spawn_redis() as (url, proc):
        out = in_fresh_interpreter(_outage_scenario, url, proc.pid, prefix())
    assert out["before_codes"] == [200] * 3
    before, during, after = out["before"], out["during"], out["after"]
    assert value(before, "rate_guard_fallback_active") == 0
    assert value(before, "rate_guard_storage_errors_total", kind="timeout") == 0
    assert value(before, "rate_guard_redis_latency_seconds_count") >= 3

    assert out["during_codes"] == [200] * 6  # the fallback decides
    assert value(during, "rate_guard_fallback_active") == 1
    assert value(during, "rate_guard_breaker_state") == 2  # open
    assert value(during, "rate_guard_storage_errors_total", kind="timeout") >= 2

    assert value(after, "rate_guard_fallback_active") == 0
    assert value(after, "rate_guard_breaker_state") == 0
    timeouts = value(after, "rate_guard_storage_errors_total", kind="timeout")
    assert timeouts >= value(during, "rate_guard_storage_errors_total", kind="timeout")
    # Every request counted once, allowed (store or fallback).
    assert value(after, "rate_guard_requests_allowed_total", rule="outage") >= 9
    assert value(after, "rate_guard_requests_blocked_total", rule="outage") == 0

    events = [r["event"] for r in out["logs"] if r.get("event")]
    assert events.count("fallback_started") == 1 and events.count("fallback_ended") == 1
    assert events.index("fallback_started") < events.index("fallback_ended")
    failed = [r for r in out["logs"] if r.get("event") == "store_failed"]
    assert failed and all(r["error_kind"] == "timeout" for r in failed)
    breaker = [(r["from_state"], r["to_state"]) for r in out["logs"] if r.get("event") == "breaker"]
    assert ("closed", "open") in breaker and breaker[-1][1] == "closed"
    assert all(r["logger"] == "py_rate_guard" for r in out["logs"])


# -- several processes -------------------------------------------------------------------

_FORK_SCRIPT = """
import os, sys, threading
from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule
rule = RateLimitRule(limit="100/minute", name=sys.argv[1])
guard = RateGuard(RateGuardConfig(key_prefix=sys.argv[2]))
for _ in range(2):
    guard.hit("parent", rule)
pid = os.fork()
if pid == 0:
    for _ in range(3):
        guard.hit("child", rule)
    names = {t.name for t in threading.enumerate() if t.is_alive()}
    assert {"py-rate-guard-logs", "py-rate-guard-metrics"} <= names, names
    sys.exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_processes_add_up_and_a_forked_child_does_not_count_its_parent_twice(
    tmp_path: Path,
) -> None:
    name = f"m{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _FORK_SCRIPT, name, prefix()],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    # Two parents and two children wrote at exit: each pair counted 2 + 3.
    files = list(tmp_path.glob("rate_guard_*.json"))
    assert len(files) == 4
    merged = metrics.merge(metrics.read_process_files(tmp_path))
    assert [r for r in merged["requests"] if r[0] == name] == [
        (name, "", "sliding_window", 10, 0, 0)
    ]
    page = list(metrics.RateGuardCollector(tmp_path).collect())
    allowed = next(f for f in page if f.name == "rate_guard_requests_allowed")
    assert [s.value for s in allowed.samples if s.labels["rule"] == name] == [10]


def test_gauges_count_only_processes_alive(tmp_path: Path) -> None:
    base = metrics.snapshot()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    for pid, fallback, breaker in ((dead_pid, 1, 2), (os.getpid(), 0, 1)):
        snap = {**base, "fallback_active": fallback, "breaker_state": breaker}
        (tmp_path / f"rate_guard_{pid}_x.json").write_text(
            json.dumps({"pid": pid, "snapshot": snap})
        )
    (tmp_path / "rate_guard_1_broken.json").write_text("{not json")
    merged = metrics.merge(metrics.read_process_files(tmp_path))
    assert merged["fallback_active"] == 0  # the degraded process is gone
    assert merged["breaker_state"] == 1
    assert merged["latency_count"] == 2 * base["latency_count"]


_WSGI_APP = """
import os
from prometheus_client import make_wsgi_app
from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

config = RateGuardConfig(redis_url=os.environ["REDIS_URL"], key_prefix=os.environ["PREFIX"])
guard = RateGuard(config)
rule = RateLimitRule(limit="5/minute", name=os.environ["RULE"])
scrape = make_wsgi_app()


def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/metrics"):
        return scrape(environ, start_response)
    allowed = guard.hit("one-client", rule).allowed
    status = "200 OK" if allowed else "429 Too Many Requests"
    start_response(status, [("content-type", "text/plain")])
    return [b"ok" if allowed else b"limited"]
"""


def test_gunicorn_workers_add_up_in_multiprocess_mode(redis_url: str, tmp_path: Path) -> None:
    from test_adapters_server import fresh_connections, serving

    name = f"w{uuid.uuid4().hex[:10]}"
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    (tmp_path / "wsgi_app.py").write_text(_WSGI_APP)
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "REDIS_URL": redis_url,
        "PREFIX": prefix(),
        "RULE": name,
    }
    command = [str(BIN / "gunicorn"), "wsgi_app:app", "--bind", "127.0.0.1:{port}"]
    command += ["--workers", "2", "--preload", "--log-level", "warning"]
    with serving(command, tmp_path, env, "/metrics") as base:
        codes = [r.status_code for r in fresh_connections(base, "/", 8)]
        # A live scrape sums the scraped worker's own counts and what the others wrote so far;
        # one worker may have served every request and the other answer the scrape, so the
        # counts show up by the next periodic write (metrics.FLUSH_INTERVAL) at the latest.
        deadline = time.monotonic() + metrics.FLUSH_INTERVAL + 5
        while True:
            live = samples(httpx.get(base + "/metrics").text)
            allowed = value(live, "rate_guard_requests_allowed_total", rule=name)
            if allowed > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert sorted(codes) == [200] * 5 + [429] * 3
    assert 0 < allowed <= 5
    # Stopped, every worker wrote its counts at exit: the sum is exact.
    pids = {json.loads(f.read_text())["pid"] for f in multiproc.glob("rate_guard_*.json")}
    assert len(pids) >= 3  # the master (it built the guard) and two workers
    merged = metrics.merge(metrics.read_process_files(multiproc))
    assert [r[3:5] for r in merged["requests"] if r[0] == name] == [(5, 3)]
    assert merged["fallback_active"] == 0


# -- logs --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hashed", "raw", "omit"])
def test_denial_logs_are_json_with_event_rule_route_decision_and_identity(mode: str) -> None:
    name = f"l{uuid.uuid4().hex[:10]}"
    guard = FastAPIRateGuard(
        RateGuardConfig(key_prefix=prefix(), log_identities=mode, exempt_paths=["/metrics"])
    )
    c = TestClient(app_with(guard, "1/minute", name), client=("198.51.100.23", 1))
    with json_logs() as records:
        assert [c.get("/items/1").status_code for _ in range(3)] == [200, 429, 429]
    denials = [r for r in records() if r.get("event") == "rate_limited"]
    assert len(denials) == 2
    for r in denials:
        assert r["logger"] == "py_rate_guard" and r["level"] == "WARNING"
        assert r["rule_name"] == name  # as metrics label it
        assert r["rule"].startswith("rt.") and r["rule"].endswith("." + name)  # its scoped id
        assert r["route"] == "/items/{item_id}"
        assert r["decision"] == "blocked"
        assert r["status"] == 429 and r["limit"] == 1 and r["remaining"] == 0
        assert r["retry_after"] > 0
    identities = {r.get("identity", "<absent>") for r in denials}
    if mode == "raw":
        assert identities == {"ip:198.51.100.23"}
    elif mode == "omit":
        assert identities == {"<absent>"}
    else:
        (hashed,) = identities
        assert len(hashed) == 16 and "198.51.100.23" not in hashed
    text = json.dumps(records())
    assert ("198.51.100.23" in text) == (mode == "raw")


def test_hashed_identities_are_stable_under_a_salt_and_differ_across_salts() -> None:
    def render(identity: str, mode: str = "hashed", salt: str | None = "k1") -> str | None:
        config = SimpleNamespace(log_identities=mode, log_identity_salt=salt)
        rendered: str | None = logs.DecisionLog(config).native.render_identity(identity)
        return rendered

    a = render("ip:1.2.3.4")
    assert a == render("ip:1.2.3.4")
    assert a != render("ip:1.2.3.5")
    assert a != render("ip:1.2.3.4", salt="k2")
    # The key is the salt's BLAKE2b-256, the digest a keyed BLAKE2b of 8 bytes (both fronts').
    key = hashlib.blake2b(b"k1", digest_size=32).digest()
    assert a == hashlib.blake2b(b"ip:1.2.3.4", key=key, digest_size=8).hexdigest()
    assert render("ip:1.2.3.4", "omit") is None
    assert render("ip:1.2.3.4", "raw") == "ip:1.2.3.4"


def _denied_outcome() -> tuple[Any, Any]:
    """A native outcome denied by the rule `sampled`, and its plan."""
    front = _native.Front({"global_rules": [{"limit": "1/minute", "name": "sampled"}]})
    guard = _native.Guard({"key_prefix": prefix()})
    plan = front.plan("192.0.2.50", [])
    front.decide(guard, plan)
    outcome = front.decide(guard, plan)
    assert not outcome.allowed
    return outcome, plan


def test_denial_sampling_is_the_engines() -> None:
    """The sequence of crates/rate-guard-tower/tests/decision_log.rs gives the same records:
    the sampling is the engine's, tested in crates/rate-guard-http/tests/decision_log.rs."""
    name = f"s{uuid.uuid4().hex[:10]}"
    clock = _native.ManualClock(1_800_000_000.0)
    config = SimpleNamespace(log_denials_per_second=2.5, log_identities="raw")
    log = logs.DecisionLog(config, clock=clock)
    front = _native.Front({"global_rules": [{"limit": "1/minute", "name": name}]})
    guard = _native.Guard({"key_prefix": prefix()})

    def requests(n: int) -> None:
        for _ in range(n):
            plan = front.plan("192.0.2.50", [])
            log.outcome(front.decide(guard, plan), plan)

    with json_logs() as records:
        # 10 requests (one admitted), a second later 5, 400 ms later one more; 2.5 a second.
        for advance, n in [(0.0, 10), (1.0, 5), (0.4, 1)]:
            clock.advance(advance)
            requests(n)
        ours = [r for r in records() if r.get("rule") == name]
        assert [r["suppressed"] for r in ours] == [0, 0, 7, 0, 3]
        for r in ours:
            assert r["event"] == "rate_limited" and r["rule_name"] == name
            assert (r["decision"], r["status"], r["identity"]) == ("blocked", 429, "ip:192.0.2.50")
            assert (r["limit"], r["remaining"]) == (1, 0)
        # Five more left out; a second later, nothing more came: the count is not lost.
        requests(5)
        clock.advance(1.0)
        log.flush()
        last = [r for r in records() if r.get("rule") == name][-1]
    assert last == {
        **last,
        "event": "rate_limited_suppressed",
        "rule_name": name,
        "route": None,
        "suppressed": 5,
    }


def test_zero_denials_per_second_logs_no_denial() -> None:
    log = logs.DecisionLog(SimpleNamespace(log_denials_per_second=0))
    outcome, plan = _denied_outcome()
    with json_logs() as records:
        log.outcome(outcome, plan, None)
    assert records() == []


def test_the_configuration_is_logged_at_start_up_without_secrets() -> None:
    with json_logs() as records:
        RateGuard(
            RateGuardConfig(
                key_prefix="cfg-logged",
                jwt_keys=["top-secret-key"],
                global_rules=[RateLimitRule(limit="7/minute", key="jwt:sub")],
            )
        )
    (config,) = [r["config"] for r in records() if r.get("event") == "config"]
    assert config["key_prefix"] == "cfg-logged"
    assert config["global_rules"][0]["limit"] == "7/minute"
    assert "top-secret-key" not in json.dumps(records())


def test_engine_events_queue_is_bounded_and_counts_what_it_drops(spawn_redis: Any) -> None:
    with spawn_redis() as (url, proc):
        out = in_fresh_interpreter(_event_flood, url, proc.pid)
    assert out["queued"] == 1000  # the cap
    assert out["queued"] + out["dropped"] >= 1_201  # 1,200 failures and the fallback's start
    assert out["first"] == "store_failed"
    assert out["kinds"] and out["kinds"] <= {"unavailable", "timeout"}


def _event_flood(url: str, redis_pid: int) -> dict[str, Any]:
    """Fresh interpreter, no drain thread: 1,200 failed store calls queue 1,200+ events."""
    guard = _native.Guard(
        {"redis_url": url, "key_prefix": prefix(), "breaker_threshold": 1_000_000}
    )
    rules = RateLimitRule(limit="10/minute").native_rules
    os.kill(redis_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while guard.hit("x", rules).source == "store":
        assert time.monotonic() < deadline
    for i in range(1_200):
        guard.hit(f"x{i}", rules)
    events, dropped = _native.drain_events()
    return {
        "queued": len(events),
        "dropped": dropped,
        "first": events[0]["event"],
        "kinds": {e["error_kind"] for e in events if e["event"] == "store_failed"},
    }


def test_json_formatter_renders_any_record() -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    record.__dict__.update(event="custom", payload={"a": object()})
    try:
        raise ValueError("inner")
    except ValueError:
        record.exc_info = sys.exc_info()
    out = json.loads(formatter.format(record))
    assert out["message"] == "boom now" and out["level"] == "ERROR" and out["event"] == "custom"
    assert out["time"].endswith("Z") and "ValueError: inner" in out["exc_info"]
    assert out["payload"]["a"].startswith("<object")

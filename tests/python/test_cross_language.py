"""One quota across languages: a FastAPI app (py_rate_guard) and an axum app (rate-guard-tower)
configured with the same rules and keys on the same Redis admit `limit` requests in total, not
`limit` each, because the key schema and the Lua scripts are one.

Both apps run as real servers: the axum examples of `crates/rate-guard-tower` (built here with
`cargo build`) and the FastAPI apps under uvicorn. Requests alternate between them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def axum_examples() -> Path:
    """The directory of the built axum examples."""
    subprocess.run(
        ["cargo", "build", "-q", "-p", "rate-guard-tower", "--examples"], cwd=ROOT, check=True
    )
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return Path(json.loads(metadata.stdout)["target_directory"]) / "debug" / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> Iterator[httpx.Client]:
    """Runs a server (`{port}` in `command` is a free port) until its port accepts connections
    (no HTTP probe: it would count against the limits); yields a client for it; stops it."""
    port = _free_port()
    # Only the settings given here: nothing from the environment of the test run.
    base_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RATE_GUARD_")}
    proc = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=cwd,
        env={**base_env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                pytest.fail(f"{command[0]} exited with {proc.returncode}: {proc.stderr.read()!r}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{command[0]} did not start")
                time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shared_env(redis_url: str, **extra: str) -> dict[str, str]:
    """What both apps are configured with: one Redis, one key prefix. A generous timeout and
    failing closed, so that a slow Redis on a busy machine shows as 503 rather than as requests
    admitted without counting."""
    return {
        "RATE_GUARD_REDIS_URL": redis_url,
        "RATE_GUARD_KEY_PREFIX": f"x{uuid.uuid4().hex[:12]}",
        "RATE_GUARD_REDIS_TIMEOUT": "2.0",
        "RATE_GUARD_FAIL_OPEN": "false",
        **extra,
    }


def alternate(
    clients: tuple[httpx.Client, httpx.Client], paths: list[str], **kwargs: object
) -> list[httpx.Response]:
    """GETs `paths` in order, alternating between the two apps."""
    return [clients[i % 2].get(path, **kwargs) for i, path in enumerate(paths)]  # type: ignore[arg-type]


def uvicorn(app: str, app_dir: Path) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", "{port}",
            "--log-level", "warning"]  # fmt: skip


def test_the_two_quick_starts_share_one_quota(redis_url: str, axum_examples: Path) -> None:
    """examples/fastapi_quickstart.py and crates/rate-guard-tower/examples/axum_quickstart.rs:
    `/sensitive-data` is 5 per minute per client IP, whichever app answers."""
    env = shared_env(redis_url)
    axum = [str(axum_examples / "axum_quickstart"), "--port", "{port}"]
    python = uvicorn("fastapi_quickstart:app", EXAMPLES)
    with serving(axum, env) as rust, serving(python, env) as py:
        answers = alternate((py, rust), ["/sensitive-data"] * 10)
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 5
    # One count: the remaining quota goes down across both apps.
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert {r.headers["x-ratelimit-limit"] for r in answers} == {"5"}
    # The same refusal from both languages.
    for refused in answers[5:7]:
        assert refused.json() == {"detail": "Rate limit exceeded: 5 per 1 minute"}
        assert refused.headers["content-type"] == "application/json"
        assert int(refused.headers["retry-after"]) >= 1


PY_APP = """
from fastapi import FastAPI, Request
from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig

guard = FastAPIRateGuard(RateGuardConfig())  # everything from RATE_GUARD_*
app = FastAPI()
app.add_middleware(RateLimitMiddleware, guard=guard)


@app.get("/")
async def root() -> str:
    return "hello"


@app.get("/items/{item_id}")
@guard.limit(limit="3/minute")
async def item(item_id: str, request: Request) -> str:
    return item_id


@app.get("/upload")
@guard.shared_limit("3/minute", scope="uploads")
async def upload(request: Request) -> str:
    return "stored"
"""


@pytest.fixture
def py_app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cross_app.py").write_text(textwrap.dedent(PY_APP))
    return tmp_path


RULES = [
    {"limit": "4/hour", "key": "global"},
    {"limit": "4/hour", "algorithm": "fixed_window", "key": "header:X-Api-Key"},
    {"limit": "4/hour", "algorithm": "sliding_log"},
    {"limit": "2/hour", "algorithm": "token_bucket", "burst": 4, "key": "header:X-Api-Key"},
    # Several rates under one name: each rate's id (`api.4.3600s`) is part of the key schema.
    {"limit": "4/hour; 100/day", "name": "api"},
]


def rule_id(rule: dict[str, object]) -> str:
    return f"{rule.get('algorithm', 'sliding_window')}-{rule.get('key', 'ip')}"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_global_rules_from_one_environment_share_one_quota(
    rule: dict[str, object], redis_url: str, axum_examples: Path, py_app_dir: Path
) -> None:
    """The same RATE_GUARD_GLOBAL_RULES in both processes: one quota of 4 per key."""
    env = shared_env(redis_url, RATE_GUARD_GLOBAL_RULES=json.dumps([rule]))
    axum = [str(axum_examples / "axum_from_config"), "--port", "{port}"]
    headers = {"x-api-key": "k1"}
    with serving(axum, env) as rust, serving(uvicorn("cross_app:app", py_app_dir), env) as py:
        answers = alternate((rust, py), ["/"] * 10, headers=headers)
        # Another key has its own quota (for `global`, there is no other key).
        other = py.get("/", headers={"x-api-key": "k2"})
    assert [r.status_code for r in answers] == [200] * 4 + [429] * 6
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:4]] == ["3", "2", "1", "0"]
    assert other.status_code == (429 if rule.get("key") in ("global", None) else 200)


def test_route_limits_share_one_quota_per_template(
    redis_url: str, axum_examples: Path, py_app_dir: Path
) -> None:
    """`@guard.limit("3/minute")` on FastAPI's `/items/{item_id}` and the same limit on axum's
    route template: 3 in total over every item URL and both apps."""
    route = {"path": "/items/{item_id}", "method": "GET", "rules": [{"limit": "3/minute"}]}
    env = shared_env(redis_url)
    axum = [str(axum_examples / "axum_from_config"), "--port", "{port}"]
    rust_env = {**env, "RATE_GUARD_ROUTES": json.dumps([route])}
    with serving(axum, rust_env) as rust, serving(uvicorn("cross_app:app", py_app_dir), env) as py:
        answers = alternate((py, rust), [f"/items/{i}" for i in range(8)])
        root = rust.get("/")
    assert [r.status_code for r in answers] == [200] * 3 + [429] * 5
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:3]] == ["2", "1", "0"]
    refusal = {"detail": "Rate limit exceeded: 3 per 1 minute"}
    assert answers[3].json() == answers[4].json() == refusal
    # The route's limit is its own: the root is not limited.
    assert root.status_code == 200 and "x-ratelimit-limit" not in root.headers


def test_a_shared_scope_is_one_quota_for_a_rust_route_and_a_python_route(
    redis_url: str, axum_examples: Path, py_app_dir: Path
) -> None:
    """The scope `uploads` on axum's `/items/{item_id}` (RouteConfig.scope) and on FastAPI's
    `/upload` (`shared_limit`): different templates, one quota of 3 in total, because a shared
    limit's key holds the scope and the rule, not the route."""
    route = {
        "path": "/items/{item_id}",
        "method": "GET",
        "scope": "uploads",
        "rules": [{"limit": "3/minute"}],
    }
    env = shared_env(redis_url)
    axum = [str(axum_examples / "axum_from_config"), "--port", "{port}"]
    rust_env = {**env, "RATE_GUARD_ROUTES": json.dumps([route])}
    with serving(axum, rust_env) as rust, serving(uvicorn("cross_app:app", py_app_dir), env) as py:
        answers = [(py.get("/upload") if i % 2 == 0 else rust.get(f"/items/{i}")) for i in range(6)]
    assert [r.status_code for r in answers] == [200] * 3 + [429] * 3
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:3]] == ["2", "1", "0"]
    refusal = {"detail": "Rate limit exceeded: 3 per 1 minute"}
    assert answers[3].json() == answers[4].json() == refusal

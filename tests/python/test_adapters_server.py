"""The adapters behind real servers, driven with httpx: the FastAPI quick start under uvicorn
(memory; Redis shared by two workers) and the Django example under gunicorn (`--preload`, two
forked workers, Redis)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(command: list[str], cwd: Path, env: dict[str, str], probe: str) -> Iterator[str]:
    """Runs a server (`{port}` in `command` is a free port) until `probe` answers; yields its
    base URL; stops it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                pytest.fail(f"server exited with {proc.returncode}: {proc.stderr.read().decode()}")
            try:
                httpx.get(base + probe, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("server did not start")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fresh_connections(base: str, path: str, n: int, **kwargs: object) -> list[httpx.Response]:
    """`n` requests, each on a new connection (so that several workers share them)."""
    out = []
    for _ in range(n):
        with httpx.Client(base_url=base) as c:
            out.append(c.get(path, **kwargs))  # type: ignore[arg-type]
    return out


def test_fastapi_quick_start_under_uvicorn() -> None:
    command = [str(BIN / "uvicorn"), "fastapi_quickstart:app", "--port", "{port}"]
    command += ["--app-dir", str(EXAMPLES), "--log-level", "warning"]
    env = {"RATE_GUARD_REDIS_URL": ""} if "RATE_GUARD_REDIS_URL" in os.environ else {}
    with serving(command, EXAMPLES, env, "/openapi.json") as base, httpx.Client(base_url=base) as c:
        answers = [c.get("/sensitive-data") for _ in range(7)]
    assert [r.status_code for r in answers] == [200] * 5 + [429, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:5]] == ["4", "3", "2", "1", "0"]
    refused = answers[5]
    assert refused.json() == {"detail": "Rate limit exceeded: 5 per 1 minute"}
    assert refused.headers["content-type"] == "application/json"
    assert int(refused.headers["retry-after"]) >= 1


def test_two_uvicorn_workers_share_one_quota_on_redis(redis_url: str) -> None:
    command = [str(BIN / "uvicorn"), "fastapi_quickstart:app", "--port", "{port}"]
    command += ["--app-dir", str(EXAMPLES), "--workers", "2", "--log-level", "warning"]
    env = {"RATE_GUARD_REDIS_URL": redis_url, "RATE_GUARD_KEY_PREFIX": uuid.uuid4().hex}
    with serving(command, EXAMPLES, env, "/openapi.json") as base:
        answers = fresh_connections(base, "/sensitive-data", 8)
    assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 3


def test_django_under_gunicorn_preloaded_and_forked(redis_url: str) -> None:
    project = EXAMPLES / "django_project"
    command = [str(BIN / "gunicorn"), "demo_site.wsgi", "--bind", "127.0.0.1:{port}"]
    command += ["--workers", "2", "--preload", "--log-level", "warning"]
    env = {
        "RATE_GUARD_REDIS_URL": redis_url,
        "RATE_GUARD_KEY_PREFIX": uuid.uuid4().hex,
    }
    with serving(command, project, env, "/health") as base:
        # The guard was built before the fork (--preload): each worker must still decide.
        answers = fresh_connections(
            base, "/sensitive-data", 8, headers={"x-forwarded-for": "1.2.3.4"}
        )
        health = fresh_connections(base, "/health", 3)
        items = fresh_connections(base, "/items/1", 2)
    assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 3
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json() == {"detail": "Rate limit exceeded: 5 per 1 minute"}
    assert int(refused.headers["retry-after"]) >= 1
    assert [r.status_code for r in health] == [200] * 3
    assert "x-ratelimit-limit" not in health[0].headers
    # 100/minute per client across views: the 5 admitted /sensitive-data calls count too.
    assert [r.headers["x-ratelimit-remaining"] for r in items] == ["94", "93"]

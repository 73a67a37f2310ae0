"""Fixtures: a real redis-server on a free port (never 6379), started once per session."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig

RedisProcess = subprocess.Popen[bytes]


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != 6379:
            return port


def _wait_for(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not answer PING in time")


@contextlib.contextmanager
def running_redis() -> Iterator[tuple[str, RedisProcess]]:
    """A redis-server of its own on a free port, in a temp dir; killed on exit. Yields its URL
    and its process."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server not found: run `make redis`")
    with tempfile.TemporaryDirectory(prefix="rate-guard-redis-") as tmp:
        port = _free_port()
        log = Path(tmp) / "redis.log"
        proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(port, proc, time.monotonic() + 10)
            yield f"redis://127.0.0.1:{port}/0", proc
        finally:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server shared by the session's tests (each uses its own prefix)."""
    with running_redis() as (url, _):
        yield url


@pytest.fixture
def spawn_redis() -> Callable[[], contextlib.AbstractContextManager[tuple[str, RedisProcess]]]:
    """Starts a redis-server of the test's own (one it may kill): `with spawn_redis() as (url,
    proc):`."""
    return running_redis


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    """The store to test on: `memory` or `redis`."""
    return str(request.param)


@pytest.fixture
def guard(store: str, request: pytest.FixtureRequest) -> RateGuard:
    """A guard on `store`, with a key prefix of its own so tests never share state."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if store == "memory":
        return RateGuard(RateGuardConfig(key_prefix=prefix))
    url = request.getfixturevalue("redis_url")
    return RateGuard(RateGuardConfig(redis_url=url, key_prefix=prefix, redis_timeout=2.0))


_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def testkit_redis(*args: str) -> Iterator[tuple[str, IO[bytes]]]:
    """`redis-fixture <args>`: a Redis `server` (further arguments go to redis-server), `tls`
    server, `cluster` (3 masters + 3 replicas) or `sentinel` (master, replica, three
    sentinels) on free ports, started by the Rust testkit (the same code as the Rust suite's
    fixtures). Yields the URL it prints first and its output, for the lines some kinds print
    after it (`tls`: the directory of its PEM files); stopped on exit."""
    subprocess.run(
        ["cargo", "build", "-q", "-p", "rate-guard-testkit", "--bin", "redis-fixture"],
        cwd=_ROOT,
        check=True,
    )
    proc = subprocess.Popen(
        [str(_ROOT / "target" / "debug" / "redis-fixture"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=_ROOT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        url = proc.stdout.readline().decode().strip()
        if not url:
            raise RuntimeError(f"redis-fixture {args[0]} did not start (exit {proc.wait()})")
        yield url, proc.stdout
    finally:
        proc.stdin.close()  # the fixture stops its servers when stdin closes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Testkit = Callable[..., contextlib.AbstractContextManager[tuple[str, IO[bytes]]]]
"""The `testkit` fixture's type: `testkit(kind, *args)` as a context manager."""


@pytest.fixture
def testkit() -> Testkit:
    """Starts a deployment of the testkit's for the test alone: `with testkit("server",
    "--rename-command", "FCALL", "") as (url, output):` (see `testkit_redis`)."""
    return testkit_redis


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A `redis+cluster://` URL of a real 3+3 cluster shared by the session."""
    with testkit_redis("cluster") as (url, _):
        yield url


@pytest.fixture(scope="session")
def sentinel_url() -> Iterator[str]:
    """A `redis+sentinel://` URL of a real Sentinel deployment shared by the session."""
    with testkit_redis("sentinel") as (url, _):
        yield url

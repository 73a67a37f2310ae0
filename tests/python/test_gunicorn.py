"""gunicorn `--preload`: the guard is built and used in the master before the workers fork;
two workers (sync, and uvicorn's ASGI worker) serve requests without hanging and share one
quota through Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import asyncio, json, os
    from py_rate_guard import RateGuard
    from py_rate_guard.models.config import RateGuardConfig

    guard = RateGuard(RateGuardConfig(redis_url=os.environ["URL"], key_prefix=os.environ["PREFIX"]))
    # Used in the master, before the fork: runtime and connections exist already.
    assert guard.hit("preload", "1000/hour").allowed
    asyncio.run(guard.ahit("preload", "1000/hour"))

    def _answer(allowed):
        status = "200 OK" if allowed else "429 Too Many Requests"
        body = json.dumps({"pid": os.getpid(), "allowed": allowed}).encode()
        return status, body

    def wsgi(environ, start_response):
        status, body = _answer(guard.hit("shared", "10/hour").allowed)
        start_response(status, [("content-type", "application/json")])
        return [body]

    def post_worker_init(worker):
        # Every worker, right after the fork, decides once and says so.
        assert guard.hit("worker", "1000/hour").allowed
        open(os.path.join(os.environ["MARKS"], str(os.getpid())), "w").close()

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        decision = await guard.ahit("shared", "10/hour")
        status, body = _answer(decision.allowed)
        await send({"type": "http.response.start", "status": int(status[:3]),
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.mark.parametrize("worker", ["sync", "uvicorn.workers.UvicornWorker"])
def test_preloaded_guard_serves_from_two_forked_workers(
    redis_url: str, tmp_path: Path, worker: str
) -> None:
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("gunicorn is not installed in the virtualenv: run `make python`")
    (tmp_path / "preload_app.py").write_text(APP)
    (tmp_path / "conf.py").write_text("from preload_app import post_worker_init\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    port = _free_port()
    target = "preload_app:wsgi" if worker == "sync" else "preload_app:asgi"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--preload",
            "-c",
            "conf.py",
            "-w",
            "2",
            "-k",
            worker,
            "--timeout",
            "10",
            "-b",
            f"127.0.0.1:{port}",
            target,
        ],
        cwd=tmp_path,
        env={
            "URL": redis_url,
            "PREFIX": f"g{uuid.uuid4().hex[:8]}",
            "PATH": "/usr/bin:/bin",
            "MARKS": str(marks),
            "PYTHONPATH": str(tmp_path),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"gunicorn did not start:\n{out}")
                time.sleep(0.05)
        while len(list(marks.iterdir())) < 2:
            if time.monotonic() > deadline:
                pytest.fail("a worker did not decide after the fork (hung?)")
            time.sleep(0.05)
        statuses = [_get(f"http://127.0.0.1:{port}/") for _ in range(30)]
        # Both workers answered (a hung worker would time out the requests), and together
        # they admitted the quota once: 10 of 30.
        assert statuses.count(200) == 10, statuses
        assert statuses.count(429) == 20, statuses
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    log = out.decode()
    assert "WORKER TIMEOUT" not in log, log

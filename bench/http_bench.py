"""HTTP benchmark: a FastAPI hello-world under uvicorn (one worker), without a limiter, with
py-rate-guard's middleware (memory and Redis), and with slowapi (memory and Redis).

    .venv/bin/python bench/http_bench.py [--duration 10] [--rounds 3] [--connections 64]
        [--variants none,ours-redis,...] [--baseline DIR] [--asgi]

Each variant serves `GET /hello` (the endpoint takes `request: Request`, as slowapi requires,
in every variant). The limited variants apply a global (default) limit and a route limit, both
too high to ever refuse, so every variant answers 200 and only the limiter's cost differs. The
load comes from `wrk` when it is on PATH (`apt-get install wrk`), else from a raw-socket
asyncio client (uvloop, keep-alive connections) in this process. Server and load generator are
pinned to different CPUs when there are at least two. Redis variants use a redis-server started
on a free port (or --redis-url). Variants alternate in each round; the median of the rounds is
reported, with its ratio to the no-limiter run and the targets:
>= 0.9x no limiter on memory, >= 0.85x on Redis, and above slowapi on both.

Floor cases (what any middleware that awaits a Redis answer pays, without our limiter): a
pure-ASGI middleware in front of the same app that awaits
- `floor-done`: an asyncio future that is already done (no suspension: the layer's own cost);
- `floor-soon`: a future resolved by `loop.call_soon` (one suspension of the request's task,
  no other thread);
- `floor-bridge`: our native bridge's future, resolved by a task on the engine's I/O thread
  that does no I/O (the suspension, the hand-off to the I/O thread and back through the
  bridge's eventfd: everything of a Redis decision but the Redis command).

`--baseline DIR` runs the `ours-*` variants a second time with `PYTHONPATH=DIR` (a copy of
another build of the `py_rate_guard` package, e.g. main's), as `base:ours-*`, alternating with
the others in every round. `--asgi` drives each app in-process instead (no server, no network:
64 concurrent requests on one event loop, pinned to one CPU) and reports CPU per request (all
threads of the process, `time.process_time`): the limiter's own cost, without the noise of
the HTTP stack and the load generator.

`--serve VARIANT --port N` runs one server (what the benchmark starts for each variant).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# At module level: the endpoints' annotations (strings, under `from __future__ import
# annotations`) are resolved by FastAPI in this module's globals.
from fastapi import FastAPI, Request

VARIANTS = ("none", "ours-memory", "ours-redis", "slowapi-memory", "slowapi-redis")
FLOORS = ("floor-done", "floor-soon", "floor-bridge")
NO_HEADERS = ("ours-memory-noheaders", "ours-redis-noheaders")  # `headers="none"`: their cost
CHOICES = VARIANTS + FLOORS + NO_HEADERS
BASE = "base:"
NEVER = "1000000/minute"  # a limit no run reaches: every request is decided and admitted
PATH = "/hello"


# -- the servers ---------------------------------------------------------------------------


def build_app(variant: str, redis_url: str | None) -> Any:
    app = FastAPI()
    if variant == "none":

        @app.get(PATH)
        async def hello(request: Request) -> dict[str, str]:
            return {"hello": "world"}

    elif variant.startswith("ours"):
        from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
        from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

        guard = FastAPIRateGuard(
            RateGuardConfig(
                global_rules=[RateLimitRule(limit=NEVER)],
                redis_url=redis_url if variant.startswith("ours-redis") else None,
                key_prefix=f"bench{os.getpid()}",
                headers="none" if variant.endswith("-noheaders") else "legacy",
            )
        )
        app.add_middleware(RateLimitMiddleware, guard=guard)

        @app.get(PATH)
        @guard.limit(NEVER)
        async def hello(request: Request) -> dict[str, str]:
            return {"hello": "world"}

    elif variant.startswith("slowapi"):
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.middleware import SlowAPIASGIMiddleware
        from slowapi.util import get_remote_address

        storage = redis_url if variant == "slowapi-redis" else "memory://"
        limiter = Limiter(
            key_func=get_remote_address,
            default_limits=[NEVER],
            storage_uri=storage,
            key_prefix=f"bench{os.getpid()}",
        )
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        app.add_middleware(SlowAPIASGIMiddleware)

        @app.get(PATH)
        @limiter.limit(NEVER)
        async def hello(request: Request) -> dict[str, str]:
            return {"hello": "world"}

    elif variant.startswith("floor-"):

        @app.get(PATH)
        async def hello(request: Request) -> dict[str, str]:
            return {"hello": "world"}

        app.add_middleware(_FloorMiddleware, kind=variant, redis_url=redis_url)

    else:
        raise SystemExit(f"unknown variant {variant!r}; expected one of {', '.join(CHOICES)}")
    return app


class _FloorMiddleware:
    """A pure-ASGI middleware that awaits one future per request and nothing else (see the
    floor cases above)."""

    def __init__(self, app: Any, kind: str, redis_url: str | None) -> None:
        self.app = app
        self.kind = kind
        if kind == "floor-bridge":
            from py_rate_guard.adapters.fastapi import FastAPIRateGuard
            from py_rate_guard.models.config import RateGuardConfig

            guard = FastAPIRateGuard(RateGuardConfig(redis_url=redis_url))
            self.front, self.native = guard.front, guard._guard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            kind = self.kind
            if kind == "floor-bridge":
                await self.front._bridge_round_trip(self.native)
            else:
                future = asyncio.get_running_loop().create_future()
                if kind == "floor-done":
                    future.set_result(None)
                else:
                    asyncio.get_running_loop().call_soon(future.set_result, None)
                await future
        await self.app(scope, receive, send)


def serve(variant: str, port: int, redis_url: str | None) -> None:
    import uvicorn

    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    app = build_app(variant, redis_url)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        loop=loop,
        http=http,
        access_log=False,
        log_level="warning",
    )


# -- the load ------------------------------------------------------------------------------

REQUEST = b"GET " + PATH.encode() + b" HTTP/1.1\r\nHost: bench\r\n\r\n"


async def _connection(
    port: int, stop_at: float, counts: dict[int, int], latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buffer = b""
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(REQUEST)
            while b"\r\n\r\n" not in buffer:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            while len(buffer) < length:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[length:]
            counts[status] = counts.get(status, 0) + 1
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(port: int, connections: int, duration: float) -> dict[str, Any]:
    counts: dict[int, int] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + duration
    await asyncio.gather(
        *(_connection(port, stop_at, counts, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    total = sum(counts.values())
    return {
        "rps": total / elapsed,
        "statuses": counts,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
    }


def python_load(port: int, connections: int, duration: float) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(_load(port, connections, duration))  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(_load(port, connections, duration))


def wrk_load(port: int, connections: int, duration: float, cpu: int | None) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    command.append(f"http://127.0.0.1:{port}{PATH}")
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)

    def latency(pct: str) -> float:
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    return {
        "rps": rps,
        "statuses": {"non-2xx": int(non_2xx.group(1))} if non_2xx else {200: "all"},
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


# -- the run -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (make redis), or pass --redis-url")
    with tempfile.TemporaryDirectory(prefix="http-bench-redis-") as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(port, proc)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used: robust to other load on the machine,
    where requests per second are not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def variant_env(variant: str, baseline: str | None) -> tuple[str, dict[str, str] | None]:
    """The variant to build and the environment of its process: `base:` variants import the
    package from `baseline`."""
    if not variant.startswith(BASE):
        return variant, None
    if not baseline:
        raise SystemExit(f"{variant} needs --baseline DIR")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (baseline, env.get("PYTHONPATH")) if p)
    return variant[len(BASE) :], env


@contextmanager
def server(
    variant: str, redis_url: str, cpu: int | None, baseline: str | None = None
) -> Iterator[tuple[int, int]]:
    port = free_port()
    variant, env = variant_env(variant, baseline)
    command = [sys.executable, __file__, "--serve", variant, "--port", str(port)]
    command += ["--redis-url", redis_url]
    proc = subprocess.Popen(command, env=env)
    try:
        if cpu is not None:
            os.sched_setaffinity(proc.pid, {cpu})
        wait_for(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def measure(
    variant: str, redis_url: str, args: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> dict[str, Any]:
    server_cpu, load_cpu = cpus
    if args.asgi:
        return asgi_measure(variant, redis_url, args, server_cpu)
    with server(variant, redis_url, server_cpu, args.baseline) as (port, pid):
        probe = python_load(port, 1, 0.05)["statuses"]
        if set(probe) != {200}:
            raise SystemExit(f"{variant}: GET {PATH} answered {probe}, not 200")
        if args.load == "wrk":
            wrk_load(port, args.connections, args.warmup, load_cpu)
            cpu_before = cpu_seconds(pid)
            result = wrk_load(port, args.connections, args.duration, load_cpu)
        else:
            python_load(port, args.connections, args.warmup)
            cpu_before = cpu_seconds(pid)
            result = python_load(port, args.connections, args.duration)
        served = result["rps"] * args.duration
        result["cpu_us"] = 1e6 * (cpu_seconds(pid) - cpu_before) / served if served else 0.0
        return result


# -- in-process: the app alone --------------------------------------------------------------


def asgi_run(variant: str, redis_url: str, requests: int, concurrency: int) -> None:
    """Drives the app of `variant` in this process (`--asgi-run`) and prints its figures as
    one line: requests/s, CPU per request (µs, all threads), statuses."""
    import uvloop

    app = build_app(variant, redis_url)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [(b"host", b"bench")],  # what wrk sends
    }
    statuses: dict[int, int] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    async def client(count: int) -> None:
        for _ in range(count):
            await app({**scope, "state": {}}, receive, send)

    async def load(total: int) -> None:
        await asyncio.gather(*(client(total // concurrency) for _ in range(concurrency)))

    async def run() -> tuple[float, float]:
        await load(max(concurrency, requests // 10))  # warm-up: routes, connections, caches
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        await load(requests)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = sum(statuses.values())
        return done / wall, 1e6 * cpu / done

    rps, cpu_us = uvloop.run(run())
    print(f"{rps} {cpu_us} {sorted(statuses.items())}")


def asgi_measure(
    variant: str, redis_url: str, args: argparse.Namespace, cpu: int | None
) -> dict[str, Any]:
    name, env = variant_env(variant, args.baseline)
    command = [sys.executable, __file__, "--asgi-run", name, "--redis-url", redis_url]
    command += ["--requests", str(args.requests), "--connections", str(args.connections)]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    rps, cpu_us, statuses = out.strip().splitlines()[-1].split(" ", 2)
    return {
        "rps": float(rps),
        "cpu_us": float(cpu_us),
        "statuses": statuses,
        "p50_ms": float("nan"),
        "p99_ms": float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=CHOICES, help="run one server (internal)")
    parser.add_argument("--asgi-run", choices=CHOICES, help="(internal)")
    parser.add_argument(
        "--baseline", help="a directory holding another build of py_rate_guard (base: variants)"
    )
    parser.add_argument("--asgi", action="store_true", help="drive the apps in-process")
    parser.add_argument("--requests", type=int, default=20000, help="per --asgi measurement")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.redis_url)
        return
    if args.asgi_run:
        asgi_run(args.asgi_run, args.redis_url, args.requests, args.connections)
        return

    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "python"
    cpus: tuple[int | None, int | None] = (None, None)
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        cpus = (available[0], available[1])
        if args.load == "python":
            os.sched_setaffinity(0, {available[1]})
    variants = [v for v in args.variants.split(",") if v]
    if args.baseline:
        variants += [BASE + v for v in variants if v.startswith("ours-")]
    for variant in variants:
        if variant.removeprefix(BASE) not in CHOICES:
            raise SystemExit(f"unknown variant {variant!r}; expected one of {', '.join(CHOICES)}")
    if args.asgi:
        print(
            f"in-process (--asgi): {args.requests} requests, {args.connections} concurrent,"
            f" x {args.rounds} rounds; CPU {cpus[0]}",
            flush=True,
        )
    else:
        print(
            f"load: {args.load}, {args.connections} connections, {args.duration:.0f} s x "
            f"{args.rounds} rounds; server CPU {cpus[0]}, load CPU {cpus[1]}",
            flush=True,
        )
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with redis_server(args.redis_url) as redis_url:
        for round_number in range(1, args.rounds + 1):
            for variant in variants:
                result = measure(variant, redis_url, args, cpus)
                results[variant].append(result)
                print(
                    f"round {round_number} {variant:15} {result['rps']:9.0f} req/s  "
                    f"server CPU {result['cpu_us']:6.0f} us/req  "
                    f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                    f"statuses {result['statuses']}",
                    flush=True,
                )
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    """Requests per second (what the targets are about) and the server's CPU time per request
    (the same ratio on a quiet machine, and a steadier one on a busy machine: a single worker
    serves 1 / CPU-per-request at most)."""
    median = {v: statistics.median(r["rps"] for r in runs) for v, runs in results.items()}
    cpu = {v: statistics.median(r["cpu_us"] for r in runs) for v, runs in results.items()}
    p99 = {v: statistics.median(r["p99_ms"] for r in runs) for v, runs in results.items()}
    base, base_cpu = median.get("none"), cpu.get("none")
    print(
        "\n| variant | req/s (median) | vs no limiter | server CPU/req | over no limiter"
        " | CPU-bound vs no limiter | p99 (ms) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant, rps in median.items():
        ratio = f"{rps / base:.2f}x" if base else "-"
        cpu_ratio = f"{base_cpu / cpu[variant]:.2f}x" if base_cpu and cpu[variant] else "-"
        over = f"{cpu[variant] - base_cpu:+.1f} us" if base_cpu else "-"
        print(
            f"| {variant} | {rps:.0f} | {ratio} | {cpu[variant]:.1f} us | {over} | {cpu_ratio} "
            f"| {p99[variant]:.2f} |"
        )
    if base is None or not base_cpu:
        return
    checks = []
    for store, target in (("memory", 0.9), ("redis", 0.85)):
        ours, theirs = median.get(f"ours-{store}"), median.get(f"slowapi-{store}")
        ours_cpu, theirs_cpu = cpu.get(f"ours-{store}"), cpu.get(f"slowapi-{store}")
        if ours is not None and ours_cpu:
            checks.append(
                (f"ours on {store} >= {target}x no limiter (req/s)", ours / base >= target)
            )
            checks.append(
                (
                    f"ours on {store} >= {target}x no limiter (CPU/req)",
                    base_cpu / ours_cpu >= target,
                )
            )
        if ours is not None and theirs is not None:
            checks.append(
                (f"ours above slowapi on {store} (req/s {ours / theirs:.2f}x)", ours > theirs)
            )
        if ours_cpu and theirs_cpu:
            checks.append(
                (
                    f"ours above slowapi on {store} (CPU/req {theirs_cpu / ours_cpu:.2f}x)",
                    ours_cpu < theirs_cpu,
                )
            )
    print()
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()

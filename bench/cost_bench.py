"""Cost per decision: client CPU, Redis CPU and throughput, side by side in one run.

    .venv/bin/python bench/cost_bench.py [--calls 20000] [--rounds 3] [--script-calls 50000]
                                         [--only CASE ...]

Starts its own redis-server on a free port (`--save '' --appendonly no`) and runs, round-robin
over `--rounds` rounds (the median of each metric is reported, with its spread):

1. Client cases, one fixed-window rule of 10000/hour over 1,000 identities round-robin (never
   refused), each measured after a warm-up, with `CONFIG RESETSTAT` and `FLUSHALL` before it:
   - ours-sync    `RateGuard.hit`, one thread; ours-sync-8t: 8 threads sharing one guard (its
                  default `redis_pool_size=1`)
   - ours-async   `RateGuard.ahit`, 50 tasks on asyncio
   - limits-sync  `limits` FixedWindowRateLimiter on `limits.storage.RedisStorage` (redis-py;
                  hiredis when installed)
   - limits-async `limits.aio` FixedWindowRateLimiter on its RedisStorage (redis.asyncio), 50 tasks
   - raw-sync     redis-py `EVALSHA` of the reference fixed_window.lua (the floor), one thread
   - limits-sync-8t, raw-sync-8t: the same from 8 threads sharing one redis-py client (its
                  connection pool opens a connection per thread that needs one)
   - raw-async    the same on redis.asyncio, 50 tasks
   Columns, per decision: client CPU (`time.process_time()`: every thread of this process, the
   engine's I/O thread included), Redis script time (`INFO commandstats`: `usec` of the
   top-level script commands, EVALSHA/EVAL/FCALL and their _RO forms, plus SCRIPT LOAD),
   Redis process CPU (the server's threads, from /proc/<pid>/task/*/schedstat: it adds what
   commandstats leaves out, reading, parsing and answering the command), their total with the
   client's, decisions per second (wall clock), and the connections the case used: sync
   cases build their clients afresh and count, with `CLIENT LIST`, the connections that appeared
   and, in brackets, those whose last command was a script call (the ones that carried the
   decisions; a guard also holds its async connection, idle in a sync case).
2. scripts: the Redis cost of our request script per algorithm against the hand-written
   reference scripts (kept outside this repository; RATE_GUARD_REFERENCE_LUA names their
   directory), both driven by
   `redis-benchmark -c 50 -P 16 -r 1000 -n <script-calls> EVALSHA <sha> ...`, in µs per call
   from `INFO commandstats` (server time, not wall time). Our exact command is captured with
   `MONITOR` from one `hit` per algorithm through the installed engine, then replayed with
   `__rand_int__` in the key.

Numbers from a debug build of the extension mean nothing for the client columns: the header
says what was measured (the native module, the script's SHA1 and where its source matches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from limits import parse
from limits.aio.storage import RedisStorage as AioRedisStorage
from limits.aio.strategies import FixedWindowRateLimiter as AioFixedWindowRateLimiter
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIRS = [
    Path(os.environ.get("RATE_GUARD_REFERENCE_LUA", "/nonexistent")),
    ROOT.parent / "shared" / "bench" / "reference-lua",
    Path("/work/shared/bench/reference-lua"),
]
LUA_DIR = "crates/rate-guard-redis/lua"
# The order in which src/script.rs concatenates the files of the request script.
LUA_FILES = [
    "common.lua",
    "fixed_window.lua",
    "sliding_window.lua",
    "token_bucket.lua",
    "sliding_log.lua",
    "modules.lua",
    "request.lua",
]

RATE = "10000/hour"  # sliding_log allows at most 10,000; never reached: state is flushed per case
LIMIT, PERIOD_S = 10000, 3600
IDENTITIES = [f"client-{i}" for i in range(1000)]
TASKS = 50
THREADS = 8
ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket", "sliding_log")
SCRIPT_COMMANDS = {
    *("evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro"),
    *("script|load", "function|load"),
}
# The commands that decide (what a connection that carried decisions last ran).
CALL_COMMANDS = {"evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro"}
PROBE = "cost-probe"
CLIENT_CASES = (
    *("ours-sync", "ours-sync-8t", "ours-async"),
    *("limits-sync", "limits-sync-8t", "limits-async"),
    *("raw-sync", "raw-sync-8t", "raw-async"),
)
CASES = (*CLIENT_CASES, "scripts")

# Our algorithm, the reference script compared with it, and the reference's KEYS[1] prefix and
# ARGV for the same rate (see each file's header).
REFERENCES: list[tuple[str, str, list[str]]] = [
    ("fixed_window", "fixed_window.lua", [str(PERIOD_S * 1000), str(LIMIT), "1"]),
    ("sliding_window", "gcra.lua", [str(PERIOD_S * 1_000_000 // LIMIT), str(LIMIT), "1"]),
    ("token_bucket", "gcra.lua", [str(PERIOD_S * 1_000_000 // LIMIT), str(LIMIT), "1"]),
    ("token_bucket", "token_bucket.lua", [str(LIMIT), repr(LIMIT / PERIOD_S), "1"]),
    ("sliding_log", "sliding_window_log.lua", [str(PERIOD_S * 1000), str(LIMIT)]),
]


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != 6379:
            return port


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    server = shutil.which("redis-server")
    if server is None or shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-server and redis-benchmark are needed: run `make redis`")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(server, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", tmp, "--logfile", f"{tmp}/redis.log"),
        ],
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("redis-server did not start")


def server_cpu_ns(pid: int) -> int:
    """CPU time of every thread of process `pid` so far, in ns (schedstat: time on CPU)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def commandstats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    """{command: (calls, usec)} from INFO commandstats, without the bench's own commands."""
    stats = r.info("commandstats")
    out = {}
    for name, v in stats.items():
        cmd = name.removeprefix("cmdstat_")
        if cmd in ("info", "config|resetstat", "flushall", "ping", "monitor"):
            continue
        out[cmd] = (int(v["calls"]), int(v["usec"]))
    return out


def diff_stats(
    after: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    out = {}
    for cmd, (calls, usec) in after.items():
        c0, u0 = before.get(cmd, (0, 0))
        if calls - c0:
            out[cmd] = (calls - c0, usec - u0)
    return out


# --- what was measured ------------------------------------------------------------------------


def git(*args: str) -> str:
    """The output of `git args` in the repository, or "" when it fails."""
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def script_origin(sha: str) -> str:
    """Which source tree the request script the engine ran (SHA1 `sha`) was built from."""
    found = []
    work = "".join((ROOT / LUA_DIR / f).read_text() for f in LUA_FILES)
    if hashlib.sha1(work.encode()).hexdigest() == sha:
        found.append("the working tree")
    head = "".join(git("show", f"HEAD:{LUA_DIR}/{f}") for f in LUA_FILES)
    if hashlib.sha1(head.encode()).hexdigest() == sha:
        found.append("HEAD")
    return " and ".join(found) if found else "neither HEAD nor the working tree"


def has_debug_info(path: str) -> bool:
    """Whether the ELF file at `path` has a .debug_info section (a `maturin develop` build)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            shoff = struct.unpack_from("<Q", head, 0x28)[0]
            shentsize, _shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
            f.seek(shoff + shstrndx * shentsize)
            strtab = f.read(shentsize)
            off, size = struct.unpack_from("<QQ", strtab, 0x18)
            f.seek(off)
            return b".debug_info\x00" in f.read(size)
    except (OSError, struct.error):
        return False


def describe_build() -> list[str]:
    from py_rate_guard import _native

    so = _native.__file__ or "?"
    size = os.path.getsize(so) / 2**20
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(so)))
    debug = has_debug_info(so)
    dirty = git("status", "--porcelain", "--", "crates", "python")
    lines = [
        f"commit {git('rev-parse', '--short', 'HEAD').strip() or '?'}"
        + (" (uncommitted changes under crates/ or python/)" if dirty else ""),
        f"native module {so}: {size:.1f} MiB, built {built}"
        + (", with debug info (a `maturin develop` debug build?)" if debug else ""),
        f"redis-py {redis.__version__}, limits {limits_version()}, "
        + (f"hiredis {hiredis_version()}" if hiredis_version() else "WITHOUT hiredis")
        + f"; {redis_server_version()}",
    ]
    return lines


def limits_version() -> str:
    import limits

    return str(getattr(limits, "__version__", "?"))


def hiredis_version() -> str | None:
    try:
        import hiredis  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(getattr(hiredis, "__version__", "installed"))


def redis_server_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split(" sha=")[0].strip()


def find_reference_dir() -> Path:
    for d in REFERENCE_DIRS:
        if (d / "fixed_window.lua").is_file():
            return d
    raise SystemExit(
        "reference scripts not found: set RATE_GUARD_REFERENCE_LUA to their directory"
    )


# --- client cases -----------------------------------------------------------------------------


@dataclass
class Sample:
    decisions: int
    wall: float
    client_cpu: float
    server_cpu_ns: int
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Connections the case opened, and those of them that carried its script calls.
    connections: tuple[int, int] | None = None

    def metrics(self) -> dict[str, float]:
        n = self.decisions
        opened, carrying = self.connections or (float("nan"), float("nan"))
        script_calls = sum(c for cmd, (c, _) in self.stats.items() if cmd in SCRIPT_COMMANDS)
        script_usec = sum(u for cmd, (_, u) in self.stats.items() if cmd in SCRIPT_COMMANDS)
        return {
            "rate": n / self.wall,
            "client": self.client_cpu / n * 1e6,
            "script": script_usec / n,
            "server": self.server_cpu_ns / n / 1e3,
            "total": self.client_cpu / n * 1e6 + self.server_cpu_ns / n / 1e3,
            "calls": script_calls / n,
            "conns": opened,
            "carrying": carrying,
        }


class Probe:
    """Resets the server's statistics before a case and reads them around it."""

    def __init__(self, r: redis.Redis, pid: int) -> None:
        self.r, self.pid = r, pid

    def prepare(self) -> None:
        self.r.flushall()

    def clients(self) -> dict[int, str]:
        """{id: last command} of the server's connections, this probe's own left out."""
        me = self.r.client_id()
        return {int(c["id"]): c["cmd"] for c in self.r.client_list() if int(c["id"]) != me}

    def start(self) -> None:
        self.r.config_resetstat()
        self.stats0 = commandstats(self.r)
        self.server0 = server_cpu_ns(self.pid)
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self, decisions: int) -> Sample:
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0
        server = server_cpu_ns(self.pid) - self.server0
        stats = diff_stats(commandstats(self.r), self.stats0)
        return Sample(decisions, wall, cpu, server, stats)


def sync_case(
    probe: Probe,
    make: Callable[[], tuple[Callable[[int], Any], Callable[[], None]]],
    calls: int,
    threads: int = 1,
) -> Sample:
    """`calls` decisions of `call(i)` from `threads` threads, with clients that `make()` builds
    for this run (and whose connections are counted) and closes after it."""
    before = probe.clients()
    call, close = make()
    per_thread = calls // threads

    def work(offset: int, n: int, barrier: threading.Barrier | None) -> None:
        if barrier is not None:
            barrier.wait()
        for i in range(offset, offset + n):
            call(i)

    def in_threads(n: int, barrier: threading.Barrier | None) -> None:
        if threads == 1:
            work(0, n, None)
            return
        workers = [threading.Thread(target=work, args=(t * 97, n, barrier)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    try:
        probe.prepare()
        # Warm-up: connections (one per thread where a client opens them), scripts, keys.
        in_threads(min(calls // 10, 2000) // threads + 1, None)
        barrier = threading.Barrier(threads + 1) if threads > 1 else None
        if barrier is None:
            probe.start()
            in_threads(per_thread, None)
        else:
            # Threads wait at the barrier; the clock starts when the last one is ready.
            runner = threading.Thread(target=in_threads, args=(per_thread, barrier))
            runner.start()
            while barrier.n_waiting < threads:
                time.sleep(0.001)
            probe.start()
            barrier.wait()
            runner.join()
        sample = probe.stop(per_thread * threads)
        after = probe.clients()
    finally:
        close()
    opened = {i: cmd for i, cmd in after.items() if i not in before}
    carrying = sum(1 for cmd in opened.values() if cmd in CALL_COMMANDS)
    sample.connections = (len(opened), carrying)
    return sample


def async_case(
    probe: Probe,
    setup: Callable[[], Awaitable[tuple[Callable[[int], Awaitable[Any]], Any]]],
    calls: int,
) -> Sample:
    per_task = calls // TASKS

    async def main() -> Sample:
        call, close = await setup()

        async def task(offset: int, n: int) -> None:
            for i in range(n):
                await call(offset + i)

        probe.prepare()
        warm = min(calls // 10, 2000) // TASKS + 1
        await asyncio.gather(*(task(t * 20, warm) for t in range(TASKS)))
        probe.start()
        await asyncio.gather(*(task(t * 20, per_task) for t in range(TASKS)))
        sample = probe.stop(per_task * TASKS)
        if close is not None:
            await close()
        return sample

    return asyncio.run(main())


def client_cases(addr: str, port: int, ref_dir: Path) -> dict[str, Callable[[Probe, int], Sample]]:
    n_ids = len(IDENTITIES)
    guard = RateGuard(RateGuardConfig(redis_url=f"redis://{addr}", key_prefix="bench"))
    rule = RateLimitRule(limit=RATE, algorithm="fixed_window")
    item = parse(RATE)
    fw_source = (ref_dir / "fixed_window.lua").read_text()
    raw = redis.Redis(host="127.0.0.1", port=port)
    fw_sha = raw.script_load(fw_source)
    raw_keys = [f"ref:fw:{i}" for i in IDENTITIES]
    window_ms, limit = PERIOD_S * 1000, LIMIT

    def ours_sync(threads: int) -> Callable[[Probe, int], Sample]:
        def make() -> tuple[Callable[[int], Any], Callable[[], None]]:
            fresh = RateGuard(RateGuardConfig(redis_url=f"redis://{addr}", key_prefix="bench"))
            hit = fresh.hit
            return (lambda i: hit(IDENTITIES[i % n_ids], rule)), lambda: None

        return lambda probe, calls: sync_case(probe, make, calls, threads)

    def ours_async(probe: Probe, calls: int) -> Sample:
        async def setup() -> tuple[Callable[[int], Awaitable[Any]], Any]:
            ahit = guard.ahit
            return (lambda i: ahit(IDENTITIES[i % n_ids], rule)), None

        return async_case(probe, setup, calls)

    def limits_sync(threads: int) -> Callable[[Probe, int], Sample]:
        def make() -> tuple[Callable[[int], Any], Callable[[], None]]:
            storage = RedisStorage(f"redis://{addr}")
            hit = FixedWindowRateLimiter(storage).hit

            def close() -> None:
                client = getattr(storage, "storage", None)
                if client is not None:
                    client.connection_pool.disconnect()

            return (lambda i: hit(item, IDENTITIES[i % n_ids])), close

        return lambda probe, calls: sync_case(probe, make, calls, threads)

    def limits_async(probe: Probe, calls: int) -> Sample:
        async def setup() -> tuple[Callable[[int], Awaitable[Any]], Any]:
            storage = AioRedisStorage(f"async+redis://{addr}", implementation="redispy")
            aio = AioFixedWindowRateLimiter(storage)
            return (lambda i: aio.hit(item, IDENTITIES[i % n_ids])), None

        return async_case(probe, setup, calls)

    def raw_sync(threads: int) -> Callable[[Probe, int], Sample]:
        def make() -> tuple[Callable[[int], Any], Callable[[], None]]:
            client = redis.Redis(host="127.0.0.1", port=port)
            evalsha = client.evalsha

            def call(i: int) -> Any:
                return evalsha(fw_sha, 1, raw_keys[i % n_ids], window_ms, limit)  # type: ignore[arg-type]

            return call, client.connection_pool.disconnect

        return lambda probe, calls: sync_case(probe, make, calls, threads)

    def raw_async(probe: Probe, calls: int) -> Sample:
        async def setup() -> tuple[Callable[[int], Awaitable[Any]], Any]:
            client = redis.asyncio.Redis(host="127.0.0.1", port=port)
            evalsha = client.evalsha

            def call(i: int) -> Awaitable[Any]:
                return evalsha(fw_sha, 1, raw_keys[i % n_ids], window_ms, limit)  # type: ignore[arg-type]

            return call, client.aclose

        return async_case(probe, setup, calls)

    return {
        "ours-sync": ours_sync(1),
        "ours-sync-8t": ours_sync(THREADS),
        "ours-async": ours_async,
        "limits-sync": limits_sync(1),
        "limits-sync-8t": limits_sync(THREADS),
        "limits-async": limits_async,
        "raw-sync": raw_sync(1),
        "raw-sync-8t": raw_sync(THREADS),
        "raw-async": raw_async,
    }


# --- script table -----------------------------------------------------------------------------


def parse_monitor_line(line: str) -> tuple[str, list[str]]:
    """(source, arguments) of one MONITOR line: `<time> [<db> <source>] "ARG" "ARG" ...`."""
    source = line[line.index("[") + 1 : line.index("]")].split(" ", 1)[1]
    text, args, i = line[line.index("]") + 1 :], [], 0
    while True:
        i = text.find('"', i)
        if i < 0:
            return source, args
        i += 1
        out = bytearray()
        while text[i] != '"':
            c = text[i]
            if c == "\\":
                n = text[i + 1]
                if n == "x":
                    out.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                    continue
                out += {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b"}.get(
                    n, n.encode()
                )
                i += 2
                continue
            out += c.encode()
            i += 1
        args.append(out.decode("utf-8", "surrogateescape"))
        i += 1


def capture_our_commands(port: int, addr: str) -> dict[str, list[str]]:
    """The exact script command our engine sends for one `hit` of each algorithm."""
    guard = RateGuard(RateGuardConfig(redis_url=f"redis://{addr}", key_prefix="bench"))
    rules = {a: RateLimitRule(limit=RATE, algorithm=a) for a in ALGORITHMS}
    for a in ALGORITHMS:  # the script loaded and connections made before watching
        guard.hit("warm-up", rules[a])
    mon = socket.create_connection(("127.0.0.1", port))
    mon.settimeout(0.3)
    mon.sendall(b"MONITOR\r\n")
    buf = b""
    while b"+OK\r\n" not in buf:  # watching from here on
        buf += mon.recv(1 << 16)
    buf = buf.split(b"+OK\r\n", 1)[1]
    commands = {}
    try:
        for a in ALGORITHMS:
            guard.hit(PROBE, rules[a])
            time.sleep(0.1)
            try:
                while True:
                    chunk = mon.recv(1 << 20)
                    if not chunk:
                        break
                    buf += chunk
            except TimeoutError:
                pass
            lines, buf = buf.split(b"\r\n"), b""
            if lines and lines[-1]:
                buf = lines.pop()
            found = None
            for raw_line in lines:
                if not raw_line.startswith(b"+") or raw_line == b"+OK":
                    continue
                source, args = parse_monitor_line(raw_line[1:].decode("utf-8", "surrogateescape"))
                if source != "lua" and args and args[0].lower() in SCRIPT_COMMANDS:
                    found = args  # the last one, after a NOSCRIPT retry if any
            if found is None:
                raise SystemExit(f"no script command seen in MONITOR for {a}")
            commands[a] = found
    finally:
        mon.close()
    return commands


def randomize_key(args: list[str]) -> list[str]:
    """The captured command with the probe identity in its key made `__rand_int__`."""
    numkeys = int(args[2])
    keys = args[3 : 3 + numkeys]
    if numkeys != 1 or PROBE not in keys[0]:
        raise SystemExit(f"cannot find the identity {PROBE!r} in the captured key(s) {keys}")
    return [*args[:3], keys[0].replace(PROBE, f"{PROBE}-__rand_int__"), *args[4:]]


def redis_benchmark(
    r: redis.Redis, pid: int, port: int, n: int, args: list[str]
) -> dict[str, float]:
    """Per script call of `args` replayed by redis-benchmark: µs in commandstats, the server
    process's CPU µs, and the redis.call()s the script made."""
    r.flushall()
    r.config_resetstat()
    before = commandstats(r)
    cpu0 = server_cpu_ns(pid)
    out = subprocess.run(
        [
            *("redis-benchmark", "-h", "127.0.0.1", "-p", str(port)),
            *("-c", "50", "-P", "16", "-r", "1000", "-n", str(n), "--csv", *args),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    cpu = server_cpu_ns(pid) - cpu0
    stats = diff_stats(commandstats(r), before)
    if out.returncode != 0:
        raise SystemExit(f"redis-benchmark failed: {out.stderr.strip()}")
    calls = sum(c for cmd, (c, _) in stats.items() if cmd in SCRIPT_COMMANDS)
    usec = sum(u for cmd, (_, u) in stats.items() if cmd in SCRIPT_COMMANDS)
    inner = sum(c for cmd, (c, _) in stats.items() if cmd not in SCRIPT_COMMANDS)
    if calls < n or "ERR" in out.stdout:
        raise SystemExit(f"only {calls} of {n} script calls ran: {out.stdout[-300:]}")
    return {"usec": usec / calls, "cpu": cpu / calls / 1e3, "inner": inner / calls}


def script_runs(
    r: redis.Redis, pid: int, port: int, addr: str, ref_dir: Path, n: int
) -> tuple[dict[str, Callable[[], dict[str, float]]], str]:
    """The redis-benchmark runs of the script table, ours and its reference in turn."""
    ours = capture_our_commands(port, addr)
    shas = {f"{args[0].upper()} {args[1]}" for args in ours.values()}
    runs: dict[str, Callable[[], dict[str, float]]] = {}
    for a, ref, argv in REFERENCES:
        if f"ours {a}" not in runs:
            args = randomize_key(ours[a])
            runs[f"ours {a}"] = lambda args=args: redis_benchmark(r, pid, port, n, args)  # type: ignore[misc]
        if f"ref {ref}" not in runs:
            sha = r.script_load((ref_dir / ref).read_text())
            args = ["EVALSHA", sha, "1", f"ref:{ref}:__rand_int__", *argv]
            runs[f"ref {ref}"] = lambda args=args: redis_benchmark(r, pid, port, n, args)  # type: ignore[misc]
    return runs, ", ".join(sorted(shas))


# --- the run ----------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    m = statistics.median(values)
    return f"{(max(values) - min(values)) / m * 100:.0f}%" if m else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="decisions per client case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--script-calls", type=int, default=50000, help="redis-benchmark -n, per script"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only these cases (repeat or comma-separate; a prefix such as 'ours' "
        f"selects both of its cases): {', '.join(CASES)}",
    )
    args = parser.parse_args()
    wanted = [w for v in args.only for w in v.split(",") if w]
    selected = [
        c for c in CASES if not wanted or any(c == w or c.startswith(w + "-") for w in wanted)
    ]
    if not selected:
        raise SystemExit(f"--only matches no case: {', '.join(CASES)}")

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_redis(tmp)
        try:
            run(proc.pid, port, selected, args)
        finally:
            proc.kill()
            proc.wait()


def run(pid: int, port: int, selected: list[str], args: argparse.Namespace) -> None:
    addr = f"127.0.0.1:{port}"
    ref_dir = find_reference_dir()
    r = redis.Redis(host="127.0.0.1", port=port)
    print(
        f"cost_bench {time.strftime('%Y-%m-%d %H:%M %Z')}: {' '.join(sys.argv[1:]) or '(defaults)'}"
    )
    for line in describe_build():
        print(line)

    cases = client_cases(addr, port, ref_dir)
    runs: dict[str, Callable[[], Any]] = {}
    probe = Probe(r, pid)
    for name in selected:
        if name in cases:
            runs[name] = lambda f=cases[name]: f(probe, args.calls).metrics()  # type: ignore[misc]
    sha = ""
    if "scripts" in selected:
        scripts, sha = script_runs(r, pid, port, addr, ref_dir, args.script_calls)
        runs.update(scripts)
        origin = ""
        if sha.startswith("EVALSHA ") and "," not in sha:
            origin = f" (the source of {script_origin(sha.split()[1])})"
        print(f"our request command: {sha}{origin}")
    print(f"reference scripts: {ref_dir}")
    print(flush=True)

    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for rnd in range(args.rounds):
        t0 = time.perf_counter()
        for name, f in runs.items():
            results[name].append(f())
        print(f"round {rnd + 1}/{args.rounds} done in {time.perf_counter() - t0:.0f} s", flush=True)

    def med(name: str, metric: str) -> float:
        return statistics.median(s[metric] for s in results[name])

    def spr(name: str, metric: str) -> str:
        return spread([s[metric] for s in results[name]])

    client = [c for c in CLIENT_CASES if c in results]
    if client:
        print()
        print(
            f"Per decision, median of {args.rounds} rounds, {args.calls} decisions per case "
            f"(async: {TASKS} tasks), 1,000 identities, fixed window:"
        )
        print()
        print(
            "| case | decisions/s | client CPU | Redis script (commandstats) "
            "| Redis process CPU | client + Redis CPU | script calls | connections |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in client:
            conns = max(s["conns"] for s in results[c])
            carrying = max(s["carrying"] for s in results[c])
            shown = "-" if conns != conns else f"{conns:.0f} ({carrying:.0f})"  # nan: async
            print(
                f"| {c} | {med(c, 'rate'):,.0f} | {med(c, 'client'):.1f} µs "
                f"| {med(c, 'script'):.1f} µs | {med(c, 'server'):.1f} µs "
                f"| {med(c, 'total'):.1f} µs | {med(c, 'calls'):.2f} | {shown} |"
            )
        print()
        print("Spread over the rounds, (max - min) / median:")
        print()
        print("| case | decisions/s | client CPU | Redis script | Redis process CPU |")
        print("|---|---:|---:|---:|---:|")
        for c in client:
            print(
                f"| {c} | {spr(c, 'rate')} | {spr(c, 'client')} | {spr(c, 'script')} "
                f"| {spr(c, 'server')} |"
            )
    if "scripts" in selected:
        print()
        print(
            f"Redis µs per script call (INFO commandstats), median of {args.rounds} rounds of "
            f"redis-benchmark -c 50 -P 16 -r 1000 -n {args.script_calls}; rate {RATE}:"
        )
        print()
        print(
            "| algorithm | ours: script | CPU | redis.call | reference | reference: script | CPU "
            "| redis.call | ours / reference: script | CPU | spread ours, reference: script, CPU |"
        )
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
        for a, ref, _ in REFERENCES:
            o, t = f"ours {a}", f"ref {ref}"
            print(
                f"| {a} | {med(o, 'usec'):.1f} µs | {med(o, 'cpu'):.1f} µs | {med(o, 'inner'):.1f} "
                f"| {ref} | {med(t, 'usec'):.1f} µs | {med(t, 'cpu'):.1f} µs "
                f"| {med(t, 'inner'):.1f} | **{med(o, 'usec') / med(t, 'usec'):.2f}x** "
                f"| {med(o, 'cpu') / med(t, 'cpu'):.2f}x "
                f"| {spr(o, 'usec')}, {spr(t, 'usec')}; {spr(o, 'cpu')}, {spr(t, 'cpu')} |"
            )


if __name__ == "__main__":
    main()

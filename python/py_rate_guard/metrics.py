"""Prometheus metrics of the limiter, for `prometheus_client`.

The engine counts in Rust with atomics (no Python runs per request); this module only reads
those counts when Prometheus scrapes. A guard built with `metrics_enabled=True` (the default)
registers `RateGuardCollector` once per process in `prometheus_client.REGISTRY`, so
`prometheus_client.make_asgi_app()`, `make_wsgi_app()` and `generate_latest()` show:

| metric | type | labels |
| --- | --- | --- |
| `rate_guard_requests_allowed_total` | counter | `rule`, `route`, `algorithm` |
| `rate_guard_requests_blocked_total` | counter | `rule`, `route`, `algorithm` |
| `rate_guard_shadow_blocked_total` | counter | `rule`, `route`, `algorithm` |
| `rate_guard_redis_latency_seconds` | histogram (50 µs to 1 s) | |
| `rate_guard_storage_errors_total` | counter | `kind` (below) |
| `rate_guard_deny_cache_hits_total` | counter | |
| `rate_guard_fallback_active` | gauge (0 or 1) | |
| `rate_guard_breaker_state` | gauge (0 closed, 1 half open, 2 open) | |

A storage error's `kind` is `timeout`, `unavailable`, `refused` (the server refuses every
request for now) or `rejected` (one request's own data or arguments: never opens the breaker).
Labels come from the configuration (rule names, route templates), never from clients, and the
engine caps them at 10,000 label sets.

**Several processes** (gunicorn or uvicorn workers): when `PROMETHEUS_MULTIPROC_DIR` is set,
as for prometheus_client's multiprocess mode, every process writes its counts to
`rate_guard_<pid>_<token>.json` in that directory every `FLUSH_INTERVAL` seconds and at exit,
and the collector of the scraped process sums the files: counters and the histogram are
summed over every process that ever wrote (a finished worker's counts stay), gauges take the
maximum over the processes still alive. Empty the directory when the service starts, as
prometheus_client asks.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from py_rate_guard import _native

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "FLUSH_INTERVAL",
    "RateGuardCollector",
    "attach",
    "merge",
    "multiprocess_dir",
    "read_process_files",
    "register",
    "snapshot",
    "write_process_file",
]

logger = logging.getLogger("py_rate_guard")

FLUSH_INTERVAL = 5.0
"""Seconds between two writes of a process's counts in multiprocess mode."""

_FILE_PREFIX = "rate_guard_"

Snapshot = dict[str, Any]
"""`_native.metrics_snapshot()`: see `snapshot`."""


def snapshot() -> Snapshot:
    """This process's counts (`_native.metrics_snapshot()`): `requests` as `(rule, route,
    algorithm, allowed, blocked, shadow_blocked)` tuples, `latency_buckets` as cumulative
    `(upper bound, count)` pairs, `latency_count`, `latency_sum`, `storage_errors` by kind,
    `deny_cache_hits`, `fallback_active`, `breaker_state`."""
    return _native.metrics_snapshot()


def multiprocess_dir() -> Path | None:
    """The directory of prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`),
    when set."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path else None


class RateGuardCollector:
    """A prometheus_client collector of the engine's metrics: this process's, or in
    multiprocess mode (`directory`, by default `PROMETHEUS_MULTIPROC_DIR`) every process's,
    merged."""

    def __init__(self, directory: os.PathLike[str] | None = None) -> None:
        self._directory = Path(directory) if directory is not None else None

    def collect(self) -> Iterator[Any]:
        directory = self._directory or multiprocess_dir()
        if directory is None:
            return _families(snapshot())
        # The scraped process's own counts are fresh; the others' are as of their last write.
        write_process_file(directory)
        return _families(merge(read_process_files(directory)))

    def describe(self) -> Iterator[Any]:
        # The names are known: registering reads no counts and no files.
        return _families(None)


def _families(snap: Snapshot | None) -> Iterator[Any]:
    """The metric families of `snap`; without samples when None."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    labels = ["rule", "route", "algorithm"]
    families = [
        CounterMetricFamily(
            "rate_guard_requests_allowed_total",
            "Requests allowed, by deciding rule.",
            labels=labels,
        ),
        CounterMetricFamily(
            "rate_guard_requests_blocked_total",
            "Requests blocked, by deciding rule.",
            labels=labels,
        ),
        CounterMetricFamily(
            "rate_guard_shadow_blocked_total",
            "Requests a shadow rule would have blocked.",
            labels=labels,
        ),
    ]
    latency = HistogramMetricFamily(
        "rate_guard_redis_latency_seconds", "Latency of store (Redis) calls."
    )
    errors = CounterMetricFamily(
        "rate_guard_storage_errors_total", "Store failures, by kind.", labels=["kind"]
    )
    singles = [
        (
            CounterMetricFamily,
            "rate_guard_deny_cache_hits_total",
            "Requests answered by the deny cache.",
            "deny_cache_hits",
        ),
        (
            GaugeMetricFamily,
            "rate_guard_fallback_active",
            "1 while decisions are degraded (Redis unavailable).",
            "fallback_active",
        ),
        (
            GaugeMetricFamily,
            "rate_guard_breaker_state",
            "Circuit breaker: 0 closed, 1 half open, 2 open.",
            "breaker_state",
        ),
    ]
    if snap is None:
        yield from families
        yield latency
        yield errors
        for kind, name, help_text, _ in singles:
            yield kind(name, help_text)
        return
    for rule, route, algorithm, *counts in snap["requests"]:
        for family, count in zip(families, counts, strict=True):
            family.add_metric([rule, route, algorithm], count)
    yield from families
    buckets: list[tuple[str, float]] = [
        (repr(float(bound)), count) for bound, count in snap["latency_buckets"]
    ]
    buckets.append(("+Inf", snap["latency_count"]))
    latency.add_metric([], buckets, snap["latency_sum"])
    yield latency
    for kind, count in snap["storage_errors"].items():
        errors.add_metric([kind], count)
    yield errors
    for kind, name, help_text, field in singles:
        yield kind(name, help_text, value=snap[field])


def merge(snapshots: Iterable[Mapping[str, Any]]) -> Snapshot:
    """Several processes' snapshots as one: counters and histogram summed, gauges maxed
    (`read_process_files` already zeroes the gauges of dead processes)."""
    requests: dict[tuple[str, str, str], list[int]] = {}
    out: Snapshot = {
        "latency_buckets": [],
        "latency_count": 0,
        "latency_sum": 0.0,
        "storage_errors": {},
        "deny_cache_hits": 0,
        "fallback_active": 0,
        "breaker_state": 0,
    }
    bounds: dict[float, int] = {}
    for snap in snapshots:
        for rule, route, algorithm, *counts in snap["requests"]:
            total = requests.setdefault((rule, route, algorithm), [0, 0, 0])
            for i, count in enumerate(counts):
                total[i] += count
        for bound, count in snap["latency_buckets"]:
            bounds[float(bound)] = bounds.get(float(bound), 0) + count
        out["latency_count"] += snap["latency_count"]
        out["latency_sum"] += snap["latency_sum"]
        for kind, count in snap["storage_errors"].items():
            out["storage_errors"][kind] = out["storage_errors"].get(kind, 0) + count
        out["deny_cache_hits"] += snap["deny_cache_hits"]
        out["fallback_active"] = max(out["fallback_active"], snap["fallback_active"])
        out["breaker_state"] = max(out["breaker_state"], snap["breaker_state"])
    if not bounds:  # no file yet: the histogram's buckets still show, at zero
        bounds = {bound: 0 for bound, _ in _native.metrics_snapshot()["latency_buckets"]}
    out["latency_buckets"] = sorted(bounds.items())
    out["requests"] = [(*labels, *counts) for labels, counts in sorted(requests.items())]
    return out


# -- multiprocess files -------------------------------------------------------------------

_lock = threading.Lock()
_token = secrets.token_hex(4)
"""Part of this process's file name, so that a later process with the same pid never
overwrites the counts of a finished one."""
_baseline: Snapshot | None = None
"""The counts inherited from the parent at `fork()`: the parent reports them itself."""


def _since_fork(snap: Snapshot) -> Snapshot:
    base = _baseline
    if base is None:
        return snap
    before = {tuple(r[:3]): r[3:] for r in base["requests"]}
    out = dict(snap)
    out["requests"] = [
        (*r[:3], *(n - b for n, b in zip(r[3:], before.get(tuple(r[:3]), (0, 0, 0)), strict=True)))
        for r in snap["requests"]
    ]
    out["latency_buckets"] = [
        (bound, n - b)
        for (bound, n), (_, b) in zip(snap["latency_buckets"], base["latency_buckets"], strict=True)
    ]
    out["latency_count"] = snap["latency_count"] - base["latency_count"]
    out["latency_sum"] = snap["latency_sum"] - base["latency_sum"]
    out["storage_errors"] = {
        k: n - base["storage_errors"].get(k, 0) for k, n in snap["storage_errors"].items()
    }
    out["deny_cache_hits"] = snap["deny_cache_hits"] - base["deny_cache_hits"]
    return out


def write_process_file(directory: os.PathLike[str] | None = None, *, final: bool = False) -> None:
    """Writes this process's counts to its file in `directory` (by default
    `PROMETHEUS_MULTIPROC_DIR`; nothing happens when there is none). `final` (at exit) writes
    the gauges as 0: a process that is gone decides nothing."""
    path = Path(directory) if directory is not None else multiprocess_dir()
    if path is None:
        return
    snap = _since_fork(snapshot())
    if final:
        snap["fallback_active"] = 0
        snap["breaker_state"] = 0
    body = json.dumps({"pid": os.getpid(), "snapshot": snap})
    target = path / f"{_FILE_PREFIX}{os.getpid()}_{_token}.json"
    with _lock:
        # Write then rename: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".rate_guard_", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_process_files(directory: os.PathLike[str]) -> list[Snapshot]:
    """The snapshots every process wrote in `directory`, the gauges of processes no longer
    alive set to 0. Unreadable files are skipped (logged)."""
    out = []
    for file in sorted(Path(directory).glob(f"{_FILE_PREFIX}*.json")):
        try:
            data = json.loads(file.read_text())
            snap = data["snapshot"]
            if not _alive(int(data["pid"])):
                snap["fallback_active"] = 0
                snap["breaker_state"] = 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("skipping unreadable metrics file %s: %s", file, e)
            continue
        out.append(snap)
    return out


class _Writer:
    """The thread that writes this process's file every `FLUSH_INTERVAL` seconds, restarted
    in the child after `fork()`."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="py-rate-guard-metrics", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stop = self.stop
        while not stop.wait(FLUSH_INTERVAL):
            try:
                write_process_file()
            except Exception:  # a full disk must not kill the thread
                logger.exception("cannot write the metrics file")

    def after_fork(self) -> None:
        global _baseline, _lock, _token
        _lock = threading.Lock()  # another thread may have held it at fork time
        _baseline = snapshot()
        _token = secrets.token_hex(4)
        if self.thread is not None:
            self.thread = None
            self.start()


_writer = _Writer()
_registered: set[int] = set()
_attached = False


def register(registry: CollectorRegistry | None = None) -> bool:
    """Registers a `RateGuardCollector` in `registry` (default: prometheus_client's `REGISTRY`)
    once; False when prometheus_client is not installed."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return False
    registry = registry if registry is not None else REGISTRY
    with _lock:
        if id(registry) in _registered:
            return True
        registry.register(RateGuardCollector())
        _registered.add(id(registry))
    return True


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        write_process_file(final=True)


def attach(config: Any) -> None:
    """What a guard does once built: counting on or off (`metrics_enabled`, process-wide: the
    last guard built decides), and with counting on, the collector registered and, in
    multiprocess mode, this process's file written periodically and at exit."""
    global _attached
    enabled = bool(getattr(config, "metrics_enabled", True))
    _native.set_metrics_enabled(enabled)
    if not enabled:
        return
    register()
    if multiprocess_dir() is None:
        return
    with _lock:
        first = not _attached
        _attached = True
    if first:
        atexit.register(_at_exit)
        os.register_at_fork(after_in_child=_writer.after_fork)
    _writer.start()

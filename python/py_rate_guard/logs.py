"""Structured logs of the limiter, through `logging` (logger `py_rate_guard`).

Every record carries its fields as attributes of the `LogRecord` (the `extra` of the logging
call), so `JsonFormatter` below, python-json-logger's `JsonFormatter` and structlog's
`ProcessorFormatter` with `ExtraAdder` all render them as JSON keys. Each has `event`:

- `rate_limited` (WARNING): a request denied (429), or (`decision` `shadow_blocked`) one a
  shadow rule would have denied: `rule` (its id; a route rule's is scoped, as in its storage
  keys), `rule_name` (as metrics label it), `route` (the request's route template),
  `decision` (`blocked`, `shadow_blocked`), `identity`, `status`, `limit`, `remaining`,
  `retry_after`, `source`, `degraded`, `suppressed`;
- `fail_closed` (WARNING): the same, for a request refused (503) while the store is down;
- `rate_limited_suppressed` (WARNING): `rule`, `rule_name`, `route`, `suppressed` (denials
  not logged);
- `store_failed` (WARNING): `error_kind` (`timeout`, `unavailable`, `refused`, or `rejected`:
  one request's own data or arguments, which never opens the breaker), `error`;
- `breaker` (WARNING; INFO when it closes): `from_state`, `to_state`, `failures`;
- `fallback_started` (WARNING), `fallback_ended` (INFO);
- `events_dropped` (WARNING): `dropped`, engine events lost to a full queue;
- `config` (INFO): `config`, the effective configuration with secrets hidden.

Denials are sampled so that an attack cannot flood the logs: at most `log_denials_per_second`
records per second per rule; the ones left out are counted in the next record's `suppressed`
(or a `rate_limited_suppressed` record). Client identities are logged per `log_identities`:
`hashed` (default; a keyed BLAKE2b digest, the key from `log_identity_salt` or random per
process), `raw`, or `omit`. Both are decided by the engine (`_native.DecisionLog`, which the
tower layer uses too); this module formats the records it hands out.

Store, breaker and fallback events come from the Rust engine through a bounded queue (1,000
events; overflow is counted, never blocks a request) that a daemon thread drains; `drain()`
drains it on demand.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import logging
import os
import threading
import weakref
from typing import Any

from py_rate_guard import _native

__all__ = [
    "DEFAULT_DENIALS_PER_SECOND",
    "DecisionLog",
    "JsonFormatter",
    "attach",
    "drain",
]

logger = logging.getLogger("py_rate_guard")
# A library's etiquette: records go to the handlers the application configures; with none,
# nothing is printed (no last-resort output on stderr).
logger.addHandler(logging.NullHandler())

DEFAULT_DENIALS_PER_SECOND: float = _native.DecisionLog().per_second
"""Denial records per second and rule when the configuration does not say (the engine's)."""

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time` (ISO 8601, UTC), `level`, `logger`, `message`, every
    field passed in `extra`, and `exc_info` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


# -- denials -----------------------------------------------------------------------------


class DecisionLog:
    """Logs the denials of one guard's requests. What is logged is the engine's decision
    (`_native.DecisionLog`, the tower layer's too): denials sampled per rule, identities
    hashed, raw or omitted; this formats its records. Adapters call `outcome` after each
    decision that denied or that a shadow rule would have denied."""

    def __init__(self, config: Any, *, clock: _native.ManualClock | None = None) -> None:
        secret: Any = getattr(config, "log_identity_salt", None)
        salt = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        self.native = _native.DecisionLog(
            float(getattr(config, "log_denials_per_second", DEFAULT_DENIALS_PER_SECOND)),
            str(getattr(config, "log_identities", "hashed")),
            None if salt is None else str(salt),
            clock,
        )
        """The engine's log (`render_identity` shows how identities appear)."""
        if clock is None:  # a manual clock's log is flushed by whoever moves the clock
            with _decision_logs_lock:
                _decision_logs.add(self)

    def outcome(
        self,
        outcome: _native.Outcome,
        plan: _native.Plan | None = None,
        route: _native.RouteLimits | None = None,
    ) -> None:
        """Logs what the engine keeps of `outcome` (its denial, or the shadow rules that would
        have denied) of `plan` (default: the outcome's own); `route` is the limits of the
        request's route. A denial left out costs no Python object."""
        records = self.native.outcome(outcome, plan, route)
        if records is not None:
            _log_records(records)

    def flush(self) -> None:
        """Logs `rate_limited_suppressed` for each rule with denials left out and no record
        for a second (so that the count of the last burst is not lost)."""
        _log_records(self.native.flush())


def _log_records(records: list[dict[str, Any]]) -> None:
    for fields in records:
        if fields["event"] == "rate_limited_suppressed":
            logger.warning(
                "rate_limited_suppressed: %d denials of rule %s not logged",
                fields["suppressed"],
                fields["rule"],
                extra=fields,
            )
        else:
            logger.warning(
                "%s: rule %s on route %s (%s)",
                fields["event"],
                fields["rule_name"],
                fields["route"],
                fields["decision"],
                extra=fields,
            )


_decision_logs: weakref.WeakSet[DecisionLog] = weakref.WeakSet()
_decision_logs_lock = threading.Lock()


# -- engine events -----------------------------------------------------------------------

_drain_lock = threading.Lock()


def _log_event(event: dict[str, Any]) -> None:
    name = event.pop("event")
    event.pop("time", None)  # the record's own time is within the drain interval of it
    level = logging.WARNING
    if name == "store_failed":
        message = f"store call failed ({event.get('error_kind')}): {event.get('error')}"
    elif name == "breaker":
        message = (
            f"circuit breaker {event.get('from_state')} -> {event.get('to_state')}"
            f" after {event.get('failures')} consecutive failures"
        )
        if event.get("to_state") == "closed":
            level = logging.INFO
    elif name == "fallback_started":
        message = "store unavailable: degraded decisions start"
    elif name == "fallback_ended":
        message = "store available again: degraded decisions end"
        level = logging.INFO
    else:
        message = f"engine event: {event.get('error')}"
    logger.log(level, message, extra={"event": name, **event})


def drain() -> int:
    """Logs the engine's queued events now (the drain thread does it on its own); returns how
    many were logged. Also logs the sampled-out denials of the last second."""
    with _drain_lock:
        events, dropped = _native.drain_events()
        for event in events:
            _log_event(event)
        if dropped:
            logger.warning(
                "%d engine events dropped: the queue was full",
                dropped,
                extra={"event": "events_dropped", "dropped": dropped},
            )
    with _decision_logs_lock:
        decision_logs = list(_decision_logs)
    for log in decision_logs:
        log.flush()
    return len(events)


class _Pump:
    """The daemon thread that waits for engine events (in native code, the GIL released) and
    logs them; restarted in the child after `fork()`."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="py-rate-guard-logs", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stop = self.stop
        while not stop.is_set():
            try:
                _native.wait_events(1.0)
                if not stop.is_set():
                    drain()
            except Exception:  # a broken handler must not end the thread
                with contextlib.suppress(Exception):
                    logger.exception("cannot log engine events")
                stop.wait(1.0)

    def after_fork(self) -> None:
        global _decision_logs_lock, _drain_lock
        # Another thread may have held them at fork time.
        _drain_lock = threading.Lock()
        _decision_logs_lock = threading.Lock()
        if self.thread is not None:
            self.thread = None
            self.start()

    def at_exit(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            drain()


_pump = _Pump()
_pump_lock = threading.Lock()
_pump_registered = False


def _config_fields(config: Any, store: str) -> dict[str, Any]:
    """A guard's effective configuration, secrets hidden: the Redis URL without its
    password (`store`, as the engine describes it), JWT keys counted, callables by name."""
    out: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if name == "redis_url":
            value = store if value is not None else None
        elif name == "jwt_keys":
            value = f"{len(value)} key(s)"
        elif name == "global_rules":
            value = [rule.model_dump(exclude={"key_func"}) for rule in value]
        elif hasattr(value, "get_secret_value"):
            value = "**********" if value.get_secret_value() else None
        elif callable(value):
            value = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
        out[name] = value
    return out


def attach(config: Any, store: str) -> None:
    """What a guard does once built (with `config`, on the engine's `store`): its effective
    configuration logged (`config`), and the thread that logs engine events started (once
    per process). It takes the guard's parts, not the guard: `guard` imports this module."""
    global _pump_registered
    logger.info(
        "py-rate-guard configured: store %s",
        store,
        extra={"event": "config", "config": _config_fields(config, store)},
    )
    with _pump_lock:
        if not _pump_registered:
            _pump_registered = True
            atexit.register(_pump.at_exit)
            os.register_at_fork(after_in_child=_pump.after_fork)
    _pump.start()

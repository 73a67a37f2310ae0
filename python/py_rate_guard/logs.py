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
- `rate_limited_suppressed` (WARNING): `rule`, `route`, `suppressed` (denials not logged);
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
process), `raw`, or `omit`.

Store, breaker and fallback events come from the Rust engine through a bounded queue (1,000
events; overflow is counted, never blocks a request) that a daemon thread drains; `drain()`
drains it on demand.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from py_rate_guard import _native

if TYPE_CHECKING:
    from py_rate_guard.guard import RateGuard

__all__ = [
    "DEFAULT_DENIALS_PER_SECOND",
    "DecisionLog",
    "JsonFormatter",
    "attach",
    "drain",
    "identity_for_log",
]

logger = logging.getLogger("py_rate_guard")
# A library's etiquette: records go to the handlers the application configures; with none,
# nothing is printed (no last-resort output on stderr).
logger.addHandler(logging.NullHandler())

DEFAULT_DENIALS_PER_SECOND = 10.0
"""Denial records per second and rule when the configuration does not say."""

_MAX_RULES = 10_000
"""Sampling state is kept for at most this many rules (rules come from configuration)."""

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


# -- identities --------------------------------------------------------------------------

_process_salt = os.urandom(16)


def _salt(config: Any) -> bytes:
    secret = getattr(config, "log_identity_salt", None)
    if secret is None:
        return _process_salt
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    return hashlib.blake2b(str(value).encode(), digest_size=32).digest()


def identity_for_log(identity: str | None, mode: str, salt: bytes) -> str | None:
    """`identity` as logs show it: itself (`raw`), its keyed digest (`hashed`: 16 hex digits,
    the same for the same identity and salt), or None (`omit`)."""
    if identity is None or mode == "omit":
        return None
    if mode == "raw":
        return identity
    return hashlib.blake2b(identity.encode(), key=salt, digest_size=8).hexdigest()


# -- denials -----------------------------------------------------------------------------


class _Budget:
    __slots__ = ("last_log", "suppressed", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.last_log = now
        self.suppressed = 0


class DecisionLog:
    """Logs the denials of one guard's requests, sampled per rule. Adapters call `outcome`
    after each decision; it returns at once for a request allowed without shadow denials."""

    def __init__(self, config: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        rate = getattr(config, "log_denials_per_second", DEFAULT_DENIALS_PER_SECOND)
        self.rate = max(0.0, float(rate))
        self.mode = str(getattr(config, "log_identities", "hashed"))
        if self.mode not in ("hashed", "raw", "omit"):
            raise ValueError(f"log_identities must be hashed, raw or omit, not {self.mode!r}")
        self.salt = _salt(config)
        self.clock = clock
        self._budgets: dict[str, _Budget] = {}
        self._routes: dict[str, str | None] = {}
        self._lock = threading.Lock()
        with _decision_logs_lock:
            _decision_logs.add(self)

    def outcome(self, outcome: Any, plan: Any, route: str | None = None) -> None:
        """Logs `outcome` (a `_native.Outcome`) of `plan` (its `_native.Plan`) when it is a
        denial or a shadow rule would have denied; `route` is the route template."""
        if outcome.allowed:
            shadow = outcome.shadow_denied
            if not shadow or self.rate == 0.0:
                return
            for rule in shadow:
                self._denial(outcome, plan, route, rule, "shadow_blocked")
            return
        if self.rate == 0.0:
            return
        self._denial(outcome, plan, route, outcome.rule, "blocked")

    def _denial(
        self, outcome: Any, plan: Any, route: str | None, rule: str | None, decision: str
    ) -> None:
        suppressed = self._admit(rule or "", route)
        if suppressed is None:
            return
        identity = next((item[1] for item in plan.items if item[0] == rule), None)
        fields: dict[str, Any] = {
            "event": "fail_closed" if outcome.status == 503 else "rate_limited",
            **_rule_fields(rule),
            "route": route,
            "decision": decision,
            "status": outcome.status if decision == "blocked" else 200,
            "source": outcome.source,
            "degraded": outcome.degraded,
            "suppressed": suppressed,
        }
        if self.mode != "omit":
            fields["identity"] = identity_for_log(identity, self.mode, self.salt)
        d = outcome.decision
        if d is not None and decision == "blocked":
            fields.update(limit=d.limit, remaining=d.remaining, retry_after=d.retry_after)
        logger.warning(
            "%s: rule %s on route %s (%s)",
            fields["event"],
            fields["rule_name"],
            route,
            decision,
            extra=fields,
        )

    def _admit(self, rule: str, route: str | None) -> int | None:
        """None when this denial of `rule` is left out; else the denials left out since the
        rule's last record (token bucket: `rate` per second, as many at once)."""
        now = self.clock()
        with self._lock:
            budget = self._budgets.get(rule)
            if budget is None:
                if len(self._budgets) >= _MAX_RULES:
                    self._budgets.clear()
                    self._routes.clear()
                budget = self._budgets[rule] = _Budget(max(1.0, self.rate), now)
            budget.tokens = min(
                max(1.0, self.rate), budget.tokens + (now - budget.updated) * self.rate
            )
            budget.updated = now
            if budget.tokens < 1.0:
                budget.suppressed += 1
                self._routes[rule] = route
                return None
            budget.tokens -= 1.0
            budget.last_log = now
            suppressed, budget.suppressed = budget.suppressed, 0
            return suppressed

    def flush(self) -> None:
        """Logs `rate_limited_suppressed` for each rule with denials left out and no record
        for a second (so that the count of the last burst is not lost)."""
        now = self.clock()
        pending = []
        with self._lock:
            for rule, budget in self._budgets.items():
                if budget.suppressed and now - budget.last_log >= 1.0:
                    pending.append((rule, self._routes.get(rule), budget.suppressed))
                    budget.suppressed = 0
                    budget.last_log = now
        for rule, route, suppressed in pending:
            logger.warning(
                "rate_limited_suppressed: %d denials of rule %s not logged",
                suppressed,
                rule,
                extra={
                    "event": "rate_limited_suppressed",
                    **_rule_fields(rule),
                    "route": route,
                    "suppressed": suppressed,
                },
            )


def _rule_fields(rule_id: str | None) -> dict[str, Any]:
    """`rule`, the rule's id (a route rule's is scoped: `rt.<16 hex>.<name>`, as in its
    storage keys), and `rule_name`, the name the metrics label it with (the id without the
    scope)."""
    if rule_id is None:
        return {"rule": None, "rule_name": None}
    head, _, name = rule_id.partition(".")[2].partition(".")
    if rule_id.startswith("rt.") and len(head) == 16 and name:
        return {"rule": rule_id, "rule_name": name}
    return {"rule": rule_id, "rule_name": rule_id}


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


def _config_fields(guard: RateGuard) -> dict[str, Any]:
    """The guard's effective configuration, secrets hidden: the Redis URL without its
    password, JWT keys counted, callables by name."""
    config = guard.config
    out: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if name == "redis_url":
            value = guard._guard.store if value is not None else None
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


def attach(guard: RateGuard) -> None:
    """What a guard does once built: its effective configuration logged (`config`), and the
    thread that logs engine events started (once per process)."""
    global _pump_registered
    logger.info(
        "py-rate-guard configured: store %s",
        guard._guard.store,
        extra={"event": "config", "config": _config_fields(guard)},
    )
    with _pump_lock:
        if not _pump_registered:
            _pump_registered = True
            atexit.register(_pump.at_exit)
            os.register_at_fork(after_in_child=_pump.after_fork)
    _pump.start()

"""Redis error replies seen from Python: identities never reach the logs, and only server-wide
refusals open the circuit breaker.

Redis writes the arguments of a command it refuses into its error (`unknown command
'EVALSHA', with args beginning with: '<sha>' '1' 'prefix:rule:<identity>'`); the engine keeps
the error code and its words and drops the arguments, so with `log_identities="omit"` no
record of the `py_rate_guard` logger names the client. A refusal that every request would get
(an ACL user without the permission, EVALSHA renamed away) is an outage for the breaker; a
script error about one key is not (see crates/rate-guard-redis/tests/errors.rs, which drives
one through a real script: the request scripts themselves heal every corrupt state).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from conftest import Testkit
from py_rate_guard import RateGuard, logs
from py_rate_guard.models.config import RateGuardConfig

_ROOT = Path(__file__).resolve().parents[2]
IDENTITY = "zebra-qxjv@identity.example"


def _records_after_hits(
    url: str, caplog: pytest.LogCaptureFixture
) -> tuple[RateGuard, list[logging.LogRecord]]:
    guard = RateGuard(
        RateGuardConfig(
            redis_url=url,
            key_prefix=f"t{uuid.uuid4().hex[:12]}",
            log_identities="omit",
            breaker_threshold=3,
            fail_open=False,
        )
    )
    with caplog.at_level(logging.DEBUG, logger="py_rate_guard"):
        logs.drain()
        caplog.clear()
        decisions = [guard.hit(IDENTITY, "5/minute") for _ in range(6)]
        logs.drain()
    assert all(not d.allowed for d in decisions)  # fail closed, as configured
    return guard, list(caplog.records)


def _assert_no_identity(records: list[logging.LogRecord]) -> None:
    assert records, "the refusals were not logged"
    for record in records:
        text = record.getMessage() + " " + repr(vars(record))
        # Letters only: digits would also match timestamps and ids elsewhere in the record.
        for part in ("zebra", "qxjv", "identity.example"):
            assert part not in text, f"the identity leaked: {text}"


def _failures(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """`(error_kind, error)` of each `store_failed` record."""
    return [
        (str(vars(r)["error_kind"]), str(vars(r)["error"]))
        for r in records
        if vars(r).get("event") == "store_failed"
    ]


def test_a_renamed_evalsha_is_logged_without_the_key(
    caplog: pytest.LogCaptureFixture, testkit: Testkit
) -> None:
    # FCALL renamed too, so that the engine falls back from functions to EVALSHA.
    renamed = ("--rename-command", "FCALL", "", "--rename-command", "EVALSHA", "")
    with testkit("server", *renamed) as (url, _):
        guard, records = _records_after_hits(url, caplog)
    _assert_no_identity(records)
    failed = _failures(records)
    assert failed
    assert all(kind == "refused" for kind, _ in failed)
    assert all(error.endswith("ERR unknown command 'EVALSHA'") for _, error in failed), failed
    # Every request would fail the same way: an outage for the breaker.
    assert guard.breaker_state == "open"


def test_an_acl_refusal_is_logged_without_the_key(
    caplog: pytest.LogCaptureFixture, testkit: Testkit
) -> None:
    # A user that may connect and load scripts, but owns no key of the limiter.
    with testkit("server", "--user", "keyless", "on", ">pw", "~other:*", "+@all") as (url, _):
        url = url.replace("redis://", "redis://keyless:pw@")
        guard, records = _records_after_hits(url, caplog)
    _assert_no_identity(records)
    failed = _failures(records)
    assert failed and all("NOPERM" in error for _, error in failed)
    assert guard.breaker_state == "open"

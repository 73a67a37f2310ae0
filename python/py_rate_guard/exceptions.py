"""The exceptions of py-rate-guard.

`RateGuardError` and its subclasses `ConfigError` and `StorageError` come from the native module,
which raises them. `RateLimitExceeded` is raised by the adapters (never by `RateGuard.hit`, which
returns a `Decision`): it is not a `RateGuardError`, so that code which catches infrastructure
errors to fail open never swallows a denial.
"""

from __future__ import annotations

from py_rate_guard._native import ConfigError, Decision, RateGuardError, StorageError

__all__ = ["ConfigError", "RateGuardError", "RateLimitExceeded", "StorageError"]


class RateLimitExceeded(Exception):
    """A request was denied; `decision` says by how much and when to come back."""

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        if message is None:
            retry = decision.retry_after
            message = (
                "rate limit exceeded"
                if retry is None
                else f"rate limit exceeded; retry after {retry:.3f} s"
            )
        super().__init__(message)

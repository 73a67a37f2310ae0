"""The exceptions of py-rate-guard.

`RateGuardError` and its subclasses `ConfigError` and `StorageError` come from the native module,
which raises them. `RateLimitExceeded` is raised by the adapters (never by `RateGuard.hit`, which
returns a `Decision`): it is not a `RateGuardError`, so that code which catches infrastructure
errors to fail open never swallows a denial.
"""

from __future__ import annotations

from py_rate_guard._native import ConfigError, Decision, RateGuardError, StorageError

__all__ = [
    "ConfigError",
    "RateGuardError",
    "RateLimitExceeded",
    "StorageError",
    "denial_exception",
]


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


def denial_exception(exception_class: type[Exception], limited: RateLimitExceeded) -> Exception:
    """The exception an adapter raises for the denial `limited` when the configuration names an
    `exception_class`: a subclass of `RateLimitExceeded` built with the decision and message,
    any other class built with no argument (django-ratelimit's convention), with `limited` as
    its `__cause__` so that the decision stays reachable."""
    if issubclass(exception_class, RateLimitExceeded):
        return exception_class(limited.decision, str(limited))
    error = exception_class()
    error.__cause__ = limited
    return error

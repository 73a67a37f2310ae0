"""Configuration models: `RateGuardConfig` and `RateLimitRule`."""

from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

__all__ = ["RateGuardConfig", "RateLimitRule"]

"""py-rate-guard: rate limiting for Python services on a Rust engine.

```python
from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig

guard = RateGuard(RateGuardConfig())          # memory store; redis_url=... for Redis
decision = guard.hit("203.0.113.7", "5/minute")
if not decision.allowed:
    print("retry after", decision.retry_after, "s")
```
"""

from py_rate_guard._native import Decision
from py_rate_guard._native import __version__ as __version__
from py_rate_guard.exceptions import ConfigError, RateGuardError, RateLimitExceeded, StorageError
from py_rate_guard.guard import RateGuard

__all__ = [
    "ConfigError",
    "Decision",
    "RateGuard",
    "RateGuardError",
    "RateLimitExceeded",
    "StorageError",
    "__version__",
]

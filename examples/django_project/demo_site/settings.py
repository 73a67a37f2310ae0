"""Settings of the Django example: the middleware and `RATE_GUARD` are all py-rate-guard needs.

`RATE_GUARD` is validated into `RateGuardConfig` when the middleware loads: a mistake there
stops the server at start-up with `ImproperlyConfigured` saying which field is wrong. Fields it
does not set are read from the environment (`RATE_GUARD_REDIS_URL=redis://...` for Redis).
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    # After AuthenticationMiddleware when rules are keyed by "user".
    "py_rate_guard.adapters.django.RateLimitMiddleware",
]

RATE_GUARD = {
    "global_rules": [{"limit": "100/minute"}],  # per client address, across all views
    "exempt_paths": ["/health"],
    # Behind a reverse proxy, trust its forwarded headers (and only its):
    # "trusted_proxies": ["10.0.0.0/8"],
}

"""`rediss://` from Python against a real TLS redis-server whose certificates come from a
private CA made by the testkit (`redis-fixture tls`): the `redis_tls_*` settings, the
redis-py style URL parameters, and the errors at construction."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Testkit
from py_rate_guard import RateGuard
from py_rate_guard._native import ConfigError, StorageError
from py_rate_guard.models.config import RateGuardConfig

_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def tls_redis(testkit: Testkit, *args: str) -> Iterator[tuple[str, Path]]:
    """A TLS redis-server (`redis-fixture tls <args>`): its `rediss://` URL and the directory
    of its PEM files (`ca.pem`, `other-ca.pem`, `client.pem`, `client.key`)."""
    with testkit("tls", *args) as (url, output):
        yield url, Path(output.readline().decode().strip())


def guard(url: str, **settings: object) -> RateGuard:
    return RateGuard(
        RateGuardConfig(
            redis_url=url,
            key_prefix=f"t{uuid.uuid4().hex[:12]}",
            redis_connect_timeout=5.0,
            redis_timeout=5.0,
            **settings,  # type: ignore[arg-type]
        )
    )


def decides(g: RateGuard) -> None:
    """Two allowed, the third denied, all decided by Redis (not degraded)."""
    decisions = [g.hit("client", "2/minute") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert not any(d.degraded for d in decisions)


def test_mutual_tls_with_a_private_ca(testkit: Testkit) -> None:
    with tls_redis(testkit, "--require-client-certs") as (url, certs):
        ca, cert, key = certs / "ca.pem", certs / "client.pem", certs / "client.key"
        decides(
            guard(
                url,
                redis_tls_ca_file=str(ca),
                redis_tls_cert_file=str(cert),
                redis_tls_key_file=str(key),
            )
        )
        # The same through redis-py's URL parameters, sync and async.
        g = guard(f"{url}?ssl_ca_certs={ca}&ssl_certfile={cert}&ssl_keyfile={key}")
        decides(g)

        # Without the client certificate, or trusting another CA: refused at construction.
        with pytest.raises(StorageError):
            guard(url, redis_tls_ca_file=str(ca))
        with pytest.raises(StorageError, match="certificate"):
            guard(
                url,
                redis_tls_ca_file=str(certs / "other-ca.pem"),
                redis_tls_cert_file=str(cert),
                redis_tls_key_file=str(key),
            )

        # Settings that cannot work: a ConfigError before connecting.
        with pytest.raises(ConfigError, match="redis_tls_cert_file: needs redis_tls_key_file"):
            guard(url, redis_tls_ca_file=str(ca), redis_tls_cert_file=str(cert))
        with pytest.raises(ConfigError, match="cannot read the CA bundle"):
            guard(url, redis_tls_ca_file=str(certs / "missing.pem"))
        with pytest.raises(ConfigError, match="need a rediss:// URL"):
            guard(url.replace("rediss://", "redis://"), redis_tls_ca_file=str(ca))
        # (the URL is checked by the configuration's model already)
        with pytest.raises(ValueError, match="unknown query parameter `ssl_ciphers`"):
            guard(f"{url}?ssl_ciphers=HIGH")

"""Sync calls from many threads share at most `redis_pool_size` connections per process.

A guard opens `redis_pool_size` connections at construction, for async calls (the shared
multiplexed store on the engine's runtime). Sync calls do their Redis I/O on the calling
thread over a pool of at most `redis_pool_size` more, whatever the number of threads: a thread
takes an idle connection or shares a busy one (calls pipelined) rather than opening its own (it
used to open a whole pool per thread: 4 + 32 x 4 = 132 connections here).
"""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any

from py_rate_guard import RateGuard
from py_rate_guard.models.config import RateGuardConfig

POOL = 4
THREADS = 32
HITS_PER_THREAD = 25
LIMIT = 500


def _client_list(url: str) -> list[str]:
    """`CLIENT LIST` of the server, without the connection that asks."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"CLIENT LIST\r\n")
        data = b""
        while b"\r\n" not in data:
            data += s.recv(65536)
        header, _, rest = data.partition(b"\r\n")
        assert header.startswith(b"$"), header
        size = int(header[1:])
        while len(rest) < size:
            rest += s.recv(65536)
    lines = rest[:size].decode().splitlines()
    return [line for line in lines if "cmd=client|list" not in line]


def test_thirty_two_threads_share_the_pool_and_decide_exactly(spawn_redis: Any) -> None:
    with spawn_redis() as (url, _):
        guard = RateGuard(
            RateGuardConfig(
                redis_url=url,
                key_prefix=f"t{uuid.uuid4().hex[:12]}",
                redis_pool_size=POOL,
                redis_timeout=5.0,
            )
        )
        # The async side's connections, opened at construction.
        at_start = len(_client_list(url))
        assert at_start == POOL

        admitted = [0] * THREADS
        barrier = threading.Barrier(THREADS)

        def work(i: int) -> None:
            barrier.wait()
            for _ in range(HITS_PER_THREAD):
                decision = guard.hit("everyone", f"{LIMIT}/hour")
                assert not decision.degraded
                admitted[i] += decision.allowed

        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert sum(admitted) == LIMIT  # 800 hits, exactly the limit admitted
        # Connections are kept once made, so this is the most the sync calls ever opened.
        sync = len(_client_list(url)) - at_start
        assert 1 <= sync <= POOL, f"{sync} connections for sync calls"
        assert guard.breaker_state == "closed"

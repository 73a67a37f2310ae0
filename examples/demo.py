"""`make demo`: serves the FastAPI quick start (examples/fastapi_quickstart.py) under uvicorn on
a free port, sends it 8 requests from one client and prints which were allowed and which were
limited, with their rate-limit headers; then stops the server.

The in-memory store, or Redis when RATE_GUARD_REDIS_URL is set (the run then uses a key prefix
of its own, so that a second run starts from a full quota too).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REQUESTS = 8
SHOWN = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}")
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"the server did not answer on {url} within {timeout:.0f} s")


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    redis_url = env.get("RATE_GUARD_REDIS_URL")
    if redis_url:
        env.setdefault("RATE_GUARD_KEY_PREFIX", f"demo{uuid.uuid4().hex[:8]}")
    store = "Redis at " + redis_url if redis_url else "the in-memory store"
    print(f"py-rate-guard demo: the FastAPI quick start under uvicorn at {url}, on {store}")
    print("GET /sensitive-data is limited to 5/minute per client (and 100/minute per client")
    print(f"across all routes); one client sends {REQUESTS} requests:\n")
    server = subprocess.Popen(
        [sys.executable, str(HERE / "fastapi_quickstart.py"), "--port", str(port)], env=env
    )
    try:
        wait_until_serving(url, server)
        with httpx.Client(base_url=url) as client:
            for n in range(1, REQUESTS + 1):
                response = client.get("/sensitive-data")
                verdict = "allowed" if response.status_code == 200 else "LIMITED"
                headers = "  ".join(
                    f"{name}: {response.headers[name]}"
                    for name in SHOWN
                    if name in response.headers
                )
                print(f"  #{n}  {response.status_code} {verdict:8} {headers}")
                if response.status_code != 200:
                    print(f"{'':18}{response.text}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("\nThe 6th request and those after it were refused with 429 and Retry-After: waiting")
    print("that many seconds is enough to be admitted again.")


if __name__ == "__main__":
    main()

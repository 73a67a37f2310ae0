"""A Starlette application limited by py-rate-guard: global rules, route limits on a function
endpoint and on the methods of an `HTTPEndpoint`, a streaming response, a WebSocket decided
when it opens, and an exempt health check.

    python examples/starlette_app.py [--port 8000]

The in-memory store, or Redis when RATE_GUARD_REDIS_URL is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from py_rate_guard.adapters.starlette import RateLimitMiddleware, StarletteRateGuard
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

guard = StarletteRateGuard(
    RateGuardConfig(
        global_rules=[
            RateLimitRule(limit="60/minute"),  # per client address, across all routes
            RateLimitRule(limit="10000/hour", key="global", name="service"),  # everyone
        ],
        exempt_paths=["/health"],
        headers="both",  # X-RateLimit-* and the IETF RateLimit-Policy / RateLimit fields
    )
)


@guard.limit("5/minute")
async def search(request: Request) -> Response:
    return JSONResponse({"query": request.query_params.get("q", ""), "results": []})


class Items(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return JSONResponse([{"id": 1}, {"id": 2}])

    @guard.limit("2/minute", key="header:X-Api-Key")  # per API key (else per address)
    async def post(self, request: Request) -> Response:
        return JSONResponse({"created": True}, status_code=201)


async def report(request: Request) -> Response:
    async def lines() -> AsyncIterator[bytes]:
        for n in range(1, 4):
            yield f"line {n}\n".encode()

    return StreamingResponse(lines(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/search", search),
        Route("/items", Items),
        Route("/report", report),
        WebSocketRoute("/echo", echo),
        Route("/health", health),
    ],
    middleware=[Middleware(RateLimitMiddleware, guard=guard)],
)


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the py-rate-guard Starlette example.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")

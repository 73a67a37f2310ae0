from fastapi import FastAPI, Request
from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

config = RateGuardConfig(global_rules=[RateLimitRule(limit="100/minute")])
guard = FastAPIRateGuard(config)
app = FastAPI()
app.add_middleware(RateLimitMiddleware, guard=guard)

@app.get("/sensitive-data")
@guard.limit(limit="5/minute")
async def get_data(request: Request):
    return {"data": "..."}


# The quick start above runs as written. Serve it with
#
#     python examples/fastapi_quickstart.py [--host 127.0.0.1] [--port 8000]
#
# (or `uvicorn fastapi_quickstart:app --app-dir examples`). It uses the in-memory store, or
# Redis when RATE_GUARD_REDIS_URL is set (every RateGuardConfig field reads RATE_GUARD_<FIELD>).
if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the py-rate-guard FastAPI quick start.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")

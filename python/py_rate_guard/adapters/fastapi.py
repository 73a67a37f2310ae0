"""FastAPI: `FastAPIRateGuard`, `RateLimitMiddleware`, `@guard.limit(...)` and a `Depends` form.

```python
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
```

`@guard.limit` goes *below* the route decorator. The endpoint may be async or sync, with or
without a `request` parameter: the wrapper keeps its signature for FastAPI's dependency
injection and asks FastAPI for the request itself when the endpoint does not. The middleware
(pure ASGI, the same as Starlette's) decides the global rules and the route's limits together,
before the request body is read or any dependency runs; without it, the decorator decides the
route's limits alone.

`Depends(guard.dependency(limit="10/minute"))` limits a route (or a whole router, through
`dependencies=[...]`) the same way; denied, it raises `HTTPException(429)` carrying the
rate-limit headers (or the configuration's `exception_class`), which FastAPI's exception
handlers answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from fastapi.dependencies.utils import get_typed_signature
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from py_rate_guard.adapters._http import (
    ATTR,
    EndpointRules,
    LimitOptions,
    denied,
    detail,
    mark_wrapper,
)
from py_rate_guard.adapters._limits import RateSource
from py_rate_guard.adapters.starlette import (
    RateLimitMiddleware,
    StarletteRateGuard,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FastAPIRateGuard", "RateLimitMiddleware"]


# Parameters added to an endpoint's signature, so that FastAPI passes the connection and the
# response whose headers it merges into the answer, when the endpoint does not take them.
_CONNECTION = "rate_guard_connection_"
_RESPONSE = "rate_guard_response_"


class FastAPIRateGuard(StarletteRateGuard):
    """A guard for FastAPI applications. See the module's documentation.

    `limit(...)` is the Starlette guard's decorator (put it below `@app.get(...)`); its wrapper
    keeps the endpoint's signature, so FastAPI's dependency injection sees the original."""

    def dependency(self, limit: RateSource, **options: Unpack[LimitOptions]) -> Callable[..., Any]:
        """A dependency that limits the routes using it: `Depends(guard.dependency("5/minute"))`
        (in the endpoint's parameters, the route's or the router's `dependencies=[...]`). The
        keywords are `limit(...)`'s."""
        rules = EndpointRules(self, (self.rule(limit, **options),))

        async def rate_limit(connection: HTTPConnection, response: Response) -> None:
            outcome = await self.adecide_endpoint(connection, rules, rate_limit)
            if outcome is None:
                return
            if not denied(outcome):
                response.raw_headers.extend(outcome.headers)
                return
            error = self.denial_error(outcome)
            if error is not None:
                raise error
            if isinstance(connection, WebSocket):
                from fastapi import WebSocketException

                raise WebSocketException(code=1008, reason=detail(outcome))
            headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in outcome.headers
            }
            raise HTTPException(status_code=outcome.status, detail=detail(outcome), headers=headers)

        setattr(rate_limit, ATTR, rules)
        return rate_limit

    def _wrap(self, endpoint: Callable[..., Any], rules: EndpointRules) -> Callable[..., Any]:
        signature = _signature(endpoint)
        parameters = list(signature.parameters.values())
        connection_name = _parameter_of(parameters, HTTPConnection)
        response_name = _parameter_of(parameters, Response)
        added = []
        if connection_name is None:
            added.append(_keyword(_CONNECTION, HTTPConnection))
        if response_name is None:
            added.append(_keyword(_RESPONSE, Response))
        if added:
            # Keyword-only parameters go before `**kwargs`, which must stay last.
            at = len(parameters)
            if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
                at -= 1
            parameters[at:at] = added
        wrapped_signature = signature.replace(parameters=parameters)

        def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
            """The connection and the response FastAPI passed (removing those it passed only
            for the wrapper). Called as a plain Starlette endpoint, the connection is an
            argument and there is no response to put headers on."""
            connection = (
                kwargs.pop(_CONNECTION, None)
                if connection_name is None
                else kwargs.get(connection_name)
            )
            response = (
                kwargs.pop(_RESPONSE, None) if response_name is None else kwargs.get(response_name)
            )
            if connection is None:
                connection = next((a for a in args if isinstance(a, HTTPConnection)), None)
            return connection, response

        wrapper = self._deciding_wrapper(endpoint, rules, split)
        wrapper.__signature__ = wrapped_signature  # type: ignore[attr-defined]
        mark_wrapper(wrapper, endpoint, rules)
        return wrapper


def _signature(endpoint: Callable[..., Any]) -> inspect.Signature:
    """The endpoint's signature with its annotations resolved as FastAPI resolves them (string
    annotations too), keeping the return annotation that FastAPI reads the response model
    from."""
    signature = inspect.signature(endpoint)
    try:
        typed = get_typed_signature(endpoint)
    except Exception:  # an annotation FastAPI cannot resolve either: it will say so itself
        return signature
    return typed.replace(return_annotation=signature.return_annotation)


def _parameter_of(parameters: list[inspect.Parameter], kind: type) -> str | None:
    """The name of the parameter FastAPI fills with a `kind` (the request, the response)."""
    for parameter in parameters:
        annotation = parameter.annotation
        if isinstance(annotation, type) and issubclass(annotation, kind):
            return parameter.name
    return None


def _keyword(name: str, annotation: type) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)

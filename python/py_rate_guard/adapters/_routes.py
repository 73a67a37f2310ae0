"""Which route of a Starlette or FastAPI application a request goes to, found before the
router runs, so that the middleware decides the global rules and the route's limits together.

The table lists the application's routes in the router's order (FastAPI's included routers
flattened by FastAPI itself, mounts as subtrees) and asks each route's own `matches()`: the
first full match is the route the router will pick. Only the limits that decorators and
dependencies of *this* guard put on endpoints count.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.routing import Host, Match, Mount

from py_rate_guard.adapters._http import EndpointRules, RequestRules, endpoint_rules
from py_rate_guard.adapters._limits import Limit

if TYPE_CHECKING:
    from starlette.types import Scope

    from py_rate_guard.adapters._http import HttpGuard

__all__ = ["RouteTable", "route_template"]

logger = logging.getLogger("py_rate_guard")

_UNKNOWN = object()
_FOUND_MAX = 1024
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_iter_route_contexts: Callable[[list[Any]], Iterable[Any]] | None
try:  # newer FastAPI keeps included routers unflattened; this iterates them in router order
    from fastapi.routing import (  # type: ignore[attr-defined,unused-ignore]
        iter_route_contexts as _iter_route_contexts,
    )
except ImportError:  # older FastAPI (routers are flattened) or Starlette alone
    _iter_route_contexts = None


class _Node:
    __slots__ = ("by_method", "children", "matches")

    def __init__(
        self,
        matches: Callable[[Scope], tuple[Match, Scope]],
        by_method: dict[str | None, RequestRules],
        children: list[_Node] | None = None,
    ) -> None:
        self.matches = matches
        self.by_method = by_method
        self.children = children

    def rules(self, method: str | None) -> RequestRules | None:
        by_method = self.by_method
        if not by_method:
            return None
        found = by_method.get(method)
        if found is None and method == "HEAD":
            found = by_method.get("GET")
        return found if found is not None else by_method.get(None)


class RouteTable:
    """The routes of one application and the `RequestRules` of those that carry limits."""

    def __init__(self, guard: HttpGuard, app: Any, *, strict: bool = False) -> None:
        """Reads the routes of `app`. A limit that cannot be built (two key functions on one
        route) raises with `strict` (at start-up), else is logged and left to its decorator."""
        self.guard = guard
        self.app = app
        self.routes = getattr(app, "routes", None)
        self.count = len(self.routes) if self.routes is not None else 0
        self.limited = False
        # Which route a (type, method, path) goes to, when no route depends on anything else
        # (a `Host` route reads the Host header): bounded, cleared when full.
        self._found: dict[tuple[Any, ...], RequestRules | None] = {}
        self._cacheable = True
        try:
            self.nodes = self._nodes(self.routes or (), "")
        except Exception:
            if strict:
                raise
            logger.exception(
                "cannot read the application's routes; route limits are decided by"
                " their decorators alone"
            )
            self.nodes, self.limited = [], False

    def current(self, app: Any) -> bool:
        """Whether the table still describes `app`: the same application, with as many routes
        (routes added later to an already included router are not seen)."""
        routes = self.routes
        return app is self.app and (routes is None or len(routes) == self.count)

    def find(self, scope: Scope) -> RequestRules | None:
        """The `RequestRules` of the route that the router will pick for `scope`; None when it
        carries no limits (or no route matches)."""
        key = (scope["type"], scope.get("method"), scope["path"], scope.get("root_path", ""))
        found = self._found.get(key, _UNKNOWN)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        rules = self._match(scope)
        if self._cacheable:
            if len(self._found) >= _FOUND_MAX:
                self._found.clear()
            self._found[key] = rules
        return rules

    def _match(self, scope: Scope) -> RequestRules | None:
        nodes = self.nodes
        while True:
            for node in nodes:
                match, child_scope = node.matches(scope)
                if match is Match.FULL:
                    break
            else:
                return None
            if node.children is None:
                return node.rules(scope.get("method"))
            nodes, scope = node.children, {**scope, **child_scope}

    def _nodes(self, routes: Iterable[Any], prefix: str) -> list[_Node]:
        nodes = []
        for route in _candidates(routes):
            original = getattr(route, "original_route", route)
            if isinstance(original, Mount):
                mount_prefix = prefix + _strip_path_param(str(route.path_format))
                children = self._nodes(original.routes, mount_prefix)
                nodes.append(_Node(route.matches, {}, children))
            elif isinstance(original, Host):
                self._cacheable = False
                nodes.append(_Node(route.matches, {}, self._nodes(original.routes, prefix)))
            else:
                by_method = self._by_method(route, prefix)
                self.limited = self.limited or bool(by_method)
                nodes.append(_Node(route.matches, by_method))
        return nodes

    def _by_method(self, route: Any, prefix: str) -> dict[str | None, RequestRules]:
        endpoint = getattr(route, "endpoint", None)
        common = [*self._own(endpoint), *self._own_dependencies(getattr(route, "dependant", None))]
        per_method: dict[str, list[EndpointRules]] = {}
        if inspect.isclass(endpoint):  # Starlette's HTTPEndpoint: limits on its methods
            for method in _METHODS:
                own = self._own(getattr(endpoint, method.lower(), None))
                if own:
                    per_method[method] = own
        if not common and not per_method:
            return {}
        template = prefix + str(getattr(route, "path_format", "") or getattr(route, "path", ""))
        route_method = _single_method(getattr(route, "methods", None))
        by_method: dict[str | None, RequestRules] = {}
        if common:
            by_method[None] = self.guard.request_rules(template, route_method, _rules(common))
        for method, own in per_method.items():
            by_method[method] = self.guard.request_rules(template, method, _rules([*common, *own]))
        return by_method

    def _own(self, endpoint: Any) -> list[EndpointRules]:
        rules = endpoint_rules(endpoint, self.guard)
        return [] if rules is None else [rules]

    def _own_dependencies(self, dependant: Any) -> list[EndpointRules]:
        found: list[EndpointRules] = []
        stack = list(getattr(dependant, "dependencies", None) or ())
        while stack:
            dependency = stack.pop(0)
            for rules in self._own(getattr(dependency, "call", None)):
                if rules not in found:
                    found.append(rules)
            stack.extend(getattr(dependency, "dependencies", None) or ())
        return found


def route_template(scope: Scope, endpoint: Callable[..., Any]) -> str:
    """The path template of the route that is serving `scope` (`/items/{id}`), for a decorator
    deciding alone; the endpoint's qualified name when the router did not say."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str) and template:
        return template
    return f"{getattr(endpoint, '__module__', '')}.{getattr(endpoint, '__qualname__', '')}"


def _rules(of: Iterable[EndpointRules]) -> list[Limit]:
    """The limits of the endpoints' `of`, each once, in order."""
    return list(dict.fromkeys(rule for rules in of for rule in rules.rules))


def _candidates(routes: Iterable[Any]) -> Iterator[Any]:
    if _iter_route_contexts is not None:
        yield from _iter_route_contexts(list(routes))
    else:
        yield from routes


def _single_method(methods: Iterable[str] | None) -> str | None:
    """The method a route serves, when it serves one (HEAD aside): routes of one path
    template and different methods then count apart."""
    if not methods:
        return None
    served = {method for method in methods if method != "HEAD"}
    return served.pop() if len(served) == 1 else None


def _strip_path_param(path_format: str) -> str:
    return path_format[: -len("/{path}")] if path_format.endswith("/{path}") else path_format

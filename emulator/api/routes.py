"""The app's route table, flattened: every (path, methods) a FastAPI app answers.

FastAPI may keep included routers as nested objects; ``iter_routes`` walks them (and flat tables of
older FastAPI versions alike). Used for the ``Allow`` header of 405 answers, and by the tests that
check every route against the API key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.routing import compile_path


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    route: Any
    include_in_schema: bool


def iter_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[RouteInfo]:
    for route in routes:
        original = getattr(route, "original_router", None)
        context = getattr(route, "include_context", None)
        if original is not None and context is not None:
            yield from iter_routes(original.routes, prefix + str(getattr(context, "prefix", "") or ""))
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        methods = frozenset(getattr(route, "methods", None) or ())
        yield RouteInfo(prefix + path, methods, route, bool(getattr(route, "include_in_schema", True)))


def _table(app: Any) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    cached: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(app.state, "route_table", None)
    if cached is None:
        cached = [(compile_path(info.path)[0], info.methods) for info in iter_routes(app.routes)]
        app.state.route_table = cached
    return cached


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route answers on ``path`` (for a 405's ``Allow`` header)."""
    found: set[str] = set()
    for regex, methods in _table(app):
        if regex.match(path):
            found |= methods
    return sorted(found)

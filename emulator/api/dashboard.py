"""The web dashboard (``/`` and ``/static/*``) and Prometheus metrics (``/metrics``) on the client app.

The page is plain HTML, CSS and JS shipped in ``emulator/static/`` (no build step, nothing fetched
from the internet). It holds no data itself: it reads ``/v1/dashboard`` and the SSE stream of
``emulator.api.events``, which require the API key when one is set, so the page is served openly.

``install(ctx, stop)`` is called once by the ControlPlane before the client app is built: it
creates the event log and the metrics, and adds this module's routers to ``ctx.client_routers``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse

from emulator.api import events, schema
from emulator.api.deps import AppContext, context, require_api_key
from emulator.errors import NotFound
from emulator.service import metrics

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

router = APIRouter(tags=["dashboard"])


def install(ctx: AppContext, stop: asyncio.Event | None = None) -> None:
    """Event log, metrics and routes for one control plane; idempotent."""
    if ctx.events is None:
        ctx.events = events.EventLog(ctx.core)
    metrics.attach(ctx.core)
    if stop is not None:
        ctx.stop = stop
    for extra in (events.router, router):
        if extra not in ctx.client_routers:
            ctx.client_routers.append(extra)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> Response:
    return FileResponse(
        STATIC_DIR / "index.html", media_type=_TYPES[".html"], headers={"Cache-Control": "no-cache"}
    )


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    path = STATIC_DIR / name
    if not _NAME.match(name) or ".." in name or not path.is_file():
        raise NotFound(f"no static file {name[:80]!r}")
    media_type = _TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get(
    "/metrics",
    dependencies=[Depends(require_api_key)],
    summary="Prometheus metrics",
    tags=["meta"],
    response_class=PlainTextResponse,
    responses=schema.errors(401),
)
async def prometheus_metrics(request: Request) -> Response:
    ctx = context(request)
    found = metrics.attach(ctx.core)
    return Response(found.exposition(), media_type=metrics.CONTENT_TYPE)

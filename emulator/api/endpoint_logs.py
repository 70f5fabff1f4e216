"""``GET /v1/endpoints/{id}/logs``: every worker's output for an endpoint, kept after its workers are
gone (RunPod's endpoint logs: serverless/development/logs, filterable by request id).

Query: ``worker`` (a worker id), ``job`` (a job id: its lines only), ``since`` (unix seconds or an ISO
8601 time), ``limit`` (the last N lines, default 1000). Answers ``{"lines": [{"seq", "ts", "workerId",
"requestId", "line"}, ...]}``, oldest first; the ``Last-Event-ID`` header (a ``seq``) skips the lines
up to it. ``GET /v1/endpoints/{id}/logs/stream`` (same filters) is a server-sent event stream instead:
the matching lines so far, then each new one as it is written (event ``log``, ``id`` its ``seq``, so a
reconnecting EventSource resumes after ``Last-Event-ID``), and a comment every 15 s. It lasts until the
client goes, or ``wait`` ms (1000 to 300000) when given, so it is left out of the OpenAPI document (a
fuzzer would wait on it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from emulator.api import schema
from emulator.api.deps import EndpointId, check_id, context, require_api_key, wait_ms
from emulator.errors import InvalidInput

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["logs"])
KEEPALIVE_S = 15.0
MAX_LIMIT = 100_000


def parse_since(raw: str | None) -> float | None:
    """``since`` as unix seconds: a number, or an ISO 8601 time (UTC when it names no zone)."""
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"since must be unix seconds or an ISO 8601 time, got {raw[:40]!r}", field="since"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _sse(item: dict[str, Any]) -> bytes:
    return f"event: log\nid: {item['seq']}\ndata: {json.dumps(item, ensure_ascii=False)}\n\n".encode()


def _selector(
    request: Request, endpoint_id: str, worker: str | None, job: str | None, since: str | None, limit: int
) -> dict[str, Any]:
    """The store's filters (``EndpointLogStore.lines``) from the query, each checked (4xx naming it)."""
    ctx = context(request)
    check_id(endpoint_id, "endpoint")
    ctx.endpoints.require(endpoint_id)
    if worker is not None:
        check_id(worker, "worker")
    if job is not None:
        check_id(job, "job")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    after = request.headers.get("last-event-id", "").strip()
    return {
        "worker": worker,
        "job": job,
        "since": parse_since(since),
        "after_seq": int(after) if after.isdigit() and len(after) < 19 else 0,
        "limit": limit,
    }


@router.get(
    "/endpoints/{endpoint_id}/logs", summary="The endpoint's worker output (kept after workers are gone)"
)
async def endpoint_logs(
    endpoint_id: EndpointId,
    request: Request,
    worker: str | None = schema.query(None, "Only this worker's lines"),
    job: str | None = schema.query(None, "Only the lines written while this job ran"),
    since: str | None = schema.query(None, "Unix seconds or an ISO 8601 time"),
    limit: int = schema.query(1000, "The last N matching lines", minimum=1, maximum=MAX_LIMIT),
) -> dict[str, Any]:
    selector = _selector(request, endpoint_id, worker, job, since, limit)
    return {"lines": context(request).core.logs.lines(endpoint_id, **selector)}


@router.get("/endpoints/{endpoint_id}/logs/stream", include_in_schema=False)
async def endpoint_logs_stream(
    endpoint_id: str,
    request: Request,
    worker: str | None = None,
    job: str | None = None,
    since: str | None = None,
    limit: int = 1000,
    wait: str | None = None,
) -> StreamingResponse:
    """The endpoint's lines as server-sent events, then new ones as they are written."""
    selector = _selector(request, endpoint_id, worker, job, since, limit)
    store = context(request).core.logs
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms(wait) if wait is not None else None

    async def stream() -> AsyncIterator[bytes]:
        current = dict(selector)
        while True:
            mark = store.last_seq(endpoint_id)  # lines appended after this wake the wait below at once
            found = store.lines(endpoint_id, **current)
            for item in found:
                yield _sse(item)
            if found:
                current.update(after_seq=found[-1]["seq"], limit=MAX_LIMIT)
            left = KEEPALIVE_S if deadline is None else min(KEEPALIVE_S, deadline - loop.time())
            if left <= 0 or await request.is_disconnected():
                return
            if not await store.wait(endpoint_id, left, mark) and (deadline is None or loop.time() < deadline):
                yield b": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

"""RunPod's OpenAI-compatible routes: any method on ``/v2/{endpoint_id}/openai/{path}``.

Point any OpenAI client at ``http://127.0.0.1:8000/v2/ENDPOINT_ID/openai/v1`` (RunPod's
``https://api.runpod.ai/v2/ENDPOINT_ID/openai/v1``; docs: serverless/vllm/openai-compatibility). Each
call is a job whose input is ``{"openai_route": "/v1/...", "openai_input": <body>}``; the answer is the
worker's output, or with ``"stream": true`` server-sent events fed from the job's stream chunks. The
use cases are in ``emulator/service/openai.py``; this module reads the request, checks the API key
and maps every error to the body OpenAI clients read, ``{"error": {"message", "type", "code"}}``.

The routes are left out of the OpenAPI document: their bodies and answers are whatever the worker
defines, which no schema here can describe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from emulator.api.bodies import read_json
from emulator.api.deps import EndpointId, check_id, context, require_api_key
from emulator.api.errors import status_for
from emulator.errors import EmulatorError
from emulator.service.openai import OpenAIPassthrough
from emulator.service.openai_frames import OpenAIError, StreamStats, wants_stream

T = TypeVar("T")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# OpenAI clients retry 409, 429 and 5xx answers; a job's own failure is not worth running again
NO_RETRY = {"x-should-retry": "false"}

router = APIRouter(prefix="/v2/{endpoint_id}/openai", tags=["openai"])

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {401: "invalid_api_key", 404: "not_found", 413: "payload_too_large", 429: "queue_full"}


def from_emulator_error(exc: EmulatorError) -> OpenAIError:
    """The project's error (raised before a job exists: key, endpoint, body, queue bound) in OpenAI's
    shape, with the status code every other route gives it (``api/errors.py``)."""
    code = status_for(exc)
    return OpenAIError(code, exc.message, _TYPES.get(code, "server_error"), _CODES.get(code, code))


def error_response(error: OpenAIError) -> JSONResponse:
    headers = dict(NO_RETRY) if error.status_code != 429 else {"Retry-After": "1"}
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


async def _until_disconnected(request: Request) -> None:
    """Return when the client hangs up (the body, if any, has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run ``work`` while watching the connection: ``(True, result)``, or ``(False, None)`` when the
    client went away first (``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watch):
            if not pending.done():
                pending.cancel()
    if task.done() and not task.cancelled():
        return True, task.result()
    return False, None


async def _closing(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``events``, closed when the response ends for any reason (so its clean-up runs at once)."""
    try:
        async for data in events:
            yield data
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def passthrough(endpoint_id: EndpointId, path: str, request: Request) -> Response:
    """Any method on ``/v2/{endpoint_id}/openai/{path}``: the worker's answer, or its stream."""
    ctx = context(request)
    stats = StreamStats(started_s=ctx.core.clock.monotonic())
    service = OpenAIPassthrough(ctx.core, ctx.jobs)
    try:
        await require_api_key(request)
        check_id(endpoint_id, "endpoint")
        endpoint = ctx.core.endpoints.require(endpoint_id)
        has_body = _has_body(request)
        body: Any = None
        if has_body:
            body = await read_json(request, ctx.core.settings.max_runsync_body_bytes, "the OpenAI request")
        job = service.submit(endpoint, path, body, has_body)
    except EmulatorError as exc:
        return error_response(from_emulator_error(exc))
    try:
        if wants_stream(body):
            return await _stream(request, service, endpoint.id, job.id, stats, job.input["openai_route"])
        connected, answer = await _unless_disconnected(request, service.answer(endpoint.id, job.id))
    except EmulatorError as exc:
        return error_response(from_emulator_error(exc))
    if not connected:
        service.cancel(endpoint.id, job.id, "the client went away")
        return Response(status_code=499)
    if isinstance(answer, OpenAIError):
        return error_response(answer)
    return JSONResponse(answer)


async def _stream(
    request: Request,
    service: OpenAIPassthrough,
    endpoint_id: str,
    job_id: str,
    stats: StreamStats,
    route: str,
) -> Response:
    """The status line waits for the first chunk (or the job's end): see ``OpenAIPassthrough.open_stream``."""
    stats.extra.update(route=route, stream=True)
    connected, start = await _unless_disconnected(request, service.open_stream(endpoint_id, job_id, stats))
    if not connected or start is None:
        service.cancel(endpoint_id, job_id, "the client went away")
        service.record(endpoint_id, job_id, stats)
        return Response(status_code=499)
    if isinstance(start, OpenAIError):
        return error_response(start)
    events = service.events(endpoint_id, job_id, start, stats)
    return StreamingResponse(_closing(events), media_type="text/event-stream", headers=SSE_HEADERS)


for _method in METHODS:
    router.add_api_route(
        "/{path:path}",
        passthrough,
        methods=[_method],
        name=f"openai_{_method.lower()}",
        summary="OpenAI-compatible passthrough (a job with openai_route and openai_input)",
        include_in_schema=False,
    )

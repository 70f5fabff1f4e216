"""RunPod's client API: /v2/{endpoint_id}/run, runsync, status, stream, cancel, retry, ..."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from emulator import wire
from emulator.api import schema
from emulator.api.bodies import read_json
from emulator.api.deps import (
    AppContext,
    Ctx,
    EndpointDep,
    JobIdDep,
    check_id,
    require_api_key,
    wait_ms,
)
from emulator.errors import BadRequest, InvalidInput, describe_validation
from emulator.models import Endpoint, JobRequest

F = TypeVar("F", bound=Callable[..., Any])

# ``?wait=`` on runsync, status-sync and stream: RunPod's milliseconds, clamped by ``wait_ms``
WaitQuery = Annotated[
    str | None,
    Query(
        description="Milliseconds to wait (clamped to 1000..300000)",
        json_schema_extra={"pattern": schema.WAIT},
    ),
]

router = APIRouter(
    prefix="/v2/{endpoint_id}",
    dependencies=[Depends(require_api_key)],
    tags=["client"],
    responses=schema.errors(400, 401, 404, 409, 413, 422, 429, 503),
)
_JOB_BODY = schema.body(
    JobRequest, "The job: `input` (any JSON) and optional `webhook`, `policy`, `s3Config`"
)


def _get_and_post(path: str, summary: str, answer: type[Any]) -> Callable[[F], F]:
    """One handler for GET and POST (RunPod accepts both), as two routes with their own operation ids."""

    def register(handler: F) -> F:
        router.get(path, summary=summary, responses=schema.ok(answer))(handler)
        router.post(path, summary=summary, responses=schema.ok(answer))(handler)
        return handler

    return register


def _endpoint(ctx: AppContext, endpoint_id: str) -> Endpoint:
    """The endpoint of a path that does not use ``EndpointDep``: 400 for a malformed id, 404 unknown."""
    check_id(endpoint_id, "endpoint")
    return ctx.endpoints.require(endpoint_id)


async def _job_request(request: Request, limit: int, what: str) -> JobRequest:
    body = await read_json(request, limit, what)
    if not isinstance(body, dict):
        raise BadRequest(f'{what} body must be a JSON object, such as {{"input": {{...}}}}', field="body")
    # no `input` is accepted, as RunPod does: the job reaches the worker without it
    try:
        return JobRequest.model_validate(body)
    except ValidationError as exc:
        message, field = describe_validation(list(exc.errors()))
        raise InvalidInput(message, field=field) from exc


@router.post("/run", summary="Queue a job", openapi_extra=_JOB_BODY, responses=schema.ok(wire.JobAccepted))
async def run(endpoint: EndpointDep, ctx: Ctx, request: Request) -> Mapping[str, Any]:
    job_request = await _job_request(request, ctx.core.settings.max_run_body_bytes, "/run")
    job = ctx.jobs.submit(endpoint, job_request, sync=False)
    return wire.accepted(job)


@router.post(
    "/runsync",
    summary="Run a job and wait for its result",
    openapi_extra=_JOB_BODY,
    responses=schema.ok(wire.StatusBody),
)
async def runsync(
    endpoint: EndpointDep,
    ctx: Ctx,
    request: Request,
    wait: WaitQuery = None,
) -> Mapping[str, Any]:
    wait_s = wait_ms(wait)
    job_request = await _job_request(request, ctx.core.settings.max_runsync_body_bytes, "/runsync")
    job = ctx.jobs.submit(endpoint, job_request, sync=True)
    job = await ctx.jobs.wait_terminal(endpoint.id, job.id, wait_s)
    if job.status.terminal:
        return wire.status_body(job, ctx.core.clock.now())
    return wire.pending_body(job, ctx.core.clock.now())


@_get_and_post("/status/{job_id}", summary="A job's status and result", answer=wire.StatusBody)
async def status(endpoint: EndpointDep, job_id: JobIdDep, ctx: Ctx) -> Mapping[str, Any]:
    return wire.status_body(ctx.jobs.require(endpoint.id, job_id), ctx.core.clock.now())


@_get_and_post("/status-sync/{job_id}", summary="Wait for a job's result", answer=wire.StatusBody)
async def status_sync(
    endpoint: EndpointDep,
    job_id: JobIdDep,
    ctx: Ctx,
    wait: WaitQuery = None,
) -> Mapping[str, Any]:
    job = await ctx.jobs.wait_terminal(endpoint.id, job_id, wait_ms(wait))
    return wire.status_body(job, ctx.core.clock.now())


@_get_and_post("/stream/{job_id}", summary="Stream chunks not yet delivered", answer=wire.StreamBody)
async def stream(
    endpoint: EndpointDep,
    job_id: JobIdDep,
    ctx: Ctx,
    wait: WaitQuery = None,
) -> Mapping[str, Any]:
    wait_s = 0.0 if not wait else wait_ms(wait)  # no wait (or an empty one): answer at once
    job, chunks = await ctx.jobs.stream(endpoint.id, job_id, wait_s)
    return wire.stream_body(job, chunks)


@router.post("/cancel/{job_id}", summary="Cancel a job", responses=schema.ok(wire.JobAccepted))
async def cancel(endpoint: EndpointDep, job_id: JobIdDep, ctx: Ctx) -> Mapping[str, Any]:
    return wire.accepted(ctx.jobs.cancel(endpoint.id, job_id))


@router.post(
    "/retry/{job_id}", summary="Retry a FAILED or TIMED_OUT job", responses=schema.ok(wire.JobAccepted)
)
async def retry(endpoint: EndpointDep, job_id: JobIdDep, ctx: Ctx) -> Mapping[str, Any]:
    return wire.accepted(ctx.jobs.retry(endpoint.id, job_id))


@router.post("/purge-queue", summary="Remove every queued job")
async def purge_queue(endpoint: EndpointDep, ctx: Ctx) -> dict[str, Any]:
    return {"removed": ctx.jobs.purge(endpoint.id), "status": "completed"}


@router.get("/health", summary="Job and worker counts")
async def health(endpoint: EndpointDep, ctx: Ctx) -> Mapping[str, Any]:
    return ctx.jobs.health(endpoint)


@router.get("/requests", summary="Recent requests (rate-limit table)")
async def requests_table(endpoint: EndpointDep, ctx: Ctx) -> JSONResponse:
    recent = ctx.core.jobs.recent(endpoint.id, 50)
    now = ctx.core.clock.now()
    return JSONResponse(
        {"requests": [{"id": j.id, "status": j.status.value, "delayTime": j.delay_ms(now)} for j in recent]}
    )

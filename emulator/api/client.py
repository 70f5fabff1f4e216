"""RunPod's client API: /v2/{endpoint_id}/run, runsync, status, stream, cancel, retry, ..."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from emulator.api.deps import AppContext, check_id, context, read_json, require_api_key, wait_ms
from emulator.api.errors import BadRequest, describe_validation
from emulator.errors import InvalidInput
from emulator.models import Endpoint, JobRequest

router = APIRouter(prefix="/v2/{endpoint_id}", dependencies=[Depends(require_api_key)], tags=["client"])


def _endpoint(ctx: AppContext, endpoint_id: str) -> Endpoint:
    check_id(endpoint_id, "endpoint")
    return ctx.core.endpoints.require(endpoint_id)


async def _job_request(request: Request, limit: int, what: str) -> JobRequest:
    body = await read_json(request, limit, what)
    if not isinstance(body, dict):
        raise BadRequest(f"{what} body must be a JSON object with an 'input' field", field="body")
    if "input" not in body:
        raise InvalidInput("the field 'input' is required", field="input")
    try:
        return JobRequest.model_validate(body)
    except ValidationError as exc:
        message, field = describe_validation(list(exc.errors()))
        raise InvalidInput(message, field=field) from exc


@router.post("/run", summary="Queue a job")
async def run(endpoint_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    endpoint = _endpoint(ctx, endpoint_id)
    job_request = await _job_request(request, ctx.core.settings.max_run_body_bytes, "/run")
    job = ctx.jobs.submit(endpoint, job_request, sync=False)
    return {"id": job.id, "status": job.status.value}


@router.post("/runsync", summary="Run a job and wait for its result")
async def runsync(endpoint_id: str, request: Request, wait: str | None = None) -> dict[str, Any]:
    ctx = context(request)
    endpoint = _endpoint(ctx, endpoint_id)
    wait_s = wait_ms(wait)
    job_request = await _job_request(request, ctx.core.settings.max_runsync_body_bytes, "/runsync")
    job = ctx.jobs.submit(endpoint, job_request, sync=True)
    job = await ctx.jobs.wait_terminal(endpoint.id, job.id, wait_s)
    if job.status.terminal:
        return ctx.jobs.status_body(job)
    body: dict[str, Any] = {"id": job.id, "status": job.status.value}
    if job.started_at is not None:
        body["delayTime"] = job.delay_ms(ctx.core.clock.now())
    return body


@router.api_route("/status/{job_id}", methods=["GET", "POST"], summary="A job's status and result")
async def status(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    _endpoint(ctx, endpoint_id)
    check_id(job_id, "job")
    return ctx.jobs.status_body(ctx.jobs.require(endpoint_id, job_id))


@router.api_route("/status-sync/{job_id}", methods=["GET", "POST"], summary="Wait for a job's result")
async def status_sync(endpoint_id: str, job_id: str, request: Request, wait: str | None = None) -> dict[str, Any]:
    ctx = context(request)
    _endpoint(ctx, endpoint_id)
    check_id(job_id, "job")
    job = await ctx.jobs.wait_terminal(endpoint_id, job_id, wait_ms(wait))
    return ctx.jobs.status_body(job)


@router.api_route("/stream/{job_id}", methods=["GET", "POST"], summary="Stream chunks not yet delivered")
async def stream(endpoint_id: str, job_id: str, request: Request, wait: str | None = None) -> dict[str, Any]:
    ctx = context(request)
    _endpoint(ctx, endpoint_id)
    check_id(job_id, "job")
    wait_s = 0.0 if wait is None else wait_ms(wait)
    return await ctx.jobs.stream(endpoint_id, job_id, wait_s)


@router.post("/cancel/{job_id}", summary="Cancel a job")
async def cancel(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    _endpoint(ctx, endpoint_id)
    check_id(job_id, "job")
    job = ctx.jobs.cancel(endpoint_id, job_id)
    return {"id": job.id, "status": job.status.value}


@router.post("/retry/{job_id}", summary="Retry a FAILED or TIMED_OUT job")
async def retry(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    _endpoint(ctx, endpoint_id)
    check_id(job_id, "job")
    job = ctx.jobs.retry(endpoint_id, job_id)
    return {"id": job.id, "status": job.status.value}


@router.post("/purge-queue", summary="Remove every queued job")
async def purge_queue(endpoint_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    endpoint = _endpoint(ctx, endpoint_id)
    return {"removed": ctx.jobs.purge(endpoint.id), "status": "completed"}


@router.get("/health", summary="Job and worker counts")
async def health(endpoint_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    return ctx.jobs.health(_endpoint(ctx, endpoint_id))


@router.get("/requests", summary="Recent requests (rate-limit table)")
async def requests_table(endpoint_id: str, request: Request) -> JSONResponse:
    ctx = context(request)
    endpoint = _endpoint(ctx, endpoint_id)
    recent = ctx.core.jobs.recent(endpoint.id, 50)
    now = ctx.core.clock.now()
    return JSONResponse({"requests": [{"id": j.id, "status": j.status.value, "delayTime": j.delay_ms(now)} for j in recent]})

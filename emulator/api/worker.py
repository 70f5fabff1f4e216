"""RunPod's worker protocol: job-take, job-take-batch, job-done, job-stream, job-stop, ping.

Served on the worker listener only. Every call carries the worker's own token in
``Authorization`` (raw or Bearer); the user's API key is never accepted here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from emulator.api.bodies import dumps_compact, parse_body
from emulator.api.deps import bearer, check_id, context
from emulator.errors import BadRequest, Forbidden, Unauthorized
from emulator.workers.records import WorkerRecord

router = APIRouter(prefix="/v2/{endpoint_id}", tags=["worker"])
MAX_BATCH = 64
MAX_WORKER_BODY = 64 * 1024 * 1024


def _clean_segment(value: str) -> str:
    # a template without '?' makes RunPod's SDK produce ".../w-1&job_in_progress=0"
    return value.split("&", 1)[0]


def _worker(request: Request, endpoint_id: str, worker_id: str) -> WorkerRecord:
    ctx = context(request)
    token = bearer(request)
    worker = ctx.core.workers.by_token(token) if token else None
    if worker is None:
        raise Unauthorized("missing or unknown worker token (RUNPOD_AI_API_KEY)")
    worker_id = _clean_segment(worker_id)
    if worker_id not in (worker.id, "$RUNPOD_POD_ID", "$ID") or worker.endpoint_id != endpoint_id:
        raise Forbidden(f"this token belongs to worker {worker.id!r} of endpoint {worker.endpoint_id!r}")
    return worker


def _int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}", field=name) from exc


async def _body(request: Request) -> tuple[object, int]:
    """The parsed body and its size in bytes (held to the job's payload limit by the protocol)."""
    raw = await request.body()
    if len(raw) > MAX_WORKER_BODY:
        raise BadRequest(f"the body is over {MAX_WORKER_BODY} bytes", field="body")
    return parse_body(raw), len(raw)


@router.get("/job-take/{worker_id}")
async def job_take(endpoint_id: str, worker_id: str, request: Request) -> Response:
    ctx = context(request)
    worker = _worker(request, endpoint_id, worker_id)
    jobs = await ctx.protocol.take(worker, 1, ctx.core.settings.job_take_hold_s, gone=request.is_disconnected)
    if not jobs:
        return Response(status_code=204)
    return Response(dumps_compact(jobs[0]), media_type="application/json")


@router.get("/job-take-batch/{worker_id}")
async def job_take_batch(endpoint_id: str, worker_id: str, request: Request) -> Response:
    ctx = context(request)
    worker = _worker(request, endpoint_id, worker_id)
    size = max(1, min(MAX_BATCH, _int(request.query_params.get("batch_size"), "batch_size", 1)))
    jobs = await ctx.protocol.take(
        worker, size, ctx.core.settings.job_take_hold_s, gone=request.is_disconnected
    )
    if not jobs:
        return Response(status_code=204)
    return Response(dumps_compact(jobs), media_type="application/json")


@router.post("/job-done/{worker_id}/{job_id}")
async def job_done(endpoint_id: str, worker_id: str, job_id: str, request: Request) -> JSONResponse:
    ctx = context(request)
    worker = _worker(request, endpoint_id, worker_id)
    job_id = check_id(_clean_segment(job_id), "job")
    body, size = await _body(request)
    return JSONResponse(ctx.protocol.done(worker, job_id, body, size))


@router.post("/job-done/{worker_id}")
async def job_done_by_header(endpoint_id: str, worker_id: str, request: Request) -> JSONResponse:
    """RunPod's own test server routes results without the job id; it is then in X-Request-ID."""
    job_id = request.headers.get("x-request-id")
    if not job_id:
        raise BadRequest("job-done needs the job id in the path or in X-Request-ID", field="job_id")
    return await job_done(endpoint_id, worker_id, job_id, request)


@router.post("/job-stream/{worker_id}/{job_id}")
async def job_stream(endpoint_id: str, worker_id: str, job_id: str, request: Request) -> JSONResponse:
    ctx = context(request)
    worker = _worker(request, endpoint_id, worker_id)
    job_id = check_id(_clean_segment(job_id), "job")
    body, _ = await _body(request)
    return JSONResponse(ctx.protocol.stream_chunk(worker, job_id, body))


@router.get("/job-stop/{worker_id}")
async def job_stop(endpoint_id: str, worker_id: str, request: Request) -> Response:
    ctx = context(request)
    worker = _worker(request, endpoint_id, worker_id)
    ids = await ctx.protocol.stops(worker, ctx.core.settings.job_stop_hold_s)
    if not ids:
        return Response(status_code=204)
    return Response(dumps_compact({"jobsToStop": ids}), media_type="application/json")


@router.get("/ping/{worker_id}")
async def ping(endpoint_id: str, worker_id: str, request: Request) -> JSONResponse:
    ctx = context(request)
    worker = _worker(request, endpoint_id, worker_id)
    q = request.query_params
    job_ids = [j for j in (q.get("job_id") or "").split(",") if j]
    ctx.protocol.ping(worker, job_ids, q.get("status"), q.get("reason"))
    return JSONResponse({"status": "ok"})

"""The management API: /v1/endpoints (RunPod REST field names), workers, logs and job details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from emulator import wire
from emulator.api import schema
from emulator.api.bodies import read_json, validated
from emulator.api.deps import (
    AppContext,
    Ctx,
    EndpointDep,
    JobIdDep,
    WorkerId,
    check_id,
    context,
    require_api_key,
)
from emulator.api.rest_shape import endpoint_answer, flag, reply_with_image
from emulator.api.secrets import unmask_env
from emulator.errors import InvalidInput, NotFound
from emulator.models import Endpoint, EndpointPatch, EndpointSpec, WorkerState
from emulator.workers.env import worker_env

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_api_key)],
    tags=["management"],
    responses=schema.errors(400, 401, 404, 409, 413, 422, 502, 503),
)
MAX_MANAGEMENT_BODY = 1024 * 1024


async def create_endpoint(ctx: AppContext, spec: EndpointSpec) -> Endpoint:
    """``POST /v1/endpoints`` (and GraphQL ``saveEndpoint``); a ``templateId`` fills in the image, env, ..."""
    return await ctx.endpoints.create(spec)


async def update_endpoint(ctx: AppContext, endpoint_id: str, patch: EndpointPatch) -> Endpoint:
    """``PATCH /v1/endpoints/{id}`` and its aliases: ``********`` sent back keeps the stored env value."""
    if patch.env is not None:
        current = ctx.endpoints.require(endpoint_id)
        patch = patch.model_copy(update={"env": unmask_env(current.env, patch.env)})
    return await ctx.endpoints.update(endpoint_id, patch)


def workers_body(ctx: AppContext, endpoint: Endpoint) -> dict[str, Any]:
    now = ctx.core.clock.now()
    workers = ctx.endpoints.workers_of(endpoint.id)
    summary = {s.value.lower(): 0 for s in WorkerState}
    summary["standby"] = 0
    for w in workers:
        if w.standby:  # pre-created extra workers are not serving workers
            summary["standby"] += 1
        else:
            summary[w.state.value.lower()] += 1
    summary["total"] = len(workers) - summary["standby"]
    return {
        "workers": [wire.worker_public(w, endpoint.version, now) for w in workers],
        "summary": summary,
        "endpointVersion": endpoint.version,
        "runtime": ctx.supervisor.runtime_status() if ctx.supervisor is not None else {"status": "none"},
    }


@router.post(
    "/endpoints",
    status_code=201,
    summary="Create an endpoint",
    responses=schema.ok(schema.EndpointAnswer, 201),
    openapi_extra=schema.body(EndpointSpec, "The endpoint (RunPod's REST field names)"),
)
async def post_endpoint(request: Request) -> dict[str, Any]:
    ctx = context(request)
    spec = validated(EndpointSpec, await read_json(request, MAX_MANAGEMENT_BODY, "POST /v1/endpoints"))
    return await reply_with_image(ctx, await create_endpoint(ctx, spec))


@router.get("/endpoints", summary="List endpoints", responses=schema.ok(schema.EndpointAnswer, array=True))
async def list_endpoints(request: Request) -> list[dict[str, Any]]:
    ctx, with_template = context(request), flag(request.query_params.get("includeTemplate"))
    return [endpoint_answer(ctx.core, e, with_template) for e in ctx.endpoints.all()]


@router.get("/endpoints/{endpoint_id}", summary="One endpoint", responses=schema.ok(schema.EndpointAnswer))
async def get_endpoint(endpoint: EndpointDep, ctx: Ctx, request: Request) -> dict[str, Any]:
    return endpoint_answer(ctx.core, endpoint, flag(request.query_params.get("includeTemplate")))


@router.patch(
    "/endpoints/{endpoint_id}",
    summary="Change an endpoint (a change to what workers run starts a rolling update)",
    responses=schema.ok(schema.EndpointAnswer),
    openapi_extra=schema.body(
        EndpointPatch, "Any field but `id`; `env` values sent back as ******** keep theirs"
    ),
)
async def patch_endpoint(current: EndpointDep, ctx: Ctx, request: Request) -> dict[str, Any]:
    body = await read_json(request, MAX_MANAGEMENT_BODY, "PATCH /v1/endpoints")
    if isinstance(body, dict) and "id" in body:
        raise InvalidInput("id cannot be changed", field="id")
    patch: EndpointPatch = validated(EndpointPatch, body)
    return await reply_with_image(ctx, await update_endpoint(ctx, current.id, patch))


@router.delete(
    "/endpoints/{endpoint_id}",
    status_code=204,
    summary="Delete an endpoint (drains, then removes its workers)",
)
async def delete_endpoint(endpoint: EndpointDep, ctx: Ctx) -> Response:
    await ctx.endpoints.delete(endpoint.id)
    return Response(status_code=204)


@router.get("/endpoints/{endpoint_id}/workers", summary="The endpoint's workers and their states")
async def list_workers(endpoint: EndpointDep, ctx: Ctx) -> dict[str, Any]:
    return workers_body(ctx, endpoint)


@router.post(
    "/endpoints/{endpoint_id}/workers",
    status_code=201,
    summary="Register a worker you run yourself",
    responses=schema.ok(schema.RegisteredWorker, 201),
)
async def register_worker(endpoint: EndpointDep, ctx: Ctx) -> dict[str, Any]:
    """A worker outside Docker (a handler run on the host): its id, token and RunPod env variables."""
    worker = ctx.core.workers.create(endpoint.id, endpoint.version, kind="external", reason="registered")
    worker.started_at = ctx.core.clock.now()
    ctx.core.workers.save(worker)
    env = worker_env(ctx.core.settings, ctx.worker_url, endpoint, worker)
    return {"id": worker.id, "token": worker.token, "env": env}


@router.delete("/workers/{worker_id}", status_code=204, summary="Forget an external worker")
async def delete_worker(worker_id: WorkerId, request: Request) -> Response:
    ctx = context(request)
    check_id(worker_id, "worker")
    worker = ctx.core.workers.get(worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id!r} does not exist")
    ctx.jobs.worker_lost(worker_id, "worker deregistered")
    ctx.core.workers.remove(worker_id, "deregistered")
    return Response(status_code=204)


@router.get(
    "/workers/{worker_id}/logs",
    response_class=PlainTextResponse,
    summary="A worker container's recent output",
)
async def worker_logs(
    worker_id: WorkerId, request: Request, tail: int = schema.query(200, "Lines", minimum=1, maximum=100_000)
) -> str:
    ctx = context(request)
    check_id(worker_id, "worker")
    if ctx.core.workers.get(worker_id) is None:
        raise NotFound(f"worker {worker_id!r} does not exist")
    if not 1 <= tail <= 100_000:
        raise InvalidInput("tail must be between 1 and 100000", field="tail")
    if ctx.supervisor is None:
        return ""
    return await ctx.supervisor.worker_logs(worker_id, tail)


@router.get("/endpoints/{endpoint_id}/jobs", summary="Recent jobs with delay, execution and cold-start times")
async def recent_jobs(
    endpoint: EndpointDep, ctx: Ctx, limit: int = schema.query(50, "Jobs", minimum=1, maximum=1000)
) -> dict[str, Any]:
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    now = ctx.core.clock.now()
    return {"jobs": [wire.recent_job(j, now) for j in ctx.core.jobs.recent(endpoint.id, limit)]}


@router.get("/endpoints/{endpoint_id}/jobs/{job_id}", summary="One job in full, with webhook attempts")
async def job_detail(endpoint: EndpointDep, job_id: JobIdDep, ctx: Ctx) -> Mapping[str, Any]:
    job = ctx.jobs.require(endpoint.id, job_id)
    return wire.job_detail(job, ctx.core.clock.now(), ctx.core.webhooks.store.attempts(job_id))

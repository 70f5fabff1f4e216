"""Fault injection for users' own tests: ``POST /v1/workers/{worker_id}/faults``.

Body: ``{"kind": "kill" | "hang_startup" | "oom" | "throttle", "durationS": 30}`` (``durationS``: how
long ``throttle`` lasts). What each kind does: ``emulator.supervisor.faults``. Answers 202 with what
was done; 422 naming the field for a bad body; 404 for an unknown worker; 409 when the worker cannot
take that fault (no running container, an external worker) or the emulator runs without containers.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.api.bodies import read_json
from emulator.api.deps import check_id, context, require_api_key
from emulator.errors import BadRequest, Conflict, InvalidInput, NotFound, describe_validation

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["faults"])
MAX_FAULT_BODY = 64 * 1024


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["kill", "hang_startup", "oom", "throttle"]
    durationS: float = Field(30.0, gt=0, le=86400)


@router.post("/workers/{worker_id}/faults", status_code=202, summary="Inject a fault into a worker")
async def inject_fault(worker_id: str, request: Request) -> dict[str, Any]:
    """Kill a worker mid-job, make its next start-up hang, OOM-kill it, or throttle it for a while."""
    ctx = context(request)
    check_id(worker_id, "worker")
    body = await read_json(request, MAX_FAULT_BODY, "POST /v1/workers/{id}/faults")
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    try:
        fault = FaultRequest.model_validate(body)
    except ValidationError as exc:
        message, field = describe_validation(list(exc.errors()))
        raise InvalidInput(message, field=field) from exc
    if ctx.core.workers.get(worker_id) is None:
        raise NotFound(f"worker {worker_id!r} does not exist", worker=worker_id)
    inject = getattr(ctx.supervisor, "inject_fault", None)
    if inject is None:
        raise Conflict("faults need the container runtime; this emulator runs with --runtime none")
    answer: dict[str, Any] = await inject(worker_id, fault.kind, fault.durationS)
    return answer

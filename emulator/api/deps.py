"""Request helpers shared by the routers: the app context, auth, bounded JSON bodies, ids."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Request

from emulator.errors import BadRequest, Unauthorized
from emulator.models import ID_PATTERN, Endpoint, is_valid_id
from emulator.service.core import Core
from emulator.service.endpoints import EndpointService, SupervisorHooks
from emulator.service.jobs import JobService
from emulator.service.worker_protocol import WorkerProtocol

if TYPE_CHECKING:
    from emulator.api.events import EventLog

JOB_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
# Path parameters: the pattern is documented (OpenAPI) and checked by ``check_id`` (400 with a message).
EndpointId = Annotated[str, Path(description="Endpoint id", json_schema_extra={"pattern": ID_PATTERN})]
WorkerId = Annotated[str, Path(description="Worker id", json_schema_extra={"pattern": ID_PATTERN})]
JobId = Annotated[str, Path(description="Job id", json_schema_extra={"pattern": JOB_ID_PATTERN})]


class LoadBalancerView(Protocol):
    """What the dashboard reads of the load balancer (``emulator.loadbalancer.service.LoadBalancer``)."""

    def view(self, endpoint_id: str, limit: int) -> tuple[int, int, list[dict[str, Any]]]:
        """(requests waiting for a worker, requests in flight, the last ``limit`` request rows, newest first)."""
        ...


@dataclass
class AppContext:
    """What the routes of one control plane use, built by ``ControlPlane.start`` (the composition root).

    ``supervisor`` is ``None`` without a container runtime; ``worker_url`` is the worker protocol's URL
    as workers reach it; ``events`` is the dashboard's event log; ``stop`` is set at shutdown (long
    streams end on it); ``client_routers`` are routers added to the client app beside the core ones.
    """

    core: Core
    jobs: JobService
    protocol: WorkerProtocol
    endpoints: EndpointService
    supervisor: SupervisorHooks | None = None
    worker_url: str = ""
    events: EventLog | None = None
    stop: asyncio.Event | None = None
    client_routers: list[APIRouter] = field(default_factory=list)
    load_balancer: LoadBalancerView | None = None  # load-balancing endpoints' requests, for the dashboard


def context(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


# --- typed dependencies for the routes' common preambles -------------------------------------------
# async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool (see require_api_key)
async def app_context(request: Request) -> AppContext:
    """The control plane's ``AppContext`` (``Ctx`` in a route's signature)."""
    return context(request)


async def existing_endpoint(endpoint_id: EndpointId, request: Request) -> Endpoint:
    """The path's endpoint: 400 for a malformed id, 404 for an unknown one (``EndpointDep``)."""
    check_id(endpoint_id, "endpoint")
    return context(request).endpoints.require(endpoint_id)


async def valid_job_id(job_id: JobId) -> str:
    """The path's job id, checked: 400 for a malformed one (``JobIdDep``)."""
    return check_id(job_id, "job")


Ctx = Annotated[AppContext, Depends(app_context)]
EndpointDep = Annotated[Endpoint, Depends(existing_endpoint)]
JobIdDep = Annotated[str, Depends(valid_job_id)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    header = header.strip()
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return header


async def require_api_key(request: Request) -> None:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on
    # every client request (about 9% of the control plane's CPU per /runsync job; see bench/)
    key = context(request).core.settings.api_key
    if not key:
        return
    given = bearer(request)
    if given is None or not hmac.compare_digest(given.encode(), key.encode()):
        raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>'")


def check_id(value: str, what: str) -> str:
    if not is_valid_id(value) and not (what == "job" and _job_id_ok(value)):
        raise BadRequest(f"{what} id {value[:80]!r} is not valid", field=what)
    return value


def _job_id_ok(value: str) -> bool:
    return 0 < len(value) <= 128 and all((c.isascii() and c.isalnum()) or c in "-_." for c in value)


def wait_ms(raw: str | None, default_ms: int = 90_000) -> float:
    """``?wait=`` in ms, clamped to RunPod's 1000..300000; returns seconds."""
    if raw is None or raw == "":
        return default_ms / 1000.0
    try:
        value = int(float(raw))
    except (ValueError, OverflowError) as exc:  # "soon", "nan", "1e309"
        raise BadRequest(f"wait must be a number of milliseconds, got {raw[:40]!r}", field="wait") from exc
    return min(300_000, max(1_000, value)) / 1000.0

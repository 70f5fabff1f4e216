"""Request helpers shared by the routers: the app context, auth, bounded JSON bodies, ids."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Path, Request

from emulator.api.errors import BadRequest
from emulator.errors import PayloadTooLarge, Unauthorized
from emulator.models import ID_PATTERN, Endpoint, is_valid_id
from emulator.service.core import Core
from emulator.service.jobs import JobService
from emulator.service.worker_protocol import LoneSurrogate, WorkerProtocol, strict_json_loads

JOB_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
# Path parameters: the pattern is documented (OpenAPI) and checked by ``check_id`` (400 with a message).
EndpointId = Annotated[str, Path(description="Endpoint id", json_schema_extra={"pattern": ID_PATTERN})]
WorkerId = Annotated[str, Path(description="Worker id", json_schema_extra={"pattern": ID_PATTERN})]
JobId = Annotated[str, Path(description="Job id", json_schema_extra={"pattern": JOB_ID_PATTERN})]


class SupervisorHooks(Protocol):
    """What the API asks of the supervisor (absent with --runtime none)."""

    async def validate_endpoint(self, endpoint: Endpoint) -> None: ...

    def endpoint_changed(self, endpoint: Endpoint) -> None: ...

    async def endpoint_deleted(self, endpoint: Endpoint) -> None: ...

    async def worker_logs(self, worker_id: str, tail: int) -> str: ...

    def runtime_status(self) -> dict[str, object]: ...


@dataclass
class AppContext:
    core: Core
    jobs: JobService
    ops: WorkerProtocol
    supervisor: SupervisorHooks | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def context(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


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


async def read_json(request: Request, limit: int, what: str) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as exc:
            raise BadRequest("Content-Length is not a number", field="Content-Length") from exc
        if size > limit:
            raise PayloadTooLarge(f"{what} body is {size} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"{what} body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest(f"{what} needs a JSON body", field="body")
    try:
        return strict_json_loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} body is not valid UTF-8: {exc.reason}", field="body") from exc
    except LoneSurrogate as exc:
        raise BadRequest(f"{what} body is not valid UTF-8 text: {exc}", field="body") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field="body") from exc
    except RecursionError as exc:
        raise BadRequest(f"{what} body is nested too deeply", field="body") from exc


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


def dumps_compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

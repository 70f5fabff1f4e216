"""Endpoints as RunPod REST v1 answers them (docs ``api-reference/openapi.json``, schema ``Endpoint``).

On top of the emulator's stored endpoint (secret-looking env values masked): ``createdAt`` and
``updatedAt`` as UTC timestamp strings (``2024-07-12T19:14:40.144Z``), ``idleTimeout``/``scalerValue``
as integers when whole (the model's serializer), ``notEmulated`` naming the RunPod fields set on the
endpoint that the emulator keeps but cannot honour on one machine, and ``template`` when asked
(``?includeTemplate=true``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emulator.api.deps import AppContext
from emulator.api.secrets import public_endpoint
from emulator.models import NOT_EMULATED_FIELDS, Endpoint
from emulator.service.core import Core
from emulator.service.templates import template_answer


def iso_time(epoch_s: float) -> str:
    """Epoch seconds as RunPod writes times: ISO 8601 in UTC with milliseconds and ``Z``."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def not_emulated(data: dict[str, Any]) -> list[str]:
    """The RunPod fields set in ``data`` (an endpoint or a body) that change nothing locally."""
    return [name for name in NOT_EMULATED_FIELDS if data.get(name) not in (None, [], "")]


def endpoint_answer(core: Core, endpoint: Endpoint, include_template: bool = False) -> dict[str, Any]:
    """One endpoint as ``GET /v1/endpoints/{id}`` answers it."""
    data = public_endpoint(endpoint)
    data["createdAt"] = iso_time(endpoint.createdAt)
    data["updatedAt"] = iso_time(endpoint.updatedAt)
    if data.get("computeType") is None:  # RunPod always says which
        data["computeType"] = "GPU" if endpoint.gpuCount > 0 else "CPU"
    data["notEmulated"] = not_emulated(data)
    if include_template and endpoint.templateId:
        template = core.templates.get(endpoint.templateId)
        data["template"] = None if template is None else template_answer(template)
    return data


def flag(raw: str | None) -> bool:
    """A boolean query parameter as RunPod's REST API takes it (``true``/``false``, any case, or 1/0)."""
    return (raw or "").strip().lower() in ("true", "1", "yes")


async def reply_with_image(ctx: AppContext, endpoint: Endpoint) -> dict[str, Any]:
    """A create or update answer: the endpoint plus ``imageStatus`` (``{"local", "pullPolicy",
    "message"}``: whether its image is on the engine or will be pulled when workers start)."""
    data = endpoint_answer(ctx.core, endpoint)
    if ctx.supervisor is not None:
        data["imageStatus"] = await ctx.supervisor.image_status(endpoint)
    return data

"""``/v1/secrets``: RunPod's secrets (pods/templates/secrets), locally. A secret is a name and a
write-only value; answers carry the name and times, never the value.

* ``POST /v1/secrets`` ``{"name", "value"}``: 201; 409 when the name exists; 422 naming the bad field.
* ``GET /v1/secrets``, ``GET /v1/secrets/{name}``: names and times.
* ``PATCH /v1/secrets/{name}`` ``{"value"}``: a new value (workers started from then on get it).
* ``DELETE /v1/secrets/{name}``: 204; 409 while an endpoint's ``env`` refers to it.

Endpoint ``env`` values may hold ``{{ RUNPOD_SECRET_<name> }}`` (``emulator.workers.secret_refs``):
creating or changing an endpoint that names a missing secret is a 422; workers get the value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from emulator.api import schema
from emulator.api.bodies import read_json
from emulator.api.deps import context, require_api_key
from emulator.errors import BadRequest, InvalidInput
from emulator.workers.secret_refs import NAME_PATTERN, check_name

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_api_key)],
    tags=["secrets"],
    responses=schema.errors(400, 401, 404, 409, 413, 422),
)
MAX_SECRET_BODY = 128 * 1024
# the path parameter: its pattern documented (OpenAPI), checked by ``_name`` (400 with a message)
SecretName = Annotated[str, Path(description="Secret name", json_schema_extra={"pattern": NAME_PATTERN})]


class SecretCreate(BaseModel):
    """The body of POST /v1/secrets."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    value: str = Field(min_length=1)


class SecretUpdate(BaseModel):
    """The body of PATCH /v1/secrets/{name}."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1)


class SecretInfo(BaseModel):
    """A secret as shown: never its value."""

    name: str
    createdAt: float
    updatedAt: float


def _ok(code: int = 200, array: bool = False) -> dict[int | str, dict[str, Any]]:
    """A success answer's shape, inline (SecretInfo is not among schema.py's shared components)."""
    shape: dict[str, Any] = SecretInfo.model_json_schema()
    if array:
        shape = {"type": "array", "items": shape}
    return {
        code: {"description": "Secrets: names and times", "content": {"application/json": {"schema": shape}}}
    }


def _body(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def _object(request: Request, what: str, allowed: set[str]) -> dict[str, Any]:
    body = await read_json(request, MAX_SECRET_BODY, what)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]!r}: expected {', '.join(sorted(allowed))}", field=unknown[0]
        )
    return body


def _name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidInput as exc:
        raise BadRequest(f"secret name {name[:80]!r} is not valid", field="name") from exc


@router.post(
    "/secrets",
    status_code=201,
    summary="Create a secret (the value is write-only)",
    responses=_ok(201),
    openapi_extra=_body(SecretCreate, "`name` (letters, digits, _ and -) and `value`"),
)
async def create_secret(request: Request) -> dict[str, Any]:
    body = await _object(request, "POST /v1/secrets", {"name", "value"})
    return context(request).core.secrets.create(body.get("name"), body.get("value")).public()


@router.get("/secrets", summary="List secrets (names and times, never values)", responses=_ok(array=True))
async def list_secrets(request: Request) -> list[dict[str, Any]]:
    return [s.public() for s in context(request).core.secrets.list()]


@router.get("/secrets/{name}", summary="One secret (never its value)", responses=_ok())
async def get_secret(name: SecretName, request: Request) -> dict[str, Any]:
    return context(request).core.secrets.require(_name(name)).public()


@router.patch(
    "/secrets/{name}",
    summary="Change a secret's value (workers started from now on get it)",
    responses=_ok(),
    openapi_extra=_body(SecretUpdate, "`value`"),
)
async def update_secret(name: SecretName, request: Request) -> dict[str, Any]:
    _name(name)
    body = await _object(request, "PATCH /v1/secrets", {"value"})
    return context(request).core.secrets.update(name, body.get("value")).public()


@router.delete("/secrets/{name}", status_code=204, summary="Delete a secret no endpoint refers to")
async def delete_secret(name: SecretName, request: Request) -> Response:
    context(request).core.secrets.delete(_name(name))
    return Response(status_code=204)

"""RunPod REST v1 routes beside ``/v1/endpoints``: ``/v1/templates``, ``/v1/containerregistryauth`` and
``POST /v1/endpoints/{id}/update`` (docs ``api-reference/openapi.json``).

``POST …/update`` is PATCH, and it also pulls the endpoint's image again: a new digest behind the same
tag rolls out as a new version, as a new release does on RunPod. A template change is applied to every
endpoint made from it (each rolls out a new version when what its workers run changed). A registry
credential's password is write-only: never in an answer, never logged.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from emulator.api import schema
from emulator.api.bodies import read_json, validated
from emulator.api.deps import EndpointId, check_id, context, require_api_key
from emulator.api.management import MAX_MANAGEMENT_BODY, update_endpoint
from emulator.api.rest_shape import reply_with_image
from emulator.errors import BadRequest, Conflict, InvalidInput
from emulator.models import EndpointPatch
from emulator.service import templates as t

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_api_key)],
    tags=["templates"],
    responses=schema.errors(400, 401, 404, 409, 413, 422, 503),
)


# --- POST /v1/endpoints/{id}/update ---------------------------------------------------------------
@router.post(
    "/endpoints/{endpoint_id}/update",
    summary="Change an endpoint (as PATCH) and pull its image again: a new digest rolls out as a new version",
    responses=schema.ok(schema.EndpointAnswer),
    openapi_extra=schema.body(EndpointPatch, "Any field but `id` (an empty object: only re-pull)"),
)
async def post_endpoint_update(endpoint_id: EndpointId, request: Request) -> dict[str, Any]:
    ctx = context(request)
    check_id(endpoint_id, "endpoint")
    body = await _json_or_empty(request)
    if isinstance(body, dict) and "id" in body:
        raise InvalidInput("id cannot be changed", field="id")
    patch = validated(EndpointPatch, body)
    before = ctx.endpoints.require(endpoint_id)
    endpoint = await update_endpoint(ctx, endpoint_id, patch)
    pulled: dict[str, Any] | None = None
    if ctx.supervisor is not None:
        pulled = await ctx.supervisor.refresh_image(endpoint)
        if pulled.get("changed") and endpoint.version == before.version:
            endpoint = ctx.endpoints.new_version(endpoint.id)
    answer = await reply_with_image(ctx, endpoint)
    if pulled is not None:
        answer["imageStatus"]["pull"] = pulled
    return answer


async def _json_or_empty(request: Request) -> Any:
    """The body as JSON; no body at all is ``{}`` (a bare re-pull)."""
    try:
        return await read_json(request, MAX_MANAGEMENT_BODY, "POST /v1/endpoints/{id}/update")
    except BadRequest as exc:
        if exc.message.endswith("needs a JSON body"):
            return {}
        raise


# --- /v1/templates --------------------------------------------------------------------------------
@router.post(
    "/templates",
    summary="Create a template",
    openapi_extra=schema.body(t.TemplateSpec, "RunPod's TemplateCreateInput"),
)
async def post_template(request: Request) -> dict[str, Any]:
    ctx = context(request)
    spec: t.TemplateSpec = validated(
        t.TemplateSpec, await read_json(request, MAX_MANAGEMENT_BODY, "POST /v1/templates")
    )
    t.check_auth_id(ctx.core, spec.containerRegistryAuthId)
    doc = {"id": t.new_id(), **spec.model_dump()}
    return t.template_answer(ctx.core.templates.put(doc, create=True))


@router.get("/templates", summary="List templates")
async def list_templates(request: Request) -> list[dict[str, Any]]:
    return [t.template_answer(doc) for doc in context(request).core.templates.list()]


@router.get("/templates/{template_id}", summary="One template")
async def get_template(template_id: str, request: Request) -> dict[str, Any]:
    check_id(template_id, "template")
    return t.template_answer(context(request).core.templates.require(template_id))


async def _update_template(template_id: str, request: Request) -> dict[str, Any]:
    ctx = context(request)
    check_id(template_id, "template")
    body = await read_json(request, MAX_MANAGEMENT_BODY, "PATCH /v1/templates")
    if isinstance(body, dict) and "id" in body:
        raise InvalidInput("id cannot be changed", field="id")
    patch: t.TemplatePatch = validated(t.TemplatePatch, body)
    old = ctx.core.templates.require(template_id)
    changes = patch.model_dump(exclude_unset=True)
    if "containerRegistryAuthId" in changes:
        t.check_auth_id(ctx.core, changes["containerRegistryAuthId"])
    new = validated(t.TemplateSpec, {k: v for k, v in (old | changes).items() if k != "id"})
    saved = ctx.core.templates.put({"id": template_id, **new.model_dump()}, create=False)
    for endpoint_id, endpoint_patch in t.endpoint_patches_for(ctx.core, old, saved):
        await update_endpoint(ctx, endpoint_id, endpoint_patch)
    return t.template_answer(saved)


@router.patch(
    "/templates/{template_id}",
    summary="Change a template (its endpoints roll out a new version)",
    openapi_extra=schema.body(t.TemplatePatch, "Any field"),
)
async def patch_template(template_id: str, request: Request) -> dict[str, Any]:
    return await _update_template(template_id, request)


@router.post(
    "/templates/{template_id}/update",
    summary="Change a template (as PATCH)",
    openapi_extra=schema.body(t.TemplatePatch, "Any field"),
)
async def post_template_update(template_id: str, request: Request) -> dict[str, Any]:
    return await _update_template(template_id, request)


@router.delete("/templates/{template_id}", status_code=204, summary="Delete a template no endpoint uses")
async def delete_template(template_id: str, request: Request) -> Response:
    ctx = context(request)
    check_id(template_id, "template")
    ctx.core.templates.require(template_id)
    users = t.users_of_template(ctx.core, template_id)
    if users:
        raise Conflict(
            f"template {template_id!r} is used by endpoints {users}; delete them first", field="templateId"
        )
    ctx.core.templates.delete(template_id)
    return Response(status_code=204)


# --- /v1/containerregistryauth ---------------------------------------------------------------------
@router.post(
    "/containerregistryauth",
    summary="Store registry credentials (the password is write-only)",
    openapi_extra=schema.body(t.RegistryAuthSpec, "name, username, password"),
)
async def post_registry_auth(request: Request) -> dict[str, Any]:
    ctx = context(request)
    spec: t.RegistryAuthSpec = validated(
        t.RegistryAuthSpec, await read_json(request, MAX_MANAGEMENT_BODY, "POST /v1/containerregistryauth")
    )
    doc = ctx.core.registry_auths.put({"id": t.new_id(), **spec.model_dump()}, create=True)
    return t.registry_auth_answer(doc)


@router.get("/containerregistryauth", summary="List registry credentials (id and name)")
async def list_registry_auths(request: Request) -> list[dict[str, Any]]:
    return [t.registry_auth_answer(d) for d in context(request).core.registry_auths.list()]


@router.get("/containerregistryauth/{auth_id}", summary="One registry credential (id and name)")
async def get_registry_auth(auth_id: str, request: Request) -> dict[str, Any]:
    check_id(auth_id, "containerRegistryAuth")
    return t.registry_auth_answer(context(request).core.registry_auths.require(auth_id))


@router.delete(
    "/containerregistryauth/{auth_id}", status_code=204, summary="Delete a registry credential no one uses"
)
async def delete_registry_auth(auth_id: str, request: Request) -> Response:
    ctx = context(request)
    check_id(auth_id, "containerRegistryAuth")
    ctx.core.registry_auths.require(auth_id)
    t.check_auth_unused(ctx.core, auth_id)
    ctx.core.registry_auths.delete(auth_id)
    return Response(status_code=204)

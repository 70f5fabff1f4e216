"""``POST /graphql``: the few operations RunPod's Python SDK sends to manage templates and endpoints.

With ``RUNPOD_API_BASE_URL`` pointed at the emulator, runpod-python 1.12.0's ``runpod.create_template``
(``saveTemplate``), ``runpod.create_endpoint`` (``saveEndpoint``), ``runpod.get_endpoints``
(``query { myself { endpoints { … } } }``), ``runpod.update_endpoint_template``
(``updateEndpointTemplate``), ``runpod.create_container_registry_auth`` (``saveRegistryAuth``) and
``deleteEndpoint(id: …)`` (what runpodctl sends) work on the emulator's ``/v1`` objects (see
``runpod/api/mutations/*.py`` and ``runpod/api/queries/endpoints.py`` of the SDK). The query is parsed
with graphql-core; each answer holds the fields the query selected. Anything else is answered
``{"errors": [{"message": …}]}``, which the SDK raises as ``QueryError``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from graphql import GraphQLError, parse
from graphql.language import FieldNode, OperationDefinitionNode, SelectionSetNode
from graphql.utilities import value_from_ast_untyped
from pydantic import ValidationError

from emulator.api.bodies import read_json
from emulator.api.deps import AppContext, context, require_api_key
from emulator.api.management import MAX_MANAGEMENT_BODY, create_endpoint, update_endpoint
from emulator.api.rest_shape import iso_time
from emulator.api.secrets import masked_env
from emulator.errors import EmulatorError, InvalidInput, NotFound, describe_validation
from emulator.models import Endpoint, EndpointPatch, EndpointSpec
from emulator.service import templates as t

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["graphql"])
SUPPORTED = "saveTemplate, saveEndpoint, updateEndpointTemplate, deleteEndpoint, saveRegistryAuth, myself { endpoints }"


@router.post("/graphql", summary="The GraphQL operations of RunPod's Python SDK for templates and endpoints")
async def graphql_route(request: Request) -> JSONResponse:
    ctx = context(request)
    body = await read_json(request, MAX_MANAGEMENT_BODY, "POST /graphql")
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str):
        return _error('the body must be {"query": "<GraphQL document>"}')
    try:
        document = parse(query)
    except GraphQLError as exc:
        return _error(f"the query is not valid GraphQL: {exc.message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        return _error("send exactly one operation")
    operation = operations[0]
    data: dict[str, Any] = {}
    try:
        for selection in operation.selection_set.selections:
            if not isinstance(selection, FieldNode):
                return _error("fragments are not supported here")
            key = selection.alias.value if selection.alias else selection.name.value
            data[key] = await _run(ctx, operation.operation.value, selection)
    except EmulatorError as exc:
        return _error(exc.message)
    except ValidationError as exc:
        message, _ = describe_validation(list(exc.errors()))
        return _error(message)
    return JSONResponse({"data": data})


def _error(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]})


def _args(node: FieldNode) -> dict[str, Any]:
    return {arg.name.value: value_from_ast_untyped(arg.value) for arg in node.arguments or ()}


async def _run(ctx: AppContext, kind: str, node: FieldNode) -> Any:
    name, args = node.name.value, _args(node)
    if kind == "query" and name == "myself":
        return _select(
            {"endpoints": [_endpoint_doc(ctx, e) for e in ctx.endpoints.all()]}, node.selection_set
        )
    if kind == "mutation":
        if name == "saveTemplate":
            return _select(_save_template(ctx, _input(args)), node.selection_set)
        if name == "saveEndpoint":
            return _select(_endpoint_doc(ctx, await _save_endpoint(ctx, _input(args))), node.selection_set)
        if name == "updateEndpointTemplate":
            given = _input(args)
            patch = EndpointPatch.model_validate({"templateId": given.get("templateId")})
            endpoint = await update_endpoint(ctx, str(given.get("endpointId")), patch)
            return _select(_endpoint_doc(ctx, endpoint), node.selection_set)
        if name == "deleteEndpoint":
            await ctx.endpoints.delete(str(args.get("id") or args.get("endpointId") or ""))
            return None
        if name == "saveRegistryAuth":
            spec = t.RegistryAuthSpec.model_validate(_input(args))
            doc = ctx.core.registry_auths.put({"id": t.new_id(), **spec.model_dump()}, create=True)
            return _select(t.registry_auth_answer(doc), node.selection_set)
    raise InvalidInput(f"the emulator answers only these GraphQL operations: {SUPPORTED}; not {kind} {name}")


def _input(args: dict[str, Any]) -> dict[str, Any]:
    given = args.get("input")
    if not isinstance(given, dict):
        raise InvalidInput("the operation needs an input: { ... } argument")
    return given


def _csv(value: Any) -> list[str] | None:
    items = [part.strip() for part in str(value or "").split(",") if part.strip()]
    return items or None


def _save_template(ctx: AppContext, given: dict[str, Any]) -> dict[str, Any]:
    env = {str(e.get("key")): str(e.get("value")) for e in given.get("env") or [] if isinstance(e, dict)}
    fields: dict[str, Any] = {
        "name": given.get("name"),
        "imageName": given.get("imageName"),
        "env": env,
        "dockerStartCmd": given.get("dockerArgs") or None,
        "containerDiskInGb": given.get("containerDiskInGb", 10),
        "volumeInGb": given.get("volumeInGb") or 0,
        "ports": _csv(given.get("ports")),
        "isServerless": bool(given.get("isServerless")),
        "isPublic": bool(given.get("isPublic")),
        "containerRegistryAuthId": given.get("containerRegistryAuthId") or None,
        "readme": given.get("readme") or "",
    }
    if given.get("volumeMountPath"):
        fields["volumeMountPath"] = given["volumeMountPath"]
    spec = t.TemplateSpec.model_validate(fields)
    t.check_auth_id(ctx.core, spec.containerRegistryAuthId)
    doc = ctx.core.templates.put({"id": t.new_id(), **spec.model_dump()}, create=True)
    return _template_doc(doc)


def _template_doc(doc: dict[str, Any]) -> dict[str, Any]:
    start = doc.get("dockerStartCmd")
    return {
        **doc,
        "dockerArgs": " ".join(start) if isinstance(start, list) else (start or ""),
        "ports": ",".join(doc.get("ports") or [])
        if isinstance(doc.get("ports"), list)
        else doc.get("ports") or "",
        "env": [{"key": k, "value": v} for k, v in (doc.get("env") or {}).items()],
    }


async def _save_endpoint(ctx: AppContext, given: dict[str, Any]) -> Endpoint:
    fields: dict[str, Any] = {
        "name": given.get("name"),
        "templateId": given.get("templateId"),
        "gpuTypeIds": _csv(given.get("gpuIds")),
        "networkVolumeId": given.get("networkVolumeId") or None,
        "dataCenterIds": _csv(given.get("locations")),
        "allowedCudaVersions": _csv(given.get("allowedCudaVersions")),
        "flashboot": given.get("flashBootType") == "FLASHBOOT",
    }
    for key in ("idleTimeout", "scalerType", "scalerValue", "workersMin", "workersMax", "gpuCount", "type"):
        if given.get(key) is not None:
            fields[key] = given[key]
    if given.get("id"):
        current = ctx.core.endpoints.get(str(given["id"]))  # (a read)
        if current is None:
            raise NotFound(f"endpoint {given['id']!r} does not exist")
        patch = EndpointPatch.model_validate({k: v for k, v in fields.items() if v is not None})
        return await update_endpoint(ctx, current.id, patch)
    spec = EndpointSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    return await create_endpoint(ctx, spec)


def _endpoint_doc(ctx: AppContext, e: Endpoint) -> dict[str, Any]:
    """An endpoint as RunPod's GraphQL ``Endpoint`` type names its fields."""
    return {
        **e.model_dump(),
        "gpuIds": ",".join(e.gpuTypeIds or []),
        "locations": ",".join(e.dataCenterIds or []),
        "allowedCudaVersions": ",".join(e.allowedCudaVersions or []),
        "networkVolumeId": e.networkVolumeId or "",
        "flashBootType": "FLASHBOOT" if e.flashboot else "OFF",
        "type": e.type,  # QB or LB (saveEndpoint's type)
        "userId": "emulator",
        "aiKey": None,
        "workersStandby": e.extraWorkers,
        "env": [{"key": k, "value": v} for k, v in masked_env(e.env).items()],
        "createdAt": iso_time(e.createdAt),
        "networkVolume": None
        if not e.networkVolumeId
        else {"id": e.networkVolumeId, "dataCenterId": "LOCAL"},
    }


def _select(value: Any, selection: SelectionSetNode | None) -> Any:
    """``value`` cut to the selected fields (lists element-wise; unknown fields are null)."""
    if selection is None or value is None:
        return value
    if isinstance(value, list):
        return [_select(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for node in selection.selections:
        if isinstance(node, FieldNode):
            key = node.alias.value if node.alias else node.name.value
            out[key] = _select(value.get(node.name.value), node.selection_set)
    return out

"""What the OpenAPI document says beyond FastAPI's defaults.

* Routes that read their body themselves (``/run``, ``/runsync``, ``POST``/``PATCH /v1/endpoints``,
  to bound its size and word its errors) declare it with ``openapi_extra``: the JSON schema of
  ``JobRequest``, ``EndpointSpec`` or ``EndpointPatch``, registered under ``components/schemas``.
* Every error is ``{"error": "...", "field": "..."}`` (``api/errors.py``): the 4xx and 503 answers
  are documented with that shape instead of FastAPI's ``HTTPValidationError``.
* Success answers are documented with the TypedDicts of ``emulator.wire``, the same types the routes
  build their answers with, so the document and the answers share one definition.
* With an API key set, the document declares it (``Authorization: Bearer KEY``) on every route
  that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, TypeAdapter

from emulator import wire
from emulator.models import Endpoint, EndpointPatch, EndpointSpec, JobRequest
from emulator.service.templates import RegistryAuthSpec, TemplatePatch, TemplateSpec

REF = "#/components/schemas/{model}"
PUBLIC_PATHS = frozenset({"/ping"})


class ErrorBody(BaseModel):
    """Every error answer: a sentence, and the field it is about when there is one."""

    error: str
    field: str | None = None


class EndpointAnswer(Endpoint):
    """An endpoint as /v1 answers it, with RunPod REST v1's types (``api/rest_shape.py``): ``createdAt`` and
    ``updatedAt`` as UTC timestamps, ``notEmulated``; ``imageStatus`` on create and update answers,
    ``template`` with ``?includeTemplate=true``."""

    createdAt: str  # type: ignore[assignment]
    updatedAt: str  # type: ignore[assignment]
    notEmulated: list[str] = []
    imageStatus: dict[str, Any] | None = None
    template: dict[str, Any] | None = None


class RegisteredWorker(BaseModel):
    """POST /v1/endpoints/{id}/workers: the worker's id, its token and the env to run it with."""

    id: str
    token: str
    env: dict[str, str]


def ok(model: type[Any] | None, code: int = 200, array: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses`` documenting a success answer's shape (``model`` None: no body)."""
    if model is None:
        return {code: {"description": "Done; no body"}}
    schema: dict[str, Any] = {"$ref": REF.format(model=model.__name__)}
    if array:
        schema = {"type": "array", "items": schema}
    return {
        code: {"description": model.__doc__ or "Success", "content": {"application/json": {"schema": schema}}}
    }


def query(default: Any, description: str, **bounds: Any) -> Any:
    """A query parameter whose bounds are documented; the route checks them (400/422 with a message)."""
    return Query(default, description=description, json_schema_extra=bounds)


WAIT = r"^[0-9]{1,9}$"


ERROR_REF = REF.format(model="ErrorBody")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Documented error answers; always JSON, also on routes whose success is plain text."""
    text = {
        400: "Malformed request (not JSON, not UTF-8, a bad id or query value)",
        401: "Missing or wrong API key",
        404: "No such endpoint, job or worker (or it expired)",
        409: "Clashes with the current state",
        413: "Body over the size limit",
        422: "Well-formed but invalid; `field` names what is wrong",
        429: "Queue full; retry later",
        502: "The container runtime refused the operation",
        503: "The job store or the container runtime is unavailable (read-only or full data dir, Docker down)",
    }
    return {
        code: {"description": text[code], "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}
        for code in codes
    }


def _webhook_url(schema: dict[str, Any]) -> None:
    # JobRequest's validator takes only http(s) URLs (or an empty string / null for none)
    props = schema.get("properties", {})
    hook = props.get("webhook")
    if isinstance(hook, dict):
        props["webhook"] = {
            "anyOf": [{"type": "string", "maxLength": 2048, "pattern": "^(https?://.*)?$"}, {"type": "null"}],
            "title": "Webhook",
            "description": "URL POSTed the status body when the job ends (http:// or https://)",
        }
    if "input" in props:
        props["input"] = {
            "title": "Input",
            "description": "Any JSON; optional (as on RunPod, a job without it reaches the worker without it)",
        }


def _with_refs(model: type[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema(ref_template=REF)
    else:  # a TypedDict of emulator.wire: the shape the routes really return
        schema = TypeAdapter(model).json_schema(ref_template=REF)
    defs: dict[str, Any] = schema.pop("$defs", {})
    return schema, defs


def body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
    }


def _env_names(schema: dict[str, Any]) -> None:
    # the env validator refuses empty names and names with '=' or NUL
    env = schema.get("properties", {}).get("env")
    if isinstance(env, dict):
        for variant in [env, *env.get("anyOf", [])]:
            if variant.get("type") == "object":
                variant["propertyNames"] = {"minLength": 1, "pattern": "^[^=\\x00]+$"}


def _not_null_in_patch(schema: dict[str, Any]) -> None:
    # PATCH null for a field the endpoint cannot hold as null (workersMax, backoff, ...) is refused
    nullable = {
        name
        for name, field in Endpoint.model_fields.items()
        if field.default is None and name not in ("id", "rollout")
    }
    for name, prop in schema.get("properties", {}).items():
        variants = prop.get("anyOf")
        if name in nullable or not isinstance(variants, list):
            continue
        kept = [v for v in variants if v.get("type") != "null"]
        prop.pop("anyOf")
        prop.pop("default", None)
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept


def _components() -> dict[str, Any]:
    found: dict[str, Any] = {}
    models: list[type[Any]] = [ErrorBody, RegisteredWorker, *wire.DOCUMENTED]
    models += [Endpoint, EndpointAnswer, JobRequest, EndpointSpec, EndpointPatch]
    models += [TemplateSpec, TemplatePatch, RegistryAuthSpec]
    for model in models:
        schema, defs = _with_refs(model)
        if model is JobRequest:
            _webhook_url(schema)
        elif model in (Endpoint, EndpointAnswer, EndpointSpec, EndpointPatch, TemplateSpec, TemplatePatch):
            _env_names(schema)
        if model is EndpointPatch:
            _not_null_in_patch(schema)
        found.update(defs)
        found[model.__name__] = schema
    return found


ANY_ROUTE_ERRORS = (400, 401, 404, 409, 413, 422, 429, 503)


def _document_errors(operation: dict[str, Any]) -> None:
    """Every route answers errors in one shape (``api/errors.py``): say so, also on routes that did
    not list their errors, and instead of FastAPI's ``HTTPValidationError`` (never sent here)."""
    responses = operation.setdefault("responses", {})
    for code, documented in errors(*ANY_ROUTE_ERRORS).items():
        current = responses.get(str(code))
        if current is None or "HTTPValidationError" in str(current):
            responses[str(code)] = documented


def install(app: FastAPI, api_key: str | None) -> None:
    """Replace ``app.openapi`` with one that adds the body schemas and, with a key, the security scheme."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name, schema in _components().items():
            schemas.setdefault(name, schema)
        for path, operations in document.get("paths", {}).items():
            if path in PUBLIC_PATHS:
                continue
            for operation in operations.values():
                _document_errors(operation)
        if api_key:
            components.setdefault("securitySchemes", {})["apiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "EMULATOR_API_KEY, as `Authorization: Bearer KEY` (the raw key is accepted too)",
            }
            for path, operations in document.get("paths", {}).items():
                if path in PUBLIC_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"apiKey": []}]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]

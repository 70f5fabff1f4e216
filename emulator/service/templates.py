"""Templates and registry credentials as RunPod's REST v1 keeps them, and endpoints made from templates.

Shapes follow RunPod's REST v1 schema (docs ``api-reference/openapi.json``: ``TemplateCreateInput``,
``TemplateUpdateInput``, ``Template``, ``ContainerRegistryAuthCreateInput``). A template gives an
endpoint its ``imageName``, ``env``, ``dockerStartCmd`` and ``containerRegistryAuthId``; fields set on the
endpoint itself win. A change to a template is applied to every endpoint made from it, so each rolls out
a new version when what its workers run changed (RunPod: "changing a template ... new release").
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from emulator.errors import Conflict, InvalidInput
from emulator.models import ID_PATTERN, Endpoint, EndpointPatch, EndpointSpec
from emulator.service.core import Core

StrList = list[Annotated[str, Field(max_length=1024)]]
# Template fields kept and shown back that change nothing locally
TEMPLATE_NOT_EMULATED = (
    "containerDiskInGb",
    "volumeInGb",
    "volumeMountPath",
    "ports",
    "dockerEntrypoint",
    "isPublic",
    "category",
    "readme",
)


class _TemplateFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("env", check_fields=False)
    @classmethod
    def _env_keys(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key in v or {}:
            if not key or "=" in key or "\x00" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        return v


class TemplateSpec(_TemplateFields):
    """The body of ``POST /v1/templates`` (RunPod's TemplateCreateInput; ``name`` and ``imageName`` required)."""

    name: str = Field(min_length=1, max_length=191)
    imageName: str = Field(min_length=1, max_length=512)
    env: dict[str, str] = Field(default_factory=dict)
    dockerStartCmd: StrList | str | None = None
    dockerEntrypoint: StrList | str | None = None
    containerDiskInGb: int = Field(50, ge=0, le=100_000)
    volumeInGb: int = Field(20, ge=0, le=100_000)
    volumeMountPath: str = Field("/workspace", max_length=512)
    ports: StrList | str | None = None
    isServerless: bool = False
    isPublic: bool = False
    containerRegistryAuthId: str | None = Field(None, pattern=ID_PATTERN)
    category: str | None = Field(None, max_length=32)
    readme: str = Field("", max_length=100_000)


class TemplatePatch(_TemplateFields):
    """The body of ``PATCH /v1/templates/{id}`` and ``POST /v1/templates/{id}/update``: any field."""

    name: str | None = Field(None, min_length=1, max_length=191)
    imageName: str | None = Field(None, min_length=1, max_length=512)
    env: dict[str, str] | None = None
    dockerStartCmd: StrList | str | None = None
    dockerEntrypoint: StrList | str | None = None
    containerDiskInGb: int | None = Field(None, ge=0, le=100_000)
    volumeInGb: int | None = Field(None, ge=0, le=100_000)
    volumeMountPath: str | None = Field(None, max_length=512)
    ports: StrList | str | None = None
    isServerless: bool | None = None
    isPublic: bool | None = None
    containerRegistryAuthId: str | None = Field(None, pattern=ID_PATTERN)
    category: str | None = Field(None, max_length=32)
    readme: str | None = Field(None, max_length=100_000)


class RegistryAuthSpec(BaseModel):
    """The body of ``POST /v1/containerregistryauth``: ``name``, ``username``, ``password`` (write-only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=191)
    username: str = Field(min_length=1, max_length=1024)
    password: str = Field(min_length=1, max_length=16_384, repr=False)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def template_answer(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored template as RunPod's ``Template``: its fields plus ``isRunpod``, ``earned``, ``runtimeInMin``."""
    return {**doc, "isRunpod": False, "earned": 0, "runtimeInMin": 0}


def registry_auth_answer(doc: dict[str, Any]) -> dict[str, Any]:
    """A credential as RunPod's ``ContainerRegistryAuth``: ``id`` and ``name`` only (never the password)."""
    return {"id": doc["id"], "name": doc["name"]}


def check_auth_id(core: Core, auth_id: str | None) -> None:
    if auth_id is not None and core.registry_auths.get(auth_id) is None:
        raise InvalidInput(
            f"containerRegistryAuthId {auth_id!r} names no credential (POST /v1/containerregistryauth)",
            field="containerRegistryAuthId",
        )


def _template(core: Core, template_id: str) -> dict[str, Any]:
    found = core.templates.get(template_id)
    if found is None:
        raise InvalidInput(
            f"templateId {template_id!r} names no template (POST /v1/templates)", field="templateId"
        )
    return found


def spec_from_template(core: Core, spec: EndpointSpec) -> EndpointSpec:
    """``spec`` with its template's image, env, start command and credential filled in (its own win)."""
    if spec.templateId is None:
        check_auth_id(core, spec.containerRegistryAuthId)
        return spec
    t = _template(core, spec.templateId)
    given = spec.model_fields_set
    update: dict[str, Any] = {"env": {**t.get("env", {}), **spec.env}}
    if "imageName" not in given or not spec.imageName:
        update["imageName"] = t["imageName"]
    if "dockerStartCmd" not in given and t.get("dockerStartCmd"):
        update["dockerStartCmd"] = t["dockerStartCmd"]
    if "containerRegistryAuthId" not in given:
        update["containerRegistryAuthId"] = t.get("containerRegistryAuthId")
    filled = EndpointSpec.model_validate(spec.model_dump(exclude_unset=True) | update)
    check_auth_id(core, filled.containerRegistryAuthId)
    return filled


def patch_from_template(core: Core, current: Endpoint, patch: EndpointPatch) -> EndpointPatch:
    """A PATCH that names another ``templateId``: the new template's fields added (its own win)."""
    if patch.containerRegistryAuthId is not None:
        check_auth_id(core, patch.containerRegistryAuthId)
    if patch.templateId is None or patch.templateId == current.templateId:
        return patch
    t = _template(core, patch.templateId)
    old = core.templates.get(current.templateId) if current.templateId else None
    return patch.model_copy(update=_template_changes(current, old, t, patch.model_fields_set))


def _template_changes(
    endpoint: Endpoint,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    given: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    old_env = (old or {}).get("env", {})
    own_env = {k: v for k, v in endpoint.env.items() if old_env.get(k) != v}  # set on the endpoint itself
    changes: dict[str, Any] = {"env": {**new.get("env", {}), **own_env}}
    if "imageName" not in given:
        changes["imageName"] = new["imageName"]
    if "dockerStartCmd" not in given:
        changes["dockerStartCmd"] = new.get("dockerStartCmd") or None
    if "containerRegistryAuthId" not in given:
        changes["containerRegistryAuthId"] = new.get("containerRegistryAuthId")
    return changes


def endpoint_patches_for(
    core: Core, old: dict[str, Any], new: dict[str, Any]
) -> list[tuple[str, EndpointPatch]]:
    """For a template changed from ``old`` to ``new``: each endpoint made from it and its patch."""
    found = []
    for endpoint in core.endpoints.list():
        if endpoint.templateId == new["id"]:
            changes = _template_changes(endpoint, old, new)
            found.append((endpoint.id, EndpointPatch.model_validate(changes)))
    return found


def users_of_template(core: Core, template_id: str) -> list[str]:
    return [e.id for e in core.endpoints.list() if e.templateId == template_id]


def check_auth_unused(core: Core, auth_id: str) -> None:
    templates = [t["id"] for t in core.templates.list() if t.get("containerRegistryAuthId") == auth_id]
    endpoints = [e.id for e in core.endpoints.list() if e.containerRegistryAuthId == auth_id]
    if templates or endpoints:
        raise Conflict(
            f"container registry credential {auth_id!r} is used by templates {templates} and endpoints "
            f"{endpoints}; change them first",
            field="containerRegistryAuthId",
        )


class TemplateLinks:
    """What ``EndpointService`` asks about templates: a spec or patch with its template's fields filled in
    (``spec_from_template``, ``patch_from_template``); InvalidInput naming ``templateId`` or
    ``containerRegistryAuthId`` when they name nothing."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def spec(self, spec: EndpointSpec) -> EndpointSpec:
        return spec_from_template(self.core, spec)

    def patch(self, current: Endpoint, patch: EndpointPatch) -> EndpointPatch:
        return patch_from_template(self.core, current, patch)

"""Endpoint use cases: create, update, delete, and applying an endpoints file.

The only writer of endpoints. Each write tells the supervisor (when there is one) and publishes the
wake-ups that follow from it, so a route never pokes the hub itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from emulator.clock import Clock
from emulator.errors import InvalidInput, describe_validation
from emulator.models import Endpoint, EndpointPatch, EndpointSpec
from emulator.service.endpoints_file import load_endpoints_file
from emulator.service.hub import Change, Hub
from emulator.service.workers import WorkerRegistry
from emulator.store.endpoint_logs import EndpointLogStore
from emulator.store.endpoints import EndpointStore
from emulator.store.jobs import JobStore
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.endpoints")
# fields naming what must exist for workers (checked by ``inputs`` when a PATCH sets one of them)
INPUT_FIELDS = frozenset({"env", "networkVolumeId", "modelReferences", "localS3"})


class TemplateHooks(Protocol):
    """Fills a spec or patch in from its ``templateId`` (``service.templates.TemplateLinks``)."""

    def spec(self, spec: EndpointSpec) -> EndpointSpec: ...

    def patch(self, current: Endpoint, patch: EndpointPatch) -> EndpointPatch: ...


class SupervisorHooks(Protocol):
    """What the control plane asks of the supervisor (absent with ``--runtime none``)."""

    async def validate_endpoint(self, endpoint: Endpoint) -> None: ...

    async def image_status(self, endpoint: Endpoint) -> dict[str, Any]: ...

    async def refresh_image(self, endpoint: Endpoint) -> dict[str, Any]: ...

    def endpoint_changed(self, endpoint: Endpoint) -> None: ...

    async def endpoint_deleted(self, endpoint: Endpoint) -> None: ...

    async def worker_logs(self, worker_id: str, tail: int) -> str: ...

    def runtime_status(self) -> dict[str, object]: ...


def new_endpoint(spec: EndpointSpec, now: float) -> Endpoint:
    """An ``Endpoint`` at version 1 from a validated spec; ``id`` is generated (12 hex digits) when absent."""
    data = spec.model_dump()
    data["id"] = spec.id or uuid.uuid4().hex[:12]
    data.update(version=1, createdAt=now, updatedAt=now)
    return Endpoint.model_validate(data)


class EndpointService:
    """Endpoints' life: ``create``, ``update``, ``delete``, ``apply_file``; reads for the routes.

    ``supervisor`` is set by the control plane once the supervisor exists (``None`` without a runtime).
    Raises ``NotFound`` for an unknown id, ``Conflict`` for a duplicate name, ``InvalidInput`` (422,
    naming the field) for a patch that makes the endpoint invalid, and whatever the supervisor's
    ``validate_endpoint`` refuses (a GPU request the host cannot serve).
    """

    def __init__(
        self,
        store: EndpointStore,
        workers: WorkerRegistry,
        jobs: JobStore,
        hub: Hub,
        clock: Clock,
        templates: TemplateHooks | None = None,
        inputs: Callable[[Endpoint], None] | None = None,
        logs: EndpointLogStore | None = None,
    ) -> None:
        self.templates = templates  # endpoints made from /v1/templates (None: templateId is not resolved)
        self.store = store
        self.workers = workers
        self.jobs = jobs
        self.hub = hub
        self.clock = clock
        self.supervisor: SupervisorHooks | None = None
        # what the endpoint's workers are to get must exist (secrets, folders, models): InvalidInput if not
        self.inputs = inputs
        self.logs = logs  # the endpoint's kept worker output, deleted with it

    # --- reads ---------------------------------------------------------------------------------
    def require(self, endpoint_id: str) -> Endpoint:
        """The endpoint, or ``NotFound``."""
        return self.store.require(endpoint_id)

    def all(self) -> list[Endpoint]:
        return self.store.list()

    def workers_of(self, endpoint_id: str) -> list[WorkerRecord]:
        """The endpoint's workers, oldest first (creation time, then id)."""
        return sorted(self.workers.for_endpoint(endpoint_id), key=lambda w: (w.created_at, w.id))

    # --- writes --------------------------------------------------------------------------------
    async def create(self, spec: EndpointSpec) -> Endpoint:
        if self.templates is not None:
            spec = self.templates.spec(spec)
        endpoint = new_endpoint(spec, self.clock.now())
        if self.inputs is not None:
            self.inputs(endpoint)
        if self.supervisor is not None:
            await self.supervisor.validate_endpoint(endpoint)
        self.store.create(endpoint)
        if self.supervisor is not None:
            self.supervisor.endpoint_changed(endpoint)
        self.hub.publish(Change(endpoint.id))
        return endpoint

    async def update(self, endpoint_id: str, patch: EndpointPatch) -> Endpoint:
        """Apply ``patch``; a change to what workers run bumps ``version`` (a rolling update)."""
        current = self.store.require(endpoint_id)
        if self.templates is not None:
            patch = self.templates.patch(current, patch)
        try:
            updated, bumped = current.apply_patch(patch)
        except ValidationError as exc:
            message, field = describe_validation(list(exc.errors()))
            raise InvalidInput(message, field=field) from exc
        updated = updated.model_copy(
            update={"updatedAt": self.clock.now(), "rollout": None if bumped else current.rollout}
        )
        if self.inputs is not None and patch.model_fields_set & INPUT_FIELDS:
            self.inputs(updated)
        if self.supervisor is not None:
            await self.supervisor.validate_endpoint(updated)
        self.store.save(updated)
        if self.supervisor is not None:
            self.supervisor.endpoint_changed(updated)
        self.hub.publish(Change(updated.id))
        return updated

    def new_version(self, endpoint_id: str) -> Endpoint:
        """The same spec as a new version (a new image behind the same tag): a rolling update."""
        current = self.store.require(endpoint_id)
        bumped = current.model_copy(
            update={"version": current.version + 1, "updatedAt": self.clock.now(), "rollout": None}
        )
        self.store.save(bumped)
        if self.supervisor is not None:
            self.supervisor.endpoint_changed(bumped)
        self.hub.changed()
        return bumped

    async def delete(self, endpoint_id: str) -> None:
        """Delete the endpoint: the supervisor drains and removes its containers, external workers are
        forgotten, its jobs are deleted (their waiters answer 404 at once) and held long polls end."""
        endpoint = self.store.require(endpoint_id)
        self.store.delete(endpoint_id)
        if self.logs is not None:
            self.logs.delete(endpoint_id)
        if self.supervisor is not None:
            await self.supervisor.endpoint_deleted(endpoint)
        for worker in self.workers.for_endpoint(endpoint_id):
            if worker.kind == "external":
                self.workers.remove(worker.id, "endpoint deleted")
        deleted = self.jobs.delete_endpoint_jobs(endpoint_id)
        # each deleted job's /runsync, /status-sync or /stream waiter answers 404 now; held job-takes end
        self.hub.publish(Change(endpoint_id, jobs=tuple(deleted), takers_recheck=True))

    async def apply_file(self, path: Path) -> None:
        """Create or update every endpoint of an endpoints file (matched by ``id``, else by ``name``)."""
        for spec in load_endpoints_file(path):
            existing = self.store.get(spec.id) if spec.id else None
            if existing is None:
                existing = next((e for e in self.store.list() if e.name == spec.name), None)
            if existing is None:
                await self.create(spec)
                log.info("endpoint created from file", endpoint=spec.id or spec.name)
            else:
                fields = spec.model_dump(exclude={"id"}, exclude_unset=False)
                if spec.imageName is None:  # from a template: the template names it
                    fields.pop("imageName")
                await self.update(existing.id, EndpointPatch.model_validate(fields))

"""Image pulls before a worker's container is created: one shared pull per image, progress on the workers.

A worker whose image must be pulled (``pull_policy.decide``) stays INITIALIZING while the engine pulls;
its ``pull`` field (``{"image", "status", "layersDone", "layersTotal", "bytesDone", "bytesTotal",
"digest"}``; ``status`` ends ``complete`` or ``failed`` and stays until the next start) and its ``reason`` (``pulling IMAGE: 2/5 layers, 12.3 of 40.0 MB``) follow the engine's
progress, and the time it waited becomes ``pullMs`` in its first job's cold-start breakdown. Workers of
any endpoint that need the same image with the same credential share one pull. A failed pull raises
``ImagePullFailed`` with the registry's reason in words a user acts on (``pull_docs.explain_pull_error``);
the launcher marks the worker UNHEALTHY and the endpoint's back-off retries it, so an image pushed later
is picked up without a restart. RunPod: workers are INITIALIZING "while the system downloads and
prepares the Docker image" (docs serverless/workers/overview).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from emulator.errors import EmulatorError, ImagePullFailed, RuntimeUnavailable
from emulator.models import Endpoint
from emulator.runtime.base import LocalImage, Runtime
from emulator.runtime.pull_docs import PullProgress, describe_progress, explain_pull_error
from emulator.service.core import Core
from emulator.supervisor.pull_policy import PullPolicy, decide
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.supervisor")

PROGRESS_EVERY_S = 0.5  # how often waiting workers' records are updated with the progress


@dataclass
class _Pull:
    image: str
    task: asyncio.Task[LocalImage]
    progress: PullProgress = field(default_factory=PullProgress)
    waiters: set[str] = field(default_factory=set)  # worker ids


class PullManager:
    """Pulls for the launcher and the API (``ensure`` for a start, ``refresh`` for an explicit update)."""

    def __init__(self, core: Core, runtime: Runtime) -> None:
        self.core = core
        self.runtime = runtime
        self._pulls: dict[tuple[str, str | None], _Pull] = {}
        self._pulled: set[tuple[str, int, str]] = set()  # (endpoint id, version, image) pulled

    # --- for a worker start ------------------------------------------------------------------------
    async def ensure(self, endpoint: Endpoint, worker: WorkerRecord) -> float | None:
        """Make the endpoint's image local as its pull policy says; the seconds the worker waited on a pull
        (None when it did not pull). Raises ImagePullFailed (the reason in words) or RuntimeUnavailable."""
        image = endpoint.imageName
        local = await self.runtime.image_info(image)
        policy: PullPolicy | None = endpoint.pullPolicy
        decision = decide(policy, image, local, (endpoint.id, endpoint.version, image) in self._pulled)
        if decision.verdict == "use-local":
            return None
        if decision.verdict == "missing":
            raise ImagePullFailed(decision.why, image=image)
        began = self.core.clock.monotonic()
        try:
            await self._shared(endpoint, image, worker)
        except ImagePullFailed as exc:
            if decision.fallback_to_local and local is not None:
                log.warning(
                    "pull failed; using the local image", endpoint=endpoint.id, image=image, error=exc.message
                )
                self._pulled.add((endpoint.id, endpoint.version, image))
                return None
            raise
        self._pulled.add((endpoint.id, endpoint.version, image))
        return self.core.clock.monotonic() - began

    # --- for POST /v1/endpoints/{id}/update ------------------------------------------------------
    async def refresh(self, endpoint: Endpoint) -> dict[str, Any]:
        """Pull the endpoint's image now (unless its policy is NEVER): ``{"pulled", "changed", "imageId",
        "error"}``; ``changed``: the tag now names another image than before the pull."""
        image = endpoint.imageName
        if endpoint.pullPolicy == "NEVER":
            return {"pulled": False, "changed": False, "reason": "pullPolicy is NEVER"}
        before = await self.runtime.image_info(image)
        try:
            after = await self._shared(endpoint, image, None)
        except ImagePullFailed as exc:
            return {"pulled": False, "changed": False, "error": exc.message}
        return {
            "pulled": True,
            "changed": before is None or before.id != after.id,
            "imageId": after.id,
        }

    def forget_version(self, endpoint: Endpoint) -> None:
        """The next start of ``endpoint``'s current version pulls again (policy permitting)."""
        self._pulled.discard((endpoint.id, endpoint.version, endpoint.imageName))

    async def status(self, endpoint: Endpoint) -> dict[str, Any]:
        """What create/update answers say about the image: ``{"local", "pullPolicy", "message"}``.

        ``local`` is ``None`` when the engine cannot be asked (unreachable): the endpoint is kept all the
        same (the write is done; a 503 would claim it was not), and its workers start once it is back."""
        policy = endpoint.pullPolicy
        try:
            local = await self.runtime.image_info(endpoint.imageName)
        except RuntimeUnavailable as exc:
            return {
                "local": None,
                "pullPolicy": policy,
                "message": f"could not check image {endpoint.imageName}: {exc.message}; the endpoint is saved "
                f"and its workers start (pulling the image if needed) once the engine answers",
            }
        if local is not None:
            message = f"image {endpoint.imageName} is on this Docker engine"
        elif policy == "NEVER":
            message = (
                f"image {endpoint.imageName} is not on this Docker engine and pullPolicy is NEVER: "
                f"workers will fail until it is built or pulled"
            )
        else:
            message = f"image {endpoint.imageName} is not on this Docker engine: workers will pull it when they start"
        return {"local": local is not None, "pullPolicy": policy, "message": message}

    # --- the shared pull ---------------------------------------------------------------------------
    async def _shared(self, endpoint: Endpoint, image: str, worker: WorkerRecord | None) -> LocalImage:
        auth_id = endpoint.containerRegistryAuthId
        key = (image, auth_id)
        pull = self._pulls.get(key)
        if pull is None or pull.task.done():
            auth = self._auth(auth_id, image)
            task = asyncio.get_running_loop().create_task(self._pull(key, image, auth, auth_id))
            pull = _Pull(image, task)
            self._pulls[key] = pull
        if worker is not None:
            pull.waiters.add(worker.id)
            self._show(worker, pull)
        outcome = "failed"
        try:
            local = await asyncio.shield(pull.task)
            outcome = "complete"
            return local
        finally:
            if worker is not None:  # the last progress stays on the worker until its next start
                pull.waiters.discard(worker.id)
                worker.pull = {"image": image, **pull.progress.snapshot(), "status": outcome}

    def _auth(self, auth_id: str | None, image: str) -> dict[str, str] | None:
        if auth_id is None:
            return None  # the host's Docker credentials
        doc = self.core.registry_auths.get(auth_id)
        if doc is None:
            raise ImagePullFailed(
                f"cannot pull {image}: containerRegistryAuthId {auth_id!r} names no credential "
                f"(create it with POST /v1/containerregistryauth)",
                image=image,
            )
        return {"username": str(doc["username"]), "password": str(doc["password"])}

    async def _pull(
        self, key: tuple[str, str | None], image: str, auth: dict[str, str] | None, auth_id: str | None
    ) -> LocalImage:
        pull = self._pulls[key]
        clock = self.core.clock
        began, shown = clock.monotonic(), 0.0
        log.info("pulling image", image=image, credential=auth_id)
        try:
            async for doc in self.runtime.pull(image, auth):
                pull.progress.feed(doc)
                if pull.progress.error is not None:
                    break
                if clock.monotonic() - shown >= PROGRESS_EVERY_S:
                    shown = clock.monotonic()
                    self._show_all(pull)
        except RuntimeUnavailable:
            raise
        except EmulatorError as exc:
            pull.progress.error = str(exc.data.get("reason") or exc.message)
        if pull.progress.error is None:
            local = await self.runtime.image_info(image)
            if local is None:
                pull.progress.error = "the engine reported no error but does not have the image afterwards"
            else:
                log.info(
                    "image pulled",
                    image=image,
                    pull_s=round(clock.monotonic() - began, 3),
                    **pull.progress.snapshot(),
                )
                return local
        reason = explain_pull_error(image, pull.progress.error, auth_id)
        log.warning("image pull failed", image=image, error=reason)
        raise ImagePullFailed(reason, image=image)

    def _show_all(self, pull: _Pull) -> None:
        for worker_id in list(pull.waiters):
            worker = self.core.workers.get(worker_id)
            if worker is not None:
                self._show(worker, pull)
        self.core.hub.changed()

    def _show(self, worker: WorkerRecord, pull: _Pull) -> None:
        snap = pull.progress.snapshot()
        worker.pull = {"image": pull.image, **snap}
        worker.reason = describe_progress(pull.image, snap)
        self.core.workers.save(worker)

"""Starting workers: new ones, standby containers, restarts, THROTTLED workers whose capacity came.

Used by the actuator (``Actuator.launcher``), with no reference back to it. A worker whose image is not
local (or must be refreshed) first waits INITIALIZING on the shared pull (``supervisor.pulls``), outside
the start slots; a failed pull makes it UNHEALTHY with the registry's reason, and the back-off retries
it. A standby container is only made from an image that is local. Each start has a synchronous part, done at once (the
worker record created or moved to INITIALIZING with the GPU ids admission reserved for it), and a
container operation run as a task. Container starts share a semaphore
(``max_concurrent_starts``); a worker that has to wait for a slot is reported THROTTLED
("waiting for a start slot") until it gets one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from emulator.config import Settings
from emulator.errors import EmulatorError, ImageNotFound, ImagePullFailed
from emulator.models import Endpoint, WorkerState
from emulator.runtime.base import Runtime
from emulator.service import metrics
from emulator.service.core import Core
from emulator.supervisor.actions import CreateStandby, Restart, Start, Throttle, Unthrottle
from emulator.supervisor.containers import container_spec
from emulator.supervisor.failures import Failures
from emulator.supervisor.faults import Faults
from emulator.supervisor.log_collector import LogCollector
from emulator.supervisor.ops import Operations
from emulator.supervisor.pulls import PullManager
from emulator.workers.records import WorkerRecord
from emulator.workers.states import WorkerEvent

log = structlog.get_logger("emulator.supervisor")

STANDBY_RETRY_S = 5.0
STANDBY_IMAGE_RETRY_S = 30.0  # a standby whose image is missing waits for a pull (or this long)
HANG_WORKER_URL = "http://127.0.0.1:9"  # the hang_startup fault: a worker told this never reaches us

_FRESH: dict[str, Any] = dict(
    ready_at=None,
    started_at=None,
    last_seen_at=None,
    last_ping_at=None,
    refresh_requested=False,
    paused=False,
)


class Launcher:
    """Starts workers: ``start`` (new or from standby), ``restart``, ``unthrottle``, ``throttle``.

    Runs its container operations through ``ops`` and reports a start that failed to ``failures``;
    ``worker_url`` (set once the worker listener is bound) is what new containers are told.
    """

    def __init__(
        self,
        core: Core,
        settings: Settings,
        runtime: Runtime,
        instance: str,
        ops: Operations,
        failures: Failures,
        faults: Faults,
        pulls: PullManager,
    ) -> None:
        self.core = core
        self.settings = settings
        self.runtime = runtime
        self.pulls = pulls
        self.instance = instance
        self.ops = ops
        self.failures = failures
        self.faults = faults
        self.worker_url = ""
        self._starts = asyncio.Semaphore(max(1, settings.max_concurrent_starts))
        self._standby_blocked_until: dict[str, float] = {}
        self.collector = LogCollector(core, runtime)

    # --- the actions -----------------------------------------------------------------------------
    def start(self, action: Start | CreateStandby, endpoint: Endpoint) -> None:
        workers = self.core.workers
        if isinstance(action, CreateStandby):
            if self._standby_blocked_until.get(endpoint.id, 0.0) > self.core.clock.monotonic():
                return
            worker = workers.create(
                endpoint.id, endpoint.version, reason="standby (extraWorkers)", standby=True
            )
            self.ops.spawn(worker.id, self._create_standby(worker, endpoint))
            return
        if action.standby_id is not None:
            standby = workers.get(action.standby_id)
            if standby is not None and standby.standby and standby.container_id:
                standby.standby = False
                standby.gpu_ids = list(action.gpu_ids)
                workers.save(standby)
                log.info(
                    "standby worker called up", endpoint=endpoint.id, worker=standby.id, reason=action.reason
                )
                self.ops.spawn(standby.id, self._launch(standby, endpoint, create=False))
                return
        worker = workers.create(endpoint.id, endpoint.version, reason=action.reason)
        worker.gpu_ids = list(action.gpu_ids)
        workers.save(worker)
        log.info(
            "worker wanted", endpoint=endpoint.id, worker=worker.id, reason=action.reason, gpus=action.gpu_ids
        )
        self.ops.spawn(worker.id, self._launch(worker, endpoint, create=True))

    def restart(self, worker: WorkerRecord, action: Restart, endpoint: Endpoint) -> None:
        self.core.workers.apply(
            worker,
            WorkerEvent.RESTART,
            action.reason,
            restarts=worker.restarts + 1,
            next_retry_at=None,
            timings={},
            job_ids=[],
            gpu_ids=list(action.gpu_ids),
            **_FRESH,
        )
        metrics.worker_restarted(self.core, endpoint.id)
        self.ops.spawn(worker.id, self._replace_container(worker, endpoint))

    def unthrottle(self, worker: WorkerRecord, action: Unthrottle, endpoint: Endpoint) -> None:
        if worker.state != WorkerState.THROTTLED:
            return
        self.core.workers.apply(
            worker,
            WorkerEvent.RESTART,
            action.reason,
            next_retry_at=None,
            timings={},
            job_ids=[],
            gpu_ids=list(action.gpu_ids),
            **_FRESH,
        )
        log.info("throttled worker starting", endpoint=endpoint.id, worker=worker.id, gpus=action.gpu_ids)
        self.ops.spawn(worker.id, self._replace_container(worker, endpoint))

    def throttle(self, action: Throttle, endpoint: Endpoint) -> None:
        """A new worker, or a due restart, that does not fit: THROTTLED with the reason, no container."""
        workers = self.core.workers
        if action.worker_id is None:
            worker = workers.create(
                endpoint.id, endpoint.version, state=WorkerState.THROTTLED, reason=action.reason
            )
            worker.reason = action.reason
            workers.save(worker)
            return
        found = workers.get(action.worker_id)
        if found is None:
            return
        worker = found
        if worker.state == WorkerState.THROTTLED:
            worker.reason = action.reason  # capacity changed, the reason with it
            workers.save(worker)
            return
        if worker.state == WorkerState.UNHEALTHY:
            workers.apply(
                worker,
                WorkerEvent.RESTART,
                f"restart {worker.restarts + 1}",
                restarts=worker.restarts + 1,
                next_retry_at=None,
                timings={},
                job_ids=[],
                gpu_ids=[],
                **_FRESH,
            )
            metrics.worker_restarted(self.core, endpoint.id)
        workers.apply(worker, WorkerEvent.THROTTLED, action.reason)

    # --- container operations ------------------------------------------------------------------
    async def _replace_container(self, worker: WorkerRecord, endpoint: Endpoint) -> None:
        old = worker.container_id
        if old:
            await self.runtime.remove(old, force=True)
            worker.container_id = None
            self.core.workers.save(worker)
        await self._launch(worker, endpoint, create=True)

    async def _create_standby(self, worker: WorkerRecord, endpoint: Endpoint) -> None:
        clock = self.core.clock
        try:
            async with self._starts:
                started = clock.monotonic()
                spec = container_spec(
                    self.settings,
                    self.worker_url,
                    endpoint,
                    worker,
                    self.instance,
                    self.core.secrets.values(),
                    self.core.s3,
                )
                container_id = await self.runtime.create(spec)
        except EmulatorError as exc:
            missing = isinstance(exc, ImageNotFound)
            self._standby_blocked_until[endpoint.id] = clock.monotonic() + (
                STANDBY_IMAGE_RETRY_S if missing else STANDBY_RETRY_S
            )
            if missing:  # not pulled yet: a serving worker's start pulls it (and lifts this block)
                log.debug("standby waits for its image", endpoint=endpoint.id, image=endpoint.imageName)
            else:
                log.warning(
                    "standby container not created", endpoint=endpoint.id, worker=worker.id, error=exc.message
                )
            self.core.workers.remove(worker.id, f"standby container not created: {exc.message}")
            return
        worker.container_id = container_id
        worker.timings = {"createS": round(clock.monotonic() - started, 4)}
        self.core.workers.save(worker)
        if self.core.workers.get(worker.id) is not worker:  # removed meanwhile
            await self.runtime.remove(container_id, force=True)
            return
        log.info(
            "standby container created",
            endpoint=endpoint.id,
            worker=worker.id,
            container=container_id[:12],
            create_s=worker.timings["createS"],
        )

    def _wait_for_slot(self, worker: WorkerRecord) -> None:
        if self._starts.locked() and worker.state == WorkerState.INITIALIZING:
            n = self.settings.max_concurrent_starts
            self.core.workers.apply(
                worker,
                WorkerEvent.THROTTLED,
                f"waiting for a start slot: {n} containers are starting (max_concurrent_starts={n})",
            )

    async def _image_for(self, worker: WorkerRecord, endpoint: Endpoint) -> tuple[bool, float | None]:
        """Make sure the endpoint's image is on the engine (pulling it if the policy says so):
        ``(True, seconds pulled or None)``, or ``(False, None)`` with the worker marked failed."""
        workers = self.core.workers
        try:
            pull_s = await self.pulls.ensure(endpoint, worker)
        except asyncio.CancelledError:
            raise
        except ImagePullFailed as exc:
            if workers.get(worker.id) is worker and not worker.stopping:
                self.failures.mark_failed(worker, exc.message, endpoint.backoff)
            return False, None
        except EmulatorError as exc:
            if workers.get(worker.id) is worker and not worker.stopping:
                self.failures.mark_failed(
                    worker, f"could not check its image: {exc.message}", endpoint.backoff
                )
            return False, None
        if pull_s is None:
            worker.pull = None  # no pull for this start
        else:
            self._standby_blocked_until.pop(endpoint.id, None)  # the image is here now
            worker.reason = f"image {endpoint.imageName} pulled in {pull_s:.1f}s"
            workers.save(worker)
        return True, pull_s

    async def _launch(self, worker: WorkerRecord, endpoint: Endpoint, create: bool) -> None:
        """Create (unless a standby) and start the worker's container, timing each step."""
        clock, workers, runtime = self.core.clock, self.core.workers, self.runtime
        pull_s: float | None = None
        if create:
            pulled, pull_s = await self._image_for(worker, endpoint)
            if not pulled or workers.get(worker.id) is not worker or worker.stopping:
                return
        self._wait_for_slot(worker)
        try:
            async with self._starts:
                if workers.get(worker.id) is not worker or worker.stopping:
                    return
                if worker.state == WorkerState.THROTTLED:
                    workers.apply(worker, WorkerEvent.RESTART, "a start slot is free")
                if create:
                    began = clock.monotonic()
                    url = self.worker_url
                    if self.faults.take_hang(worker.id):
                        url = HANG_WORKER_URL
                        log.warning(
                            "hang_startup fault: this start will never make contact", worker=worker.id
                        )
                    spec = container_spec(
                        self.settings,
                        url,
                        endpoint,
                        worker,
                        self.instance,
                        self.core.secrets.values(),
                        self.core.s3,
                    )
                    worker.container_id = await runtime.create(spec)
                    create_s = clock.monotonic() - began
                else:
                    create_s = 0.0  # a standby: created ahead of time
                worker.timings = {"createS": round(create_s, 4)}
                if pull_s is not None:
                    worker.timings["pullS"] = round(pull_s, 4)
                worker.started_at, worker.ready_at = clock.now(), None
                workers.save(worker)
                if workers.get(worker.id) is not worker or worker.stopping:
                    return  # removed while it was being created: the removal takes the container
                began = clock.monotonic()
                assert worker.container_id is not None
                await runtime.start(worker.container_id)
                start_s = clock.monotonic() - began
        except asyncio.CancelledError:
            raise
        except EmulatorError as exc:
            metrics.container_start_failed(self.core, endpoint.id)
            self.failures.mark_failed(
                worker, f"could not start its container: {exc.message}", endpoint.backoff
            )
            return
        metrics.container_started(self.core, endpoint.id, seconds=create_s + start_s)
        if worker.container_id:
            self.collector.follow(endpoint.id, worker.id, worker.container_id)
        worker.timings["startS"] = round(start_s, 4)
        workers.apply(worker, WorkerEvent.STARTED, "container started")
        log.info(
            "worker container started",
            endpoint=endpoint.id,
            worker=worker.id,
            container=(worker.container_id or "")[:12],
            create_s=round(create_s, 4),
            start_s=round(start_s, 4),
            from_standby=not create,
            restarts=worker.restarts,
            gpus=list(worker.gpu_ids),
        )

"""The supervisor as the control plane sees it: start-up (adopt leftovers), shutdown, and the API hooks.

``build_supervisor(core, jobs, settings)`` checks that Docker answers and returns a ``Supervisor``;
``ControlPlane`` then asks it for the workers' network gateway, tells it the worker URL, starts it,
and stops it last. Decisions live in ``policy`` and ``reconcile`` (pure); container work in
``actuator``; the loop in ``loop``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from emulator import gpus
from emulator.config import Settings
from emulator.errors import ContainerNotFound, EmulatorError, GpuUnavailable, NotFound
from emulator.models import Endpoint, WorkerState
from emulator.runtime import GPU_FIX, make_runtime
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.service.jobs import JobService
from emulator.supervisor import faults
from emulator.supervisor.actions import Fail, MarkOutdated, Remove, RemoveContainer
from emulator.supervisor.actuator import Actuator
from emulator.supervisor.containers import instance_id, network_labels, owner_labels
from emulator.supervisor.leftovers import plan_adoption
from emulator.supervisor.loop import ReconcileLoop
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.supervisor")


class Supervisor:
    def __init__(
        self,
        core: Core,
        jobs: JobService,
        settings: Settings,
        runtime: Runtime,
        instance: str,
        owns_runtime: bool = False,
        gpu_inventory: gpus.GpuInventory | None = None,
    ) -> None:
        self.core = core
        self.jobs = jobs
        self.settings = settings
        self.runtime = runtime
        self.instance = instance
        self.actuator = Actuator(core, jobs, settings, runtime, instance)
        self.loop = ReconcileLoop(core, self.actuator, settings, runtime, instance)
        self.gpus = gpu_inventory or gpus.GpuInventory(settings.gpu_mode, (), "not discovered")
        self.loop.gpu_inventory = self.gpus.ids
        core.workers.subscribe(self._worker_changed)
        self._owns_runtime = owns_runtime
        self._gateway: str | None = None
        self._started = False  # adopted what a previous run left: shutdown may remove containers

    # --- what ControlPlane calls ---------------------------------------------------------------
    async def network_gateway(self) -> str:
        """Ensure the workers' Docker network exists (labelled as ours); its gateway address."""
        if self._gateway is None:
            self._gateway = await self.runtime.ensure_network(
                self.settings.network, network_labels(self.instance)
            )
            log.info("worker network ready", network=self.settings.network, gateway=self._gateway)
        return self._gateway

    def set_worker_url(self, url: str) -> None:
        self.actuator.worker_url = url

    async def start(self) -> None:
        """Adopt or remove what a previous run left behind, then run the reconcile loop."""
        await self.network_gateway()  # also when worker_host was given (compose): containers join it
        await self.adopt()
        self.loop.start()
        log.info("supervisor started", instance=self.instance, network=self.settings.network)

    async def adopt(self) -> None:
        containers = await self.runtime.list(owner_labels(self.instance))
        versions = {e.id: e.version for e in self.core.endpoints.list()}
        actions = plan_adoption(containers, self.core.workers.all(), versions)
        adopted = 0
        for action in actions:
            if isinstance(action, RemoveContainer):
                log.info(
                    "removing a leftover container", container=action.container_id[:12], reason=action.reason
                )
                await self.runtime.remove(action.container_id, force=True)
            elif isinstance(action, Remove):
                self.jobs.worker_lost(action.worker_id, action.reason)
                self.core.workers.remove(action.worker_id, action.reason)
            else:
                adopted += 1
                self.actuator.run(action, None)
        self._started = True  # from here on, this instance's containers are ours to remove at shutdown
        if containers or actions:
            log.info(
                "leftovers handled",
                found=len(containers),
                adopted=adopted,
                other_actions=len(actions) - adopted,
            )

    async def stop(self) -> None:
        """Stop the loop; unless keep_workers, drain and remove every worker container of this control plane."""
        await self.loop.stop()
        await self.actuator.wait_ops(timeout_s=self.settings.stop_grace_s + 5)
        await self.actuator.cancel_all()
        try:
            if not self._started:
                log.info("supervisor stopped before it started: containers left as they are")
            elif not self.settings.keep_workers:
                workers = [w for w in self.core.workers.all() if w.kind == "container"]
                await self._drain_and_remove(workers, "the control plane is shutting down")
                for container in await self.runtime.list(owner_labels(self.instance)):
                    await self.runtime.remove(container.id, force=True)
            else:
                log.info("leaving worker containers running (keep_workers)")
        except EmulatorError as exc:
            log.warning("could not remove every worker container at shutdown", error=exc.message)
        finally:
            await self.actuator.launcher.collector.close()
            if self._owns_runtime:
                close = getattr(self.runtime, "close", None)
                if close is not None:
                    await close()
        log.info("supervisor stopped")

    async def tick(self) -> None:
        """One reconcile pass (tests drive the supervisor with this instead of the loop)."""
        await self.loop.tick()

    async def settle(self, timeout_s: float = 30.0) -> None:
        """Wait for every container operation in flight to end."""
        await self.actuator.wait_ops(timeout_s=timeout_s)

    # --- SupervisorHooks (the API) ---------------------------------------------------------------
    async def validate_endpoint(self, endpoint: Endpoint) -> None:
        """GPUs asked for must be there (GpuUnavailable naming the fix). A missing image is no error: its
        workers pull it (``image_status`` says so in the answer)."""
        if endpoint.gpuCount > 0:
            await self._validate_gpus(endpoint.gpuCount)

    async def _validate_gpus(self, count: int) -> None:
        if self.runtime.capabilities.places_workers:  # the cluster counts GPUs: no inventory of ours
            if not await self.runtime.gpu_runtime_available():
                raise GpuUnavailable(
                    f"gpuCount is {count} but no node of the cluster offers GPUs (no node has "
                    f"nvidia.com/gpu allocatable: is NVIDIA's device plugin running?)",
                    field="gpuCount",
                )
            return
        inventory = self.gpus
        if inventory.mode == "off":
            raise GpuUnavailable(
                f"gpuCount is {count} but GPUs are turned off (EMULATOR_GPU_MODE=off); set "
                f"EMULATOR_GPU_MODE=auto for real GPUs or EMULATOR_GPU_MODE=emulate to emulate them",
                field="gpuCount",
            )
        if inventory.mode == "auto" and not await self.runtime.gpu_runtime_available():
            raise GpuUnavailable(
                f"gpuCount is {count} but this Docker engine has no NVIDIA runtime (`docker info` lists no "
                f"'nvidia' runtime and there are no CDI device specs), so it would refuse the GPU device "
                f"requests. To fix: {GPU_FIX}. (EMULATOR_GPU_MODE=nvidia makes the device requests anyway: "
                f"the engine's own refusal then shows in the worker's reason.)",
                field="gpuCount",
            )
        if len(inventory.ids) < count:
            hint = (
                "set EMULATOR_EMULATED_GPUS=N"
                if inventory.mode == "emulate"
                else "set EMULATOR_GPUS=0,1,... to the device ids to use"
            )
            raise GpuUnavailable(
                f"gpuCount is {count} but the GPU inventory has {len(inventory.ids)} "
                f"({inventory.describe()}); {hint}",
                field="gpuCount",
            )

    async def image_status(self, endpoint: Endpoint) -> dict[str, Any]:
        """``{"local", "pullPolicy", "message"}`` for create and update answers; RuntimeUnavailable if
        Docker is down."""
        return await self.actuator.pulls.status(endpoint)

    async def refresh_image(self, endpoint: Endpoint) -> dict[str, Any]:
        """Pull the endpoint's image now (``POST /v1/endpoints/{id}/update``): ``{"pulled", "changed", …}``.
        A changed image is rolled out by the caller as a new version."""
        return await self.actuator.pulls.refresh(endpoint)

    async def inject_fault(self, worker_id: str, kind: faults.FaultKind, duration_s: float) -> dict[str, Any]:
        """``POST /v1/workers/{id}/faults``: see ``emulator.supervisor.faults``."""
        worker = self.core.workers.get(worker_id)
        if worker is None:
            raise NotFound(f"worker {worker_id!r} does not exist", worker=worker_id)
        answer = await faults.inject(
            worker,
            kind,
            duration_s,
            faults=self.actuator.faults,
            runtime=self.actuator.runtime,
            clock=self.core.clock,
            evict=self.actuator.evict_throttled,
            wake=self.actuator.ops.on_done,
        )
        self.loop.poke()
        return answer

    def _worker_changed(self, worker: WorkerRecord, old: WorkerState | None, reason: str) -> None:
        """Edges the level-triggered loop would only see on its next tick:

        * a worker that reported itself unhealthy (a ping) is stopped and restarted with back-off;
        * the first ready worker of a new version: old workers stop taking jobs at once (OUTDATED),
          so that new jobs go to updated workers (see ``rollout``).
        """
        if worker.kind != "container":
            return
        endpoint = self.core.endpoints.get(worker.endpoint_id)
        if (
            worker.state == WorkerState.UNHEALTHY
            and old != WorkerState.UNHEALTHY
            and reason.startswith("worker reported itself unhealthy")
        ):
            self.actuator.run(Fail(worker.id, reason, kill=True), endpoint)
        elif (
            endpoint is not None
            and worker.state == WorkerState.IDLE
            and old == WorkerState.INITIALIZING
            and worker.version == endpoint.version
        ):
            for other in self.core.workers.for_endpoint(endpoint.id):
                if (
                    other.kind == "container"
                    and other.version < endpoint.version
                    and other.state in (WorkerState.IDLE, WorkerState.RUNNING)
                    and not other.stopping
                    and not other.standby
                ):
                    text = (
                        f"endpoint version {endpoint.version} replaces version {other.version}; "
                        f"waits its turn in the rolling update"
                    )
                    self.actuator.run(MarkOutdated(other.id, text, replacing=False), endpoint)

    def endpoint_changed(self, endpoint: Endpoint) -> None:
        self.loop.poke()

    async def endpoint_deleted(self, endpoint: Endpoint) -> None:
        """Drain the endpoint's workers (up to stop_grace_s for their jobs), then remove them."""
        self.loop.deleting.add(endpoint.id)
        try:
            workers = [w for w in self.core.workers.for_endpoint(endpoint.id) if w.kind == "container"]
            await self._drain_and_remove(workers, "endpoint deleted")
        finally:
            self.loop.deleting.discard(endpoint.id)
            self.loop.poke()

    def runtime_status(self) -> dict[str, object]:
        """Whether the container runtime answers (shown with the workers list)."""
        return self.loop.runtime_status()

    async def worker_logs(self, worker_id: str, tail: int) -> str:
        worker = self.core.workers.get(worker_id)
        if worker is None or not worker.container_id:
            return ""
        try:
            return await self.runtime.logs(worker.container_id, tail=tail)
        except ContainerNotFound:
            return ""

    # --- helpers ---------------------------------------------------------------------------------
    async def _drain_and_remove(self, workers: list[WorkerRecord], reason: str) -> None:
        for w in workers:
            self.actuator.mark_stopping(w)
        await self.actuator.wait_ops({w.id for w in workers})
        await self._wait_jobs_done(workers, self.settings.stop_grace_s)
        results = await asyncio.gather(
            *(self.actuator.remove_now(w, reason) for w in workers), return_exceptions=True
        )
        for w, result in zip(workers, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not remove a worker", worker=w.id, error=str(result))

    async def _wait_jobs_done(self, workers: list[WorkerRecord], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()  # real time: a grace period is waited for, not simulated
        deadline = loop.time() + timeout_s
        while any(w.job_ids and self.core.workers.get(w.id) is w for w in workers):
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "workers still hold jobs after the grace period; their jobs are requeued",
                    workers=[w.id for w in workers if w.job_ids],
                )
                return
            await self.core.hub.wait_for_change(min(remaining, 0.25))


async def build_supervisor(
    core: Core, jobs: JobService, settings: Settings, runtime: Runtime | None = None
) -> Supervisor:
    """A Supervisor on ``runtime`` (default: Docker). Raises RuntimeUnavailable when Docker does not answer."""
    owns = runtime is None
    if runtime is not None:
        chosen: Any = runtime
    elif settings.runtime == "kubernetes":
        chosen = make_runtime("kubernetes", **settings.kube_options())
    else:
        chosen = make_runtime("docker")
    try:
        await chosen.ping()
    except BaseException:
        if owns and hasattr(chosen, "close"):
            await chosen.close()
        raise
    inventory = await asyncio.to_thread(gpus.discover, settings)
    if inventory.ids or settings.gpu_mode != "auto":
        log.info("GPU inventory", mode=inventory.mode, gpus=list(inventory.ids), source=inventory.source)
    return Supervisor(
        core, jobs, settings, chosen, instance_id(core.jobs.conn), owns_runtime=owns, gpu_inventory=inventory
    )

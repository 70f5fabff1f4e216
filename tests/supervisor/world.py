"""A deterministic world for supervisor tests: FakeClock, FakeRuntime, the real store and services,
and simulated workers that speak to ``WorkerProtocol`` directly (what worker_sdk does over HTTP).

``await world.step(advance_s)`` moves the clock, lets every ready worker ping, finish and take jobs,
then runs one reconcile tick and waits for the container operations it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.clock import FakeClock
from emulator.config import Settings
from emulator.models import Endpoint, EndpointSpec, JobRequest, WorkerState
from emulator.runtime.base import LABEL_WORKER
from emulator.runtime.fake import FakeContainer, FakeRuntime
from emulator.service.core import Core, build_core, job_service
from emulator.service.jobs import JobService
from emulator.service.worker_protocol import WorkerProtocol
from emulator.store.records import JobRecord
from emulator.supervisor.supervisor import Supervisor, build_supervisor
from emulator.workers.records import WorkerRecord

IMAGE = "fake/echo:latest"


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        data_dir=data_dir,
        port=0,
        runtime="docker",
        network="se-test-net",
        reconcile_interval_s=0.01,
        worker_lost_after_s=10.0,
        startup_timeout_s=30.0,
        stop_grace_s=0.2,
        job_take_hold_s=0.2,
        max_concurrent_starts=4,
    )
    base.update(overrides)
    return Settings(**base)


@dataclass
class SimWorker:
    """What a worker process does, per container: which jobs it holds and when each finishes."""

    container_id: str
    finishing: dict[str, float] = field(default_factory=dict)  # job id -> when it completes
    silent: bool = False  # stops pinging and polling (a hung process)


class World:
    def __init__(
        self, core: Core, jobs: JobService, sup: Supervisor, fake: FakeRuntime, clock: FakeClock
    ) -> None:
        self.core, self.jobs, self.sup, self.fake, self.clock = core, jobs, sup, fake, clock
        self.ops = WorkerProtocol(core, jobs)
        self.sims: dict[str, SimWorker] = {}
        self.taken_by: dict[str, list[str]] = {}  # job id -> workers that took it

    @classmethod
    async def create(
        cls, data_dir: Path, fake: FakeRuntime | None = None, clock: FakeClock | None = None, **overrides: Any
    ) -> World:
        clock = clock or FakeClock()
        fake = fake or FakeRuntime(clock=clock)
        settings = settings_for(data_dir, **overrides)
        core = build_core(settings, clock)
        jobs = job_service(core)
        sup = await build_supervisor(core, jobs, settings, runtime=fake)
        await sup.network_gateway()
        sup.set_worker_url("http://172.30.0.1:8001")
        await sup.adopt()
        return cls(core, jobs, sup, fake, clock)

    # --- the test's verbs --------------------------------------------------------------------
    def endpoint(self, **fields: Any) -> Endpoint:
        data: dict[str, Any] = {
            "name": fields.get("id", "ep"),
            "id": "ep",
            "imageName": IMAGE,
            "extraWorkers": 0,
        }
        data.update(fields)
        spec = EndpointSpec.model_validate(data)
        endpoint = Endpoint.model_validate(spec.model_dump() | {"version": 1, "createdAt": self.clock.now()})
        self.core.endpoints.create(endpoint)
        return endpoint

    def update(self, endpoint_id: str, **fields: Any) -> Endpoint:
        from emulator.models import EndpointPatch

        current = self.core.endpoints.require(endpoint_id)
        updated, _ = current.apply_patch(EndpointPatch.model_validate(fields))
        self.core.endpoints.save(updated)
        return updated

    def submit(self, endpoint_id: str = "ep", n: int = 1, **job_input: Any) -> list[JobRecord]:
        endpoint = self.core.endpoints.require(endpoint_id)
        low = bool(job_input.pop("lowPriority", False))
        request = JobRequest.model_validate({"input": job_input or {"x": 1}, "policy": {"lowPriority": low}})
        return [self.jobs.submit(endpoint, request, sync=False) for _ in range(n)]

    def job(self, job_id: str) -> JobRecord:
        job = self.core.jobs.get(job_id)
        assert job is not None
        return job

    def workers(self, endpoint_id: str = "ep", standby: bool | None = False) -> list[WorkerRecord]:
        out = [
            w for w in self.core.workers.for_endpoint(endpoint_id) if standby is None or w.standby == standby
        ]
        return sorted(out, key=lambda w: (w.created_at, w.id))

    def states(self, endpoint_id: str = "ep") -> list[str]:
        return sorted(w.state.value for w in self.workers(endpoint_id))

    def container_of(self, worker: WorkerRecord) -> FakeContainer:
        assert worker.container_id is not None
        return self.fake.containers[worker.container_id]

    def live_containers(self) -> list[FakeContainer]:
        return [c for c in self.fake.containers.values() if c.status in ("running", "paused")]

    async def step(self, advance_s: float = 0.0, ticks: int = 1) -> None:
        self.clock.advance(advance_s)
        for _ in range(ticks):
            await self.act_workers()
            await self.sup.tick()
            await self.sup.settle(5)
            await self.act_workers()

    async def run_until(self, predicate: Any, step_s: float = 0.1, max_steps: int = 400) -> None:
        for _ in range(max_steps):
            if predicate():
                return
            await self.step(step_s)
        raise AssertionError("the world never reached the expected state")

    # --- simulated worker processes -----------------------------------------------------------
    async def act_workers(self) -> None:
        now = self.clock.now()
        for container in list(self.fake.containers.values()):
            sim = self.sims.setdefault(container.id, SimWorker(container.id))
            if container.status != "running" or not container.ready or sim.silent:
                continue
            worker = self.core.workers.get(container.spec.labels.get(LABEL_WORKER, ""))
            if worker is None or worker.container_id != container.id:
                continue
            self.ops.ping(worker, list(sim.finishing), None, None)
            for job_id, due in sorted(sim.finishing.items(), key=lambda kv: kv[1]):
                if due <= now:
                    del sim.finishing[job_id]
                    job = self.core.jobs.get(job_id)
                    body: dict[str, Any] = {"output": {"done": True, "by": worker.id}}
                    if job is not None and isinstance(job.input, dict) and job.input.get("stopPod"):
                        body["stopPod"] = True
                    if job is not None and not job.status.terminal:
                        self.ops.done(worker, job_id, body)
            if sim.finishing or worker.state == WorkerState.UNHEALTHY:
                continue
            for handed in await self.ops.take(worker, 1, 0):
                self.taken_by.setdefault(handed["id"], []).append(worker.id)
                seconds = float((handed.get("input") or {}).get("seconds", 0))
                sim.finishing[handed["id"]] = now + seconds


def state_now(worker: WorkerRecord) -> WorkerState:
    """The record's state at this moment.

    The supervisor changes a live record between steps; after ``assert w.state == A`` mypy would
    keep ``w.state`` narrowed to ``A`` across the ``await world.step()``, so later reads go through here.
    """
    return worker.state

"""Every write of the services publishes its wake-ups through ``Hub.publish``, once, naming what changed.

A recording hub stands in for the real one: it records each ``Change`` and flags any low-level wake-up
(``job_changed``, ``work_available``, ``stop_available``, ``wake_all_takers``, ``changed``) called from
outside ``publish``. A write that forgets to publish leaves a long poll waiting out its whole hold, which
no other test can see except by timing; here it fails by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.config import default_settings_for_tests
from emulator.errors import BadRequest
from emulator.models import EndpointPatch, EndpointSpec, JobRequest, JobStatus
from emulator.service.core import Core, build_core, job_service
from emulator.service.endpoints import EndpointService
from emulator.service.hub import Change, Hub
from emulator.service.worker_protocol import WorkerProtocol

LOW_LEVEL = ("job_changed", "work_available", "stop_available", "wake_all_takers", "changed")


class RecordingHub(Hub):
    """A real hub that records what is published and any wake-up that bypasses ``publish``."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[Change] = []
        self.bypassed: list[str] = []
        self._publishing = False

    def publish(self, change: Change) -> None:
        self.published.append(change)
        self._publishing = True
        try:
            super().publish(change)
        finally:
            self._publishing = False

    def take(self) -> list[Change]:
        taken, self.published = self.published, []
        return taken

    def __getattribute__(self, name: str) -> Any:
        if name in LOW_LEVEL and not object.__getattribute__(self, "_publishing"):
            object.__getattribute__(self, "bypassed").append(name)
        return object.__getattribute__(self, name)


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    built = build_core(default_settings_for_tests(tmp_path / "data"))
    built.hub = RecordingHub()
    yield built
    built.close()


def hub_of(core: Core) -> RecordingHub:
    assert isinstance(core.hub, RecordingHub)
    return core.hub


async def test_every_job_and_endpoint_write_publishes(core: Core) -> None:
    hub = hub_of(core)
    jobs = job_service(core)
    protocol = WorkerProtocol(core, jobs)
    endpoints = EndpointService(core.endpoints, core.workers, core.jobs, core.hub, core.clock)

    endpoint = await endpoints.create(EndpointSpec.model_validate({"name": "e", "id": "e", "imageName": "x"}))
    assert hub.take() == [Change("e")]
    endpoint = await endpoints.update("e", EndpointPatch.model_validate({"workersMax": 2}))
    assert hub.take() == [Change("e")]

    first = jobs.submit(endpoint, JobRequest.model_validate({"input": 1}), sync=False)
    assert hub.take() == [Change("e", queued=1)]

    worker = core.workers.create("e", endpoint.version, kind="external", reason="test")
    handed = await protocol.take(worker, 1, 0.0)
    assert [j["id"] for j in handed] == [first.id]
    assert Change("e", jobs=(first.id,)) in hub.take()

    protocol.done(worker, first.id, {"status": "IN_PROGRESS", "output": "half"})
    assert hub.take() == [Change("e", jobs=(first.id,), counted=False)]
    protocol.stream_chunk(worker, first.id, {"output": "a chunk"})
    assert hub.take() == [Change("e", jobs=(first.id,), counted=False)]
    protocol.done(worker, first.id, {"error": "boom"})
    assert Change("e", jobs=(first.id,)) in hub.take()

    jobs.retry("e", first.id)
    assert hub.take() == [Change("e", jobs=(first.id,), queued=1)]
    cancelled = jobs.cancel("e", first.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert hub.take() == [Change("e", jobs=(first.id,))]

    queued = jobs.submit(endpoint, JobRequest.model_validate({"input": 2}), sync=False)
    hub.take()
    assert jobs.purge("e") == 1
    assert hub.take() == [Change("e", jobs=(queued.id,))]

    held = jobs.submit(endpoint, JobRequest.model_validate({"input": 3}), sync=False)
    hub.take()
    await protocol.take(worker, 1, 0.0)
    hub.take()
    assert jobs.worker_lost(worker.id, "gone") == 1
    assert hub.take() == [Change("e", jobs=(held.id,), queued=1)]

    await endpoints.delete("e")
    changes = hub.take()
    assert len(changes) == 1 and changes[0].takers_recheck and held.id in changes[0].jobs

    assert hub.bypassed == [], f"wake-ups outside Hub.publish: {hub.bypassed}"


async def test_an_execution_timeout_publishes_the_stop(core: Core) -> None:
    hub = hub_of(core)
    jobs = job_service(core)
    protocol = WorkerProtocol(core, jobs)
    endpoints = EndpointService(core.endpoints, core.workers, core.jobs, core.hub, core.clock)
    endpoint = await endpoints.create(EndpointSpec.model_validate({"name": "t", "id": "t", "imageName": "x"}))
    job = jobs.submit(
        endpoint, JobRequest.model_validate({"input": 1, "policy": {"executionTimeout": 5000}}), sync=False
    )
    worker = core.workers.create("t", endpoint.version, kind="external", reason="test")
    await protocol.take(worker, 1, 0.0)
    hub.take()
    core.jobs.conn.execute(  # (the execution timeout counts from the first start)
        "UPDATE jobs SET started_at = started_at - 60, first_started_at = first_started_at - 60 WHERE id = ?",
        (job.id,),
    )
    jobs.sweep()
    assert Change("t", jobs=(job.id,), stopped_workers=(worker.id,)) in hub.take()
    assert hub.bypassed == [], f"wake-ups outside Hub.publish: {hub.bypassed}"


async def test_drops_ended_jobs_and_refused_posts_publish(core: Core) -> None:
    """#13: a ping that drops a job or lets go of an ended one frees the worker (held job-takes
    re-check); a refused post changes the job's record (its waiters re-read)."""
    hub = hub_of(core)
    jobs = job_service(core)
    protocol = WorkerProtocol(core, jobs)
    endpoints = EndpointService(core.endpoints, core.workers, core.jobs, core.hub, core.clock)
    endpoint = await endpoints.create(EndpointSpec.model_validate({"name": "d", "id": "d", "imageName": "x"}))
    worker = core.workers.create("d", endpoint.version, kind="external", reason="test")

    dropped = jobs.submit(endpoint, JobRequest.model_validate({"input": 1}), sync=False)
    await protocol.take(worker, 1, 0.0)
    protocol.ping(worker, [dropped.id], None, None)
    hub.take()
    protocol.ping(worker, [], None, None)
    assert hub.take() == [Change("d", jobs=(dropped.id,), takers_recheck=True)]

    refused = jobs.submit(endpoint, JobRequest.model_validate({"input": 2}), sync=False)
    await protocol.take(worker, 1, 0.0)
    hub.take()
    with pytest.raises(BadRequest, match="payload limit"):
        protocol.done(worker, refused.id, {"output": "x"}, size_bytes=core.settings.max_run_body_bytes + 1)
    assert hub.take() == [Change("d", jobs=(refused.id,))]

    protocol.ping(worker, [refused.id], None, None)
    jobs.cancel("d", refused.id)
    assert core.workers.get(worker.id).ending  # type: ignore[union-attr]
    hub.take()
    protocol.ping(worker, [], None, None)
    assert hub.take() == [Change("d", takers_recheck=True)]
    assert hub.bypassed == [], f"wake-ups outside Hub.publish: {hub.bypassed}"

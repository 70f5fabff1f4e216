"""Rolling updates against FakeRuntime and a FakeClock: the budget under steady load, who serves while a
rollout runs, a halted rollout (the new version's workers fail to start), and the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator.models import Endpoint, EndpointPatch, JobStatus, WorkerState
from emulator.store.records import JobRecord
from emulator.supervisor import rollout
from tests.supervisor.world import IMAGE, World

S = WorkerState
BROKEN = "fake/broken:latest"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path / "data")
    yield w
    await w.sup.stop()
    w.core.close()


def patch(world: World, **fields: Any) -> Endpoint:
    """What PATCH /v1/endpoints/{id} does to the stored endpoint (a version bump clears ``rollout``)."""
    current = world.core.endpoints.require("ep")
    updated, bumped = current.apply_patch(EndpointPatch.model_validate(fields))
    if bumped:
        updated = updated.model_copy(update={"rollout": None})
    world.core.endpoints.save(updated)
    return updated


def in_flight(world: World) -> int:
    """Replacements in progress, as an observer of the workers list sees them."""
    version = world.core.endpoints.require("ep").version
    workers = world.workers()
    draining = sum(1 for w in workers if w.version < version and w.stopping)
    starting = sum(
        1
        for w in workers
        if w.version == version and w.state in (S.INITIALIZING, S.UNHEALTHY) and not w.stopping
    )
    return max(draining, starting)


async def test_ten_workers_roll_under_steady_load_within_the_budget_and_no_job_fails(world: World) -> None:
    world.endpoint(workersMin=10, workersMax=10)
    await world.step()
    await world.step()
    assert world.states() == ["IDLE"] * 10
    jobs: list[JobRecord] = []
    for _ in range(3):
        jobs += world.submit(n=4, seconds=0.3)
        await world.step(0.1)
    endpoint = patch(world, env={"RELEASE": "2"})
    assert endpoint.version == 2 and rollout.budget(endpoint) == 1
    peak, steps = 0, 0
    while any(w.version == 1 for w in world.workers()) or in_flight(world):
        steps += 1
        assert steps < 400, "the rollout never finished"
        jobs += world.submit(n=2, seconds=0.3)  # steady load
        await world.step(0.1)
        peak = max(peak, in_flight(world))
        assert in_flight(world) <= 1
        serving_new = any(w.version == 2 and w.state in (S.IDLE, S.RUNNING) for w in world.workers())
        for w in world.workers():
            if w.version == 1 and serving_new:
                assert w.state == S.OUTDATED and not world.core.workers.may_take(w)
    assert peak == 1
    for _ in range(20):
        await world.step(0.5)
    statuses = [world.job(j.id).status for j in jobs]
    assert statuses.count(JobStatus.COMPLETED) == len(jobs), statuses
    assert sorted(w.version for w in world.workers()) == [2] * 10
    assert world.core.endpoints.require("ep").rollout == {"status": "completed", "version": 2}
    assert len(world.live_containers()) == 10


async def test_old_workers_serve_until_a_new_worker_is_ready_then_new_jobs_go_to_new_workers(
    world: World,
) -> None:
    world.endpoint(workersMin=3, workersMax=3)
    await world.step()
    old = world.workers()
    world.fake.hang_startup(IMAGE)  # the new version's first worker takes its time to become ready
    patch(world, env={"RELEASE": "2"})
    await world.step()
    states = {w.id: w.state for w in old}
    assert sorted(states.values()) == [S.IDLE, S.IDLE, S.OUTDATED]  # one picked, two still serving
    (job,) = world.submit()
    await world.step()
    assert world.job(job.id).status == JobStatus.COMPLETED and world.job(job.id).worker_id in states
    rolling = world.core.endpoints.require("ep").rollout or {}
    assert rolling["status"] == "rolling" and rolling["budget"] == 1
    (new,) = [w for w in world.workers() if w.version == 2]
    world.fake.make_ready(new.container_id or "")
    await world.step()
    assert all(w.state == S.OUTDATED for w in world.workers() if w.version == 1)
    (job,) = world.submit()
    await world.step()
    assert world.job(job.id).worker_id == new.id


async def test_a_new_version_that_fails_to_start_halts_the_rollout_and_old_workers_keep_serving(
    world: World,
) -> None:
    world.fake.set_image_behavior(BROKEN, exit_code=3, logs=("ImportError: no module named 'torch'",))
    world.endpoint(workersMin=4, workersMax=4, backoff={"initialDelayS": 1})
    await world.step()
    patch(world, imageName=BROKEN)
    for _ in range(10):
        await world.step(0.5)
    halted = world.core.endpoints.require("ep").rollout or {}
    assert halted["status"] == "halted" and halted["version"] == 2
    assert "fail to start" in halted["reason"] and "exited with code 3" in halted["reason"]
    assert "no module named 'torch'" in halted["reason"]
    old = [w for w in world.workers() if w.version == 1]
    assert len(old) == 3 and all(w.state == S.IDLE for w in old)  # one was replaced, the rest serve
    jobs = world.submit(n=6, seconds=0.2)
    for _ in range(5):
        await world.step(0.5)
    assert all(world.job(j.id).status == JobStatus.COMPLETED for j in jobs)
    assert {world.job(j.id).worker_id for j in jobs} <= {w.id for w in old}
    # a later PATCH fixes it: the halt is cleared and the rollout completes
    assert patch(world, imageName=IMAGE).rollout is None
    for _ in range(80):
        await world.step(0.5)
        if (world.core.endpoints.require("ep").rollout or {}).get("status") == "completed":
            break
    assert world.core.endpoints.require("ep").rollout == {"status": "completed", "version": 3}
    assert sorted((w.version, w.state.value) for w in world.workers()) == [(3, "IDLE")] * 4


async def test_a_new_flex_worker_failing_to_start_does_not_let_the_rollout_replace_everything(
    world: World,
) -> None:
    world.fake.set_image_behavior(BROKEN, exit_code=1)
    world.endpoint(workersMin=0, workersMax=3, idleTimeout=600, scalerValue=0.1)
    world.submit(n=3, seconds=0.1)
    for _ in range(4):
        await world.step(0.5)
    assert sorted(w.state.value for w in world.workers()) == ["IDLE"] * 3
    patch(world, imageName=BROKEN)
    for _ in range(30):
        await world.step(1.0)
    assert (world.core.endpoints.require("ep").rollout or {}).get("status") == "halted"
    assert sum(1 for w in world.workers() if w.version == 1) == 2  # only the first was ever replaced

"""The supervisor's scenarios against FakeRuntime and a FakeClock: the same stories as
tests/integration/test_supervisor_docker.py, in milliseconds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.clock import FakeClock
from emulator.models import JobStatus, WorkerState
from emulator.runtime.base import LABEL_ENDPOINT, LABEL_INSTANCE, LABEL_VERSION, LABEL_WORKER, ContainerSpec
from emulator.runtime.fake import FakeRuntime
from tests.supervisor.world import IMAGE, World, state_now

S = WorkerState


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path / "data")
    yield w
    await w.sup.stop()
    w.core.close()


async def test_scales_from_zero_under_load_and_back_to_min_after_idle_timeout(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=3, scalerType="QUEUE_DELAY", scalerValue=1, idleTimeout=5)
    jobs = world.submit(n=6, seconds=2)
    await world.step()
    assert len(world.workers()) == 1  # scaled to zero: the first job starts one worker at once
    await world.step(1.5)
    assert len(world.workers()) == 3  # as many as the queue needs, capped at workersMax
    peak = 0
    for _ in range(40):
        await world.step(0.5)
        peak = max(peak, len(world.workers()))
        if all(world.job(j.id).status == JobStatus.COMPLETED for j in jobs):
            break
    assert peak == 3
    assert all(world.job(j.id).status == JobStatus.COMPLETED for j in jobs)
    assert world.states() == ["IDLE"] * 3
    await world.step(1.0)
    assert len(world.workers()) >= 2  # the workers that finished last have not been idle 5 s yet
    await world.step(5.5)
    assert world.workers() == []
    assert world.live_containers() == []
    assert world.fake.containers == {}


async def test_workers_min_is_kept_and_a_crashed_worker_replaced(world: World) -> None:
    world.endpoint(workersMin=2, workersMax=3, idleTimeout=1)
    await world.step()
    await world.step()
    assert world.states() == ["IDLE", "IDLE"]
    await world.step(100)
    assert world.states() == ["IDLE", "IDLE"]  # idleTimeout never takes workers below workersMin
    victim = world.workers()[0]
    world.fake.crash(victim.container_id or "", exit_code=139)
    await world.step()
    assert victim.state == S.UNHEALTHY
    assert "segmentation fault (exit 139)" in (victim.reason or "")
    await world.step()
    await world.step()
    assert world.states() == ["IDLE", "IDLE"]
    assert victim.restarts == 1
    assert len(world.live_containers()) == 2


async def test_killed_worker_mid_job_requeues_and_job_completes_elsewhere(world: World) -> None:
    world.endpoint(workersMin=2, workersMax=2)
    await world.step()
    await world.step()
    (job,) = world.submit(seconds=5)
    await world.step()
    first = world.job(job.id).worker_id
    assert first is not None and world.job(job.id).status == JobStatus.IN_PROGRESS
    holder = world.core.workers.get(first)
    assert holder is not None and holder.state == S.RUNNING
    await world.fake.kill(holder.container_id or "")
    await world.step()
    assert state_now(holder) == S.UNHEALTHY
    assert "killed (exit 137" in (holder.reason or "")
    await world.step(5.1)
    await world.step()
    done = world.job(job.id)
    assert done.status == JobStatus.COMPLETED
    assert done.retries == 1
    assert done.worker_id != first
    assert world.taken_by[job.id][0] == first and world.taken_by[job.id][-1] == done.worker_id


async def test_control_plane_restart_adopts_running_workers_and_leaks_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    fake = FakeRuntime(clock=clock)
    first = await World.create(tmp_path / "data", fake=fake, clock=clock)
    first.endpoint(workersMin=2, workersMax=3)
    await first.step()
    await first.step()
    before = {w.id: w.container_id for w in first.workers()}
    assert len(before) == 2 and all(before.values())
    tokens = {w.id: w.token for w in first.workers()}
    # a "SIGKILL": the first control plane just stops existing (no shutdown, no cleanup)
    await first.sup.loop.stop()
    first.core.close()
    # a container of ours without a record, and one of somebody else's, were left on the engine
    stray = await fake.create(
        ContainerSpec(
            name="stray",
            image=IMAGE,
            env={},
            labels={
                LABEL_INSTANCE: first.sup.instance,
                LABEL_WORKER: "ghost",
                LABEL_ENDPOINT: "ep",
                LABEL_VERSION: "1",
            },
        )
    )
    foreign = await fake.create(
        ContainerSpec(name="foreign", image=IMAGE, env={}, labels={LABEL_INSTANCE: "other"})
    )
    clock.advance(60)  # longer than worker_lost_after_s: adoption must not count the downtime

    second = await World.create(tmp_path / "data", fake=fake, clock=clock)
    assert second.sup.instance == first.sup.instance
    assert {w.id: w.container_id for w in second.workers()} == before
    assert {w.id: w.token for w in second.workers()} == tokens
    assert stray not in fake.containers
    assert foreign in fake.containers
    await second.step()
    await second.step(1)
    assert second.states() == ["IDLE", "IDLE"]
    assert {w.id: w.container_id for w in second.workers()} == before
    (job,) = second.submit()
    await second.step()
    await second.step()
    assert second.job(job.id).status == JobStatus.COMPLETED
    await second.sup.stop()
    assert set(fake.containers) == {foreign}
    second.core.close()


async def test_startup_timeout_reason_shows_the_last_log_lines(tmp_path: Path) -> None:
    world = await World.create(tmp_path / "data", startup_timeout_s=3)
    try:
        world.fake.hang_startup(IMAGE)
        world.fake.set_image_behavior(IMAGE, logs=("loading weights 1/2", "loading weights 2/2 (slow disk)"))
        world.endpoint(workersMin=1, workersMax=1)
        await world.step()
        (worker,) = world.workers()
        assert worker.state == S.INITIALIZING
        await world.step(2)
        assert worker.state == S.INITIALIZING
        await world.step(1.5)
        assert state_now(worker) == S.UNHEALTHY
        assert "start-up timed out" in (worker.reason or "")
        assert "loading weights 2/2 (slow disk)" in (worker.reason or "")
        assert world.container_of(worker).status == "exited"  # killed, kept for its logs
    finally:
        await world.sup.stop()
        world.core.close()

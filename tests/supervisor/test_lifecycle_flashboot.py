"""FlashBoot against FakeRuntime and a FakeClock: idle workers are paused instead of removed, reported
IDLE with ``paused: true``, take no job while paused, are resumed when work arrives (the job's cold-start
breakdown shows ``resumeMs``), and are removed after ``flashboot_pause_s``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator import wire
from emulator.models import JobStatus, WorkerState
from tests.supervisor.world import World

S = WorkerState


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path / "data", flashboot_pause_s=60)
    yield w
    await w.sup.stop()
    w.core.close()


async def test_an_idle_flashboot_worker_is_paused_then_resumed_for_the_next_job(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=2, idleTimeout=2, flashboot=True)
    (first,) = world.submit()
    await world.step()
    await world.step()
    assert world.job(first.id).status == JobStatus.COMPLETED
    (w,) = world.workers()
    await world.step(2.5)
    assert w.paused and w.state == S.IDLE and world.container_of(w).status == "paused"
    public = wire.worker_public(w, 1, world.clock.now())
    assert public["status"] == "IDLE" and public["paused"] is True
    assert not world.core.workers.may_take(w)
    creates = len(world.fake.calls_to("create"))

    (job,) = world.submit()
    await world.step()
    await world.step()
    assert not w.paused and world.container_of(w).status == "running"
    done = world.job(job.id)
    assert done.status == JobStatus.COMPLETED and done.worker_id == w.id
    breakdown = done.breakdown or {}
    assert "resumeMs" in breakdown and "createMs" not in breakdown
    assert len(world.fake.calls_to("create")) == creates  # resumed, not created
    assert world.fake.calls_to("unpause") == [(w.container_id,)]


async def test_a_paused_worker_is_removed_after_flashboot_pause_s(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=1, idleTimeout=1, flashboot=True)
    world.submit()
    await world.step()
    await world.step()
    await world.step(1.5)
    (w,) = world.workers()
    assert w.paused
    await world.step(59)
    assert world.workers() == [w]
    await world.step(1.5)
    assert world.workers() == [] and world.fake.containers == {}


async def test_workers_min_is_kept_running_and_only_flex_workers_pause(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=3, idleTimeout=1, flashboot=True, scalerValue=0.1)
    world.submit(n=3, seconds=1)
    for _ in range(8):
        await world.step(0.5)
    await world.step(1.5)
    workers = world.workers()
    assert len(workers) == 3
    assert sorted(w.paused for w in workers) == [False, True, True]
    # three jobs at once: the two paused ones are resumed, no new container
    jobs = world.submit(n=3, seconds=0.5)
    await world.step()
    await world.step()
    assert not any(w.paused for w in world.workers()) and len(world.workers()) == 3
    await world.step(1)
    assert all(world.job(j.id).status == JobStatus.COMPLETED for j in jobs)


async def test_flashboot_turned_off_removes_paused_workers(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=1, idleTimeout=1, flashboot=True)
    world.submit()
    await world.step()
    await world.step()
    await world.step(1.5)
    assert world.workers()[0].paused
    world.update("ep", flashboot=False)
    await world.step()
    assert world.workers() == []


async def test_an_old_version_paused_worker_goes_at_once(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=1, idleTimeout=1, flashboot=True)
    world.submit()
    await world.step()
    await world.step()
    await world.step(1.5)
    assert world.workers()[0].paused
    world.update("ep", env={"V": "2"})
    await world.step()
    assert world.workers() == [] and world.fake.containers == {}


async def test_a_paused_workers_held_poll_does_not_swallow_the_wake_up_for_a_new_job(world: World) -> None:
    world.endpoint(workersMin=2, workersMax=2)
    await world.step()
    a, b = world.workers()
    held_a = asyncio.create_task(world.ops.take(a, 1, 30))  # parked first: woken first
    await asyncio.sleep(0.01)
    held_b = asyncio.create_task(world.ops.take(b, 1, 30))
    await asyncio.sleep(0.01)
    a.paused = True  # what the supervisor's Pause does before `docker pause`
    (job,) = world.submit()
    done, _ = await asyncio.wait({held_a, held_b}, timeout=2, return_when=asyncio.FIRST_COMPLETED)
    assert done == {held_b} and [j["id"] for j in held_b.result()] == [job.id]
    # the paused worker's poll stays parked: resumed, it takes the next job at once
    a.paused = False
    (second,) = world.submit()
    assert [j["id"] for j in await asyncio.wait_for(held_a, 2)] == [second.id]

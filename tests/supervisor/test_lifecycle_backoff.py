"""UNHEALTHY and back-off against FakeRuntime and a FakeClock: the exact restart schedule (defaults 1 s
doubling to 5 min), giving up, the reset after a stable period, a worker that reports itself unhealthy,
and what the workers list shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator import wire
from emulator.clock import FakeClock
from emulator.models import JobStatus, WorkerState
from emulator.runtime.base import ContainerInfo, ContainerSpec
from emulator.runtime.fake import FakeRuntime
from emulator.workers.records import WorkerRecord
from tests.supervisor.world import IMAGE, World, state_now

S = WorkerState


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path / "data")
    yield w
    await w.sup.stop()
    w.core.close()


async def crash_schedule(world: World, failures: int) -> list[float]:
    """The delay chosen after each failure (next retry - failure time), jumping the clock to each retry."""
    delays: list[float] = []
    seen: set[tuple[float, float | None]] = set()
    await world.step()
    for _ in range(failures * 6):
        (w,) = world.workers()
        assert w.state not in (S.IDLE, S.RUNNING), "a crash-looping worker is never ready"
        assert not world.core.workers.may_take(w)
        if w.state == S.UNHEALTHY and (w.state_since, w.next_retry_at) not in seen:
            seen.add((w.state_since, w.next_retry_at))
            if w.next_retry_at is None:
                break
            delays.append(round(w.next_retry_at - w.state_since, 6))
            if len(delays) == failures:
                break
        wait = (w.next_retry_at or 0) - world.clock.now() if w.state == S.UNHEALTHY else 0.0
        await world.step(max(0.0, wait))
    return delays


async def test_the_default_schedule_restarts_at_once_then_doubles_from_1s_to_5_minutes(world: World) -> None:
    world.fake.set_image_behavior(IMAGE, exit_code=2, logs=("RuntimeError: CUDA not found",))
    world.endpoint(workersMin=1, workersMax=1)
    (job,) = world.submit()
    delays = await crash_schedule(world, 13)
    assert delays == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    (w,) = world.workers()
    public = wire.worker_public(w, 1, world.clock.now())
    assert public["status"] == "UNHEALTHY" and public["restarts"] == 12
    assert public["nextRetryAt"] == pytest.approx(world.clock.now() + 300)
    reason = public["reason"]
    assert reason is not None
    assert "exited with code 2" in reason and "restart 13 in 300.0s" in reason
    assert "RuntimeError: CUDA not found" in reason
    assert world.job(job.id).status == JobStatus.IN_QUEUE and world.job(job.id).worker_id is None


async def test_a_custom_policy_and_giving_up(world: World) -> None:
    world.fake.set_image_behavior(IMAGE, exit_code=1)
    backoff = {"initialDelayS": 0.5, "factor": 3, "maxDelayS": 5, "giveUpAfterS": 20}
    world.endpoint(workersMin=1, workersMax=1, backoff=backoff)
    delays = await crash_schedule(world, 20)
    assert delays[:5] == [0, 0.5, 1.5, 4.5, 5]
    assert sum(delays[:-1]) < 20 <= sum(delays)  # the first failure 20 s into the loop gives up
    (w,) = world.workers()
    assert w.state == S.UNHEALTHY and w.next_retry_at is None and "gave up restarting" in (w.reason or "")
    restarts = w.restarts
    await world.step(3600)
    assert w.restarts == restarts and w.state == S.UNHEALTHY  # holds its place, never restarted again
    world.fake.set_image_behavior(IMAGE, exit_code=None)
    world.update("ep", env={"FIXED": "1"})  # a new version replaces it
    for _ in range(4):
        await world.step()
    (fresh,) = world.workers()
    assert fresh.version == 2 and fresh.state == S.IDLE and fresh.restarts == 0


async def test_a_stable_period_resets_the_schedule(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=1, backoff={"initialDelayS": 10, "resetAfterS": 60})

    async def crash(w: WorkerRecord) -> None:
        world.fake.crash(w.container_id or "", exit_code=1)
        await world.step()

    await world.step()
    (w,) = world.workers()
    await crash(w)
    assert w.state == S.UNHEALTHY and w.next_retry_at == world.clock.now()  # first: at once
    await world.step()
    assert state_now(w) == S.IDLE and w.restarts == 1
    await world.step(30)  # ready for 30 s: not yet stable
    await crash(w)
    assert w.next_retry_at == pytest.approx(world.clock.now() + 10) and w.restarts == 1
    await world.step(10)
    await world.step()
    assert state_now(w) == S.IDLE and w.restarts == 2
    await world.step(61)  # stable for longer than resetAfterS: a new crash loop begins
    await crash(w)
    assert w.next_retry_at == world.clock.now() and w.restarts == 0


async def test_a_worker_that_reports_itself_unhealthy_is_stopped_and_restarted_with_backoff(
    world: World,
) -> None:
    world.endpoint(workersMin=1, workersMax=1)
    await world.step()
    (w,) = world.workers()
    (job,) = world.submit(seconds=60)
    await world.step()
    assert w.state == S.RUNNING
    first = w.container_id
    world.ops.ping(w, [job.id], "unhealthy", "GPU memory corrupted")
    assert state_now(w) == S.UNHEALTHY
    await world.sup.settle(5)
    assert world.fake.containers[first or ""].status == "exited"  # stopped, not left running
    assert "worker reported itself unhealthy: GPU memory corrupted" in (w.reason or "")
    assert w.next_retry_at == world.clock.now() and world.job(job.id).retries == 1
    await world.step()
    await world.step()
    assert w.state in (S.IDLE, S.RUNNING) and w.container_id != first and w.restarts == 1


async def test_a_listing_taken_before_a_launch_finished_does_not_fail_the_new_worker(tmp_path: Path) -> None:
    """The loop lists containers (await), then plans: a launch that ends meanwhile is not 'disappeared'."""
    created, listed = asyncio.Event(), asyncio.Event()
    created.set()
    listed.set()

    class Racy(FakeRuntime):
        async def create(self, spec: ContainerSpec) -> str:
            await created.wait()
            return await super().create(spec)

        async def list(self, labels: dict[str, str]) -> list[ContainerInfo]:
            snapshot = await super().list(labels)  # taken now, handed back later
            await listed.wait()
            return snapshot

    clock = FakeClock()
    world = await World.create(tmp_path / "data", fake=Racy(clock=clock), clock=clock)
    try:
        world.endpoint(workersMin=1, workersMax=1)
        created.clear()
        await world.sup.tick()  # starts the worker; its launch waits in create
        listed.clear()
        tick = asyncio.create_task(world.sup.tick())
        await asyncio.sleep(0.01)  # the tick is listing (without the container)
        created.set()
        await world.sup.settle(5)  # the launch ends: the container exists, the worker is not busy
        listed.set()
        await tick
        await world.sup.settle(5)
        (w,) = world.workers()
        assert w.state == S.INITIALIZING and w.restarts == 0 and w.reason != "its container disappeared"
    finally:
        created.set()
        listed.set()
        await world.sup.stop()
        world.core.close()

"""THROTTLED on a cluster engine, on the fake's cluster mode (``FakeRuntime(cluster=FakeCluster(...))``):
a worker whose Pod fits on no node is THROTTLED with the scheduler's own message, keeps its queued Pod,
goes back to INITIALIZING then IDLE when placed (the oldest waiting worker first, when capacity frees),
and its start-up clock counts from the placement, not from the creation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.clock import FakeClock
from emulator.models import WorkerState
from emulator.runtime.base import ContainerSpec
from emulator.runtime.fake import FakeRuntime
from emulator.runtime.fake_cluster import FakeCluster
from tests.supervisor.world import World, state_now

S = WorkerState
FULL = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


async def cluster_world(tmp_path: Path, nodes: list[int], **settings: object) -> World:
    clock = FakeClock()
    fake = FakeRuntime(clock, cluster=FakeCluster(nodes))
    return await World.create(tmp_path / "data", fake=fake, clock=clock, **settings)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await cluster_world(tmp_path, [1, 1], startup_timeout_s=30.0)
    yield w
    await w.sup.stop()
    w.core.close()


async def test_a_pod_that_fits_nowhere_is_throttled_with_the_schedulers_message(world: World) -> None:
    world.endpoint(id="hog", name="hog", workersMin=2, workersMax=2, gpuCount=1)
    await world.step()
    await world.step()
    assert world.states("hog") == ["IDLE", "IDLE"]
    world.endpoint(id="wait", name="wait", workersMin=2, workersMax=2, gpuCount=1)
    await world.step()
    await world.step()
    waiting = world.workers("wait")
    assert [w.state for w in waiting] == [S.THROTTLED, S.THROTTLED]
    assert [w.reason for w in waiting] == [FULL, FULL]
    assert all(world.container_of(w).status == "created" for w in waiting)  # the Pods stay queued
    created = len(world.fake.calls_to("create"))
    await world.step(100.0)  # far past startup_timeout_s: queued is not failing
    await world.step()
    assert [w.state for w in world.workers("wait")] == [S.THROTTLED, S.THROTTLED]
    assert len(world.fake.calls_to("create")) == created  # no new Pods, no restarts
    health = world.jobs.health(world.core.endpoints.require("wait"))
    assert health["workers"]["throttled"] == 2


async def test_capacity_freed_is_taken_by_the_oldest_throttled_worker(world: World) -> None:
    world.endpoint(id="hog", name="hog", workersMin=2, workersMax=2, gpuCount=1)
    await world.step()
    world.endpoint(id="wait", name="wait", workersMin=1, workersMax=2, gpuCount=1)
    await world.step()
    world.clock.advance(1.0)
    world.update("wait", workersMin=2)
    await world.step()
    await world.step()
    oldest, newest = world.workers("wait")
    assert oldest.created_at < newest.created_at
    assert (oldest.state, newest.state) == (S.THROTTLED, S.THROTTLED)
    world.update("hog", workersMin=1, workersMax=1)  # one GPU frees
    await world.step()
    await world.step()
    await world.step()
    assert state_now(oldest) == S.IDLE and oldest.reason is None
    assert state_now(newest) == S.THROTTLED
    assert newest.reason == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    world.update("hog", workersMin=0, workersMax=0)
    for _ in range(3):
        await world.step()
    assert [w.state for w in world.workers("wait")] == [S.IDLE, S.IDLE]
    assert world.workers("hog") == []


async def test_the_start_up_clock_counts_from_the_placement(world: World) -> None:
    world.fake.hang_startup("fake/hang")  # placed, running, but never makes contact
    world.endpoint(id="hog", name="hog", workersMin=2, workersMax=2, gpuCount=1)
    await world.step()
    world.endpoint(id="slow", name="slow", imageName="fake/hang", workersMin=1, workersMax=1, gpuCount=1)
    await world.step()
    await world.step()
    [slow] = world.workers("slow")
    assert slow.state == S.THROTTLED
    await world.step(100.0)  # queued for longer than startup_timeout_s (30 s)
    world.update("hog", workersMin=0, workersMax=0)
    await world.step()
    await world.step()
    assert state_now(slow) == S.INITIALIZING and slow.reason is not None and "placed" in slow.reason
    assert slow.started_at == world.clock.now()
    await world.step(25.0)
    assert state_now(slow) == S.INITIALIZING  # 25 s after the placement: still within its start-up time
    await world.step(10.0)
    assert state_now(slow) == S.UNHEALTHY and "start-up timed out" in (slow.reason or "")


async def test_fifty_nodes_of_eight_gpus_take_four_hundred_workers(tmp_path: Path) -> None:
    world = await cluster_world(tmp_path, [8] * 50, max_concurrent_starts=1000)
    try:
        for index in range(5):
            world.endpoint(id=f"e{index}", name=f"e{index}", workersMin=100, workersMax=100, gpuCount=1)
        await world.step()
        await world.step()
        states = [w.state for index in range(5) for w in world.workers(f"e{index}")]
        assert states.count(S.IDLE) == 400 and states.count(S.THROTTLED) == 100
        reasons = {
            w.reason for index in range(5) for w in world.workers(f"e{index}") if w.state == S.THROTTLED
        }
        assert reasons == {"0/50 nodes are available: 50 Insufficient nvidia.com/gpu."}
    finally:
        await world.sup.stop()
        world.core.close()


async def test_the_fake_cluster_places_by_gpus_and_requeues_oldest_first() -> None:
    fake = FakeRuntime(cluster=FakeCluster([2, 1]))
    assert not fake.capabilities.pause and fake.capabilities.places_workers

    async def started(name: str, gpus: int) -> str:
        spec = ContainerSpec(name=name, image="img", env={}, labels={}, gpu_count=gpus)
        container_id = await fake.create(spec)
        await fake.start(container_id)
        return container_id

    big, small = await started("big", 2), await started("small", 1)
    first, second = await started("first", 1), await started("second", 2)
    assert [(await fake.inspect(c)).status for c in (big, small, first, second)] == ["running"] * 2 + [
        "created"
    ] * 2
    assert (await fake.inspect(first)).pending == (
        "Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    )
    fake.crash(small)  # 1 GPU frees on node 1: the oldest waiting Pod that fits takes it
    assert (await fake.inspect(first)).status == "running"
    assert (await fake.inspect(second)).pending is not None
    await fake.remove(big)  # 2 GPUs free on node 0
    assert (await fake.inspect(second)).status == "running" and (await fake.inspect(second)).pending is None

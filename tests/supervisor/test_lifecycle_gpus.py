"""GPUs and THROTTLED against FakeRuntime: pinning from an emulated inventory, workers that wait for a
GPU and start as GPUs free, device requests (nvidia mode) and the engine's refusal, endpoint validation,
memory and CPU budgets, and the concurrent-start cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import GpuUnavailable
from emulator.models import WorkerState
from emulator.runtime.fake import FakeRuntime
from emulator.supervisor.capacity import DEFAULT_WORKER_MEMORY_MB
from tests.supervisor.world import World, state_now

S = WorkerState


@pytest.fixture
async def emulated(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path / "data", gpu_mode="emulate", emulated_gpus=3)
    yield w
    await w.sup.stop()
    w.core.close()


async def make(tmp_path: Path, fake: FakeRuntime | None = None, **settings: Any) -> World:
    return await World.create(tmp_path / "data", fake=fake, **settings)


def held(world: World) -> list[str]:
    """Every GPU id held by a worker whose container is running (a GPU is never held twice)."""
    return sorted(
        gpu
        for w in world.core.workers.all()
        if w.container_id and world.fake.containers[w.container_id].status == "running"
        for gpu in w.gpu_ids
    )


async def test_three_gpus_five_workers_wanted_three_run_two_throttled_promoted_as_gpus_free(
    emulated: World,
) -> None:
    world = emulated
    world.endpoint(id="hog", name="hog", workersMin=3, workersMax=3, gpuCount=1)
    await world.step()
    world.endpoint(id="wait", name="wait", workersMin=2, workersMax=2, gpuCount=1)
    await world.step()
    await world.step()
    assert sorted(w.state.value for w in world.workers("hog")) == ["IDLE"] * 3
    waiting = world.workers("wait")
    assert [w.state for w in waiting] == [S.THROTTLED, S.THROTTLED]
    assert all("no free GPU" in (w.reason or "") and w.container_id is None for w in waiting)
    assert held(world) == ["0", "1", "2"]
    health = world.jobs.health(world.core.endpoints.require("wait"))
    assert health["workers"]["throttled"] == 2
    for w in world.workers("hog"):
        spec = world.fake.spec_of(w.container_id or "")
        assert spec.gpu_device_ids == ()  # emulate: no device requests
        assert spec.env["NVIDIA_VISIBLE_DEVICES"] == w.gpu_ids[0] and spec.env["RUNPOD_GPU_COUNT"] == "1"

    world.update("hog", workersMin=2, workersMax=2)  # one GPU frees
    await world.step()
    await world.step()
    states = sorted(w.state.value for w in world.workers("wait"))
    assert states == ["IDLE", "THROTTLED"]
    world.update("hog", workersMin=0, workersMax=0)  # the others free
    await world.step()
    await world.step()
    assert [w.state for w in world.workers("wait")] == [S.IDLE, S.IDLE]
    assert held(world) == sorted(g for w in world.workers("wait") for g in w.gpu_ids)
    assert len(set(held(world))) == 2


async def test_a_worker_needing_two_gpus_waits_for_two(emulated: World) -> None:
    world = emulated
    world.endpoint(workersMin=2, workersMax=2, gpuCount=2)
    await world.step()
    await world.step()
    first, second = sorted(world.workers(), key=lambda w: w.state != S.IDLE)
    assert first.state == S.IDLE and first.gpu_ids == ["0", "1"]
    assert second.state == S.THROTTLED and "needs 2, 1 of 3 free" in (second.reason or "")
    world.fake.crash(first.container_id or "", exit_code=1)  # its GPUs free while it restarts
    await world.step()
    await world.step()
    assert state_now(second) == S.IDLE and second.gpu_ids == ["0", "1"]
    assert first.state in (S.UNHEALTHY, S.THROTTLED) and first.gpu_ids == []


async def test_gpu_endpoints_are_validated_against_the_inventory(emulated: World, tmp_path: Path) -> None:
    endpoint = emulated.endpoint(gpuCount=4, workersMin=0)
    with pytest.raises(GpuUnavailable, match="gpuCount is 4 but the GPU inventory has 3"):
        await emulated.sup.validate_endpoint(endpoint)
    await emulated.sup.validate_endpoint(endpoint.model_copy(update={"gpuCount": 3}))

    off = await make(tmp_path / "off", gpu_mode="off")
    try:
        with pytest.raises(GpuUnavailable, match="EMULATOR_GPU_MODE=off") as caught:
            await off.sup.validate_endpoint(endpoint)
        assert caught.value.data["field"] == "gpuCount"
    finally:
        await off.sup.stop()
        off.core.close()

    auto = await make(tmp_path / "auto", fake=FakeRuntime(refuse_gpus=True), gpu_mode="auto", gpus="0")
    try:
        with pytest.raises(GpuUnavailable, match="no NVIDIA runtime") as caught:
            await auto.sup.validate_endpoint(endpoint.model_copy(update={"gpuCount": 1}))
        assert "NVIDIA Container Toolkit" in caught.value.message
        assert "EMULATOR_GPU_MODE=emulate" in caught.value.message
    finally:
        await auto.sup.stop()
        auto.core.close()


async def test_nvidia_mode_makes_device_requests_and_the_engines_refusal_is_the_workers_reason(
    tmp_path: Path,
) -> None:
    world = await make(tmp_path, gpu_mode="nvidia", gpus="0,1")
    try:
        world.fake.refuse_gpus = True
        endpoint = world.endpoint(workersMin=1, workersMax=1, gpuCount=1, backoff={"initialDelayS": 60})
        await world.sup.validate_endpoint(endpoint)  # forced: no runtime check at creation
        await world.step()
        (w,) = world.workers()
        assert world.fake.spec_of(w.container_id or "").gpu_device_ids == ("0",)
        assert w.state == S.UNHEALTHY
        assert "could not select device driver" in (w.reason or "")
        assert "NVIDIA Container Toolkit" in (w.reason or "")
        world.fake.refuse_gpus = False
        await world.step(61)
        await world.step()
        assert state_now(w) == S.IDLE and w.gpu_ids == ["0"]
    finally:
        await world.sup.stop()
        world.core.close()


async def test_memory_and_cpu_budgets_throttle_workers(tmp_path: Path) -> None:
    world = await make(tmp_path / "m", worker_memory_budget_mb=1000)
    try:
        world.endpoint(workersMin=3, workersMax=3, memoryInMb=400)
        await world.step()
        await world.step()
        assert world.states() == ["IDLE", "IDLE", "THROTTLED"]
        (waiting,) = [w for w in world.workers() if w.state == S.THROTTLED]
        assert "memory budget: needs 400 MB, 200 of 1000 MB left" in (waiting.reason or "")
        world.update("ep", memoryInMb=300)  # a new version: 3 x 300 fit
        for _ in range(12):
            await world.step(0.5)
        assert world.states() == ["IDLE", "IDLE", "IDLE"]
    finally:
        await world.sup.stop()
        world.core.close()
    world = await make(tmp_path / "c", worker_cpu_budget=2)
    try:
        world.endpoint(workersMin=3, workersMax=3)
        await world.step()
        assert world.states() == ["IDLE", "IDLE", "THROTTLED"]
        assert DEFAULT_WORKER_MEMORY_MB == 1024
        (waiting,) = [w for w in world.workers() if w.state == S.THROTTLED]
        assert "CPU budget: needs 1 CPU, 0 of 2 left" in (waiting.reason or "")
    finally:
        await world.sup.stop()
        world.core.close()


async def test_throttled_flex_workers_go_when_no_longer_needed(emulated: World) -> None:
    world = emulated
    world.endpoint(workersMin=0, workersMax=5, gpuCount=1, scalerValue=0.5, idleTimeout=1)
    world.submit(n=5, seconds=2)
    await world.step(1)
    await world.step()
    assert world.states() == ["RUNNING", "RUNNING", "RUNNING", "THROTTLED", "THROTTLED"]
    for _ in range(20):
        await world.step(0.5)
    assert world.workers() == []


async def test_workers_waiting_for_a_start_slot_are_throttled(tmp_path: Path) -> None:
    gate = asyncio.Event()

    class SlowStarts(FakeRuntime):
        async def start(self, container_id: str) -> None:
            await gate.wait()
            await super().start(container_id)

    world = await make(tmp_path, fake=SlowStarts(), max_concurrent_starts=2)
    try:
        world.endpoint(workersMin=4, workersMax=4)
        await world.sup.tick()
        await asyncio.sleep(0.05)
        states = world.states()
        assert states == ["INITIALIZING", "INITIALIZING", "THROTTLED", "THROTTLED"]
        waiting = [w for w in world.workers() if w.state == S.THROTTLED]
        assert all("waiting for a start slot" in (w.reason or "") for w in waiting)
        await world.sup.tick()  # busy: nothing more is started meanwhile
        assert len(world.workers()) == 4
        gate.set()
        await world.sup.settle(5)
        await world.step()
        assert world.states() == ["IDLE"] * 4
    finally:
        gate.set()
        await world.sup.stop()
        world.core.close()

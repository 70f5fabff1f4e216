"""Runtime capabilities (``base.Capabilities``) in the supervisor, on the fake with Kubernetes' capabilities:
FlashBoot degrades to removal after idle (the reason says so), no standby containers, no host admission
(GPUs by count, memory and CPU budgets not applied: the cluster's scheduler places workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.clock import FakeClock
from emulator.errors import GpuUnavailable
from emulator.models import WorkerState
from emulator.runtime.base import CLUSTER_CAPABILITIES
from emulator.runtime.fake import FakeRuntime
from emulator.supervisor.reconcile import NO_PAUSE, CreateStandby, Pause, Remove, plan
from emulator.workers.records import WorkerRecord
from tests.supervisor.world import World
from tests.unit.test_reconcile import EMPTY, NOW, SETTINGS, ep, obs, worker

S = WorkerState


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    w = await World.create(
        tmp_path / "data",
        fake=FakeRuntime(clock, capabilities=CLUSTER_CAPABILITIES),
        clock=clock,
        worker_memory_budget_mb=512,  # a host budget: ignored when the engine places workers
        worker_cpu_budget=1.0,
    )
    yield w
    await w.sup.stop()
    w.core.close()


def test_the_plan_removes_instead_of_pausing_and_makes_no_standby_without_the_capabilities() -> None:
    idle = worker("w1", S.IDLE, state_since=NOW - 100)
    flash = ep(workersMin=0, workersMax=3, idleTimeout=5, flashboot=True, extraWorkers=2)
    docker = plan(flash, obs(idle), EMPTY, NOW, SETTINGS)
    assert [type(a) for a in docker].count(Pause) == 1 and CreateStandby("ep") in docker
    cluster = plan(flash, obs(idle), EMPTY, NOW, SETTINGS, CLUSTER_CAPABILITIES)
    [removal] = [a for a in cluster if isinstance(a, Remove)]
    assert removal.reason == f"idle for 5s (idleTimeout): removed, not paused (FlashBoot: {NO_PAUSE})"
    assert not [a for a in cluster if isinstance(a, Pause | CreateStandby)]


async def test_on_a_cluster_runtime_gpus_go_by_count_and_host_budgets_are_not_applied(world: World) -> None:
    world.endpoint(workersMin=3, workersMax=3, gpuCount=2, memoryInMb=1024)
    await world.step()
    await world.step()
    workers = world.workers()
    assert [w.state for w in workers] == [WorkerState.IDLE] * 3  # no THROTTLED from our own admission
    for w in workers:
        spec = world.fake.spec_of(w.container_id or "")
        assert spec.gpu_count == 2 and spec.gpu_device_ids == ()
        assert "NVIDIA_VISIBLE_DEVICES" not in spec.env  # the device plugin sets it on the node
        assert spec.env["RUNPOD_GPU_COUNT"] == "2"
    assert world.workers(standby=True) == []


async def test_flashboot_removes_an_idle_worker_and_says_why(world: World) -> None:
    removed: list[str] = []

    def listen(w: WorkerRecord, old: WorkerState | None, reason: str) -> None:
        if reason.startswith("removed: "):
            removed.append(reason)

    world.core.workers.subscribe(listen)
    world.endpoint(workersMin=0, workersMax=2, idleTimeout=2, flashboot=True, extraWorkers=2)
    world.submit()
    await world.step()
    await world.step()
    assert len(world.workers()) == 1 and world.workers(standby=True) == []
    await world.step(2.5)
    await world.step()
    assert world.workers() == [] and world.fake.calls_to("pause") == []
    assert removed == [f"removed: idle for 2s (idleTimeout): removed, not paused (FlashBoot: {NO_PAUSE})"]


async def test_a_gpu_endpoint_is_validated_against_the_cluster_not_an_inventory(world: World) -> None:
    endpoint = world.endpoint(workersMin=0, gpuCount=8)  # no GPU inventory of ours at all
    await world.sup.validate_endpoint(endpoint)
    world.fake.refuse_gpus = True  # no node offers GPUs
    with pytest.raises(GpuUnavailable, match="no node of the cluster offers GPUs"):
        await world.sup.validate_endpoint(endpoint)

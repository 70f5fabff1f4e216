"""More supervisor behaviour against FakeRuntime: crash loops, recycling, rolling versions, standby
containers, cold-start timings, the API hooks, shutdown, and a loop that survives a dead runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import SystemClock
from emulator.errors import RuntimeFailure
from emulator.models import JobStatus, WorkerState
from emulator.runtime.fake import FakeRuntime
from emulator.service import metrics
from tests.supervisor.world import IMAGE, World, state_now

S = WorkerState


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path / "data")
    yield w
    await w.sup.stop()
    w.core.close()


async def test_a_crash_looping_worker_backs_off_and_is_never_idle_nor_given_a_job(world: World) -> None:
    world.fake.set_image_behavior(IMAGE, exit_code=3, logs=("boom: cannot load model",))
    world.endpoint(workersMin=1, workersMax=1, backoff={"initialDelayS": 2, "factor": 2, "maxDelayS": 5})
    (job,) = world.submit()
    seen: list[tuple[str, int]] = []
    for _ in range(60):
        await world.step(0.5)
        (w,) = world.workers()
        seen.append((w.state.value, w.restarts))
        assert w.state not in (S.IDLE, S.RUNNING)
    assert world.job(job.id).status == JobStatus.IN_QUEUE and world.job(job.id).worker_id is None
    (w,) = world.workers()
    assert "exited with code 3" in (w.reason or "") or "restart" in (w.reason or "")
    # restarts: at once, then after 2s, 4s, 5s, 5s ... (30s of simulated time: about 8)
    assert 6 <= w.restarts <= 9, seen
    assert len(world.live_containers()) == 0
    assert len(world.fake.containers) == 1  # each restart replaces the container, none pile up


async def test_crashed_worker_reason_names_the_exit_and_the_last_log_lines(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=1, backoff={"initialDelayS": 60})
    await world.step()
    (w,) = world.workers()
    world.fake.append_log(w.container_id or "", "Traceback (most recent call last):", "MemoryError")
    world.fake.crash(w.container_id or "", oom=True)
    await world.step()
    assert w.state == S.UNHEALTHY
    assert "out of memory" in (w.reason or "") and "MemoryError" in (w.reason or "")
    await world.step()  # the first restart is immediate
    assert state_now(w) == S.IDLE and w.restarts == 1
    world.fake.crash(w.container_id or "", exit_code=1)
    await world.step()
    assert w.state == S.UNHEALTHY and w.next_retry_at == pytest.approx(world.clock.now() + 60)
    assert "restart 2 in 60.0s" in (w.reason or "")


async def test_a_worker_that_asks_to_be_recycled_is_replaced_after_its_job(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=2)
    await world.step()
    (first,) = world.workers()
    (job,) = world.submit(stopPod=True, seconds=1)
    await world.step()
    assert first.state == S.RUNNING
    await world.step(1.0)
    assert world.job(job.id).status == JobStatus.COMPLETED
    await world.step()
    (second,) = world.workers()
    assert second.id != first.id and second.state == S.IDLE and second.restarts == 0
    assert world.core.workers.get(first.id) is None
    assert len(world.fake.containers) == 1


async def test_a_new_version_drains_old_workers_and_starts_new_ones(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=2)
    await world.step()
    (old,) = world.workers()
    (busy_job,) = world.submit(seconds=3)
    await world.step()
    assert old.state == S.RUNNING
    world.update("ep", env={"NEW": "1"})
    (queued,) = world.submit(seconds=0)
    await world.step()
    assert state_now(old) == S.OUTDATED and not world.core.workers.may_take(old)
    await world.step()
    new = [w for w in world.workers() if w.version == 2]
    assert len(new) == 1 and new[0].state == S.IDLE
    assert world.job(queued.id).status == JobStatus.COMPLETED and world.job(queued.id).worker_id == new[0].id
    await world.step(3.1)
    await world.step()
    assert world.job(busy_job.id).status == JobStatus.COMPLETED and world.job(busy_job.id).worker_id == old.id
    assert [w.version for w in world.workers()] == [2]
    spec = world.fake.spec_of(new[0].container_id or "")
    assert spec.env["NEW"] == "1" and spec.labels["serverless-emulator.version"] == "2"


async def test_standby_containers_are_created_not_started_and_used_first(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=3, extraWorkers=2, scalerValue=1)
    await world.step()
    standby = world.workers(standby=True)
    assert len(standby) == 2 and world.workers() == []
    assert all(world.container_of(w).status == "created" for w in standby)
    health = world.jobs.health(world.core.endpoints.require("ep"))
    assert health["workers"]["initializing"] == 0
    jobs = world.submit(n=3, seconds=1)
    await world.step(1.5)
    started = world.workers()
    assert len(started) == 3
    assert {w.id for w in standby} < {w.id for w in started}
    await world.step()
    await world.step(1.0)
    breakdowns = [world.job(j.id).breakdown or {} for j in jobs]
    by_worker = {b["workerId"]: b for b in breakdowns}
    for w in standby:
        assert by_worker[w.id]["createMs"] == 0 and by_worker[w.id]["coldStart"] is True
    assert len(world.workers(standby=True)) == 0  # at workersMax: no room left to grow


async def test_start_timings_cold_start_breakdown_and_metrics(world: World) -> None:
    m = metrics.attach(world.core)
    world.endpoint(workersMin=1, workersMax=1)
    await world.step()
    (w,) = world.workers()
    assert set(w.timings) >= {"createS", "startS", "readyS"}
    assert w.started_at is not None and w.container_id
    (job,) = world.submit()
    await world.step()
    breakdown = world.job(job.id).breakdown or {}
    assert breakdown["coldStart"] is True and {"createMs", "startMs", "readyMs"} <= set(breakdown)
    world.fake.crash(w.container_id or "")
    await world.step()
    await world.step()
    text = m.exposition().decode()
    assert 'emulator_container_starts_total{endpoint="ep"} 2.0' in text
    assert 'emulator_worker_restarts_total{endpoint="ep"} 1.0' in text


async def test_a_silent_worker_is_lost_its_jobs_requeued_and_it_is_replaced(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=1)
    await world.step()
    (w,) = world.workers()
    (job,) = world.submit(seconds=100)
    await world.step()
    assert w.state == S.RUNNING
    world.sims[w.container_id or ""].silent = True
    await world.step(9)
    assert w.state == S.RUNNING
    await world.step(2)
    assert w.state in (S.UNHEALTHY, S.INITIALIZING)
    assert "stopped answering" in (w.reason or "")
    assert world.job(job.id).retries == 1
    await world.step()
    await world.step()
    assert w.state == S.RUNNING and world.job(job.id).worker_id == w.id  # restarted in place, took it again


async def test_low_priority_jobs_do_not_scale_up_but_run_on_existing_workers(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=3, scalerValue=1)
    world.submit(n=4, lowPriority=True)
    await world.step(10)
    assert world.workers() == []
    world.update("ep", workersMin=1)
    await world.step()
    await world.step()
    await world.step()
    assert len(world.workers()) == 1
    assert world.core.jobs.stats("ep", world.clock.now()).in_queue == 0


async def test_request_count_scaler(world: World) -> None:
    world.endpoint(workersMin=0, workersMax=5, scalerType="REQUEST_COUNT", scalerValue=2, idleTimeout=1)
    jobs = world.submit(n=5, seconds=10)
    await world.step()
    assert len(world.workers()) == 3  # ceil(5 / 2)
    await world.step()
    await world.step(10)  # 3 done, the last 2 taken: ceil(2 / 2) = 1 is kept, idle ones may go
    await world.step(1.5)
    assert sorted(w.state.value for w in world.workers()) == ["RUNNING", "RUNNING"]
    await world.step(10)
    assert all(world.job(j.id).status == JobStatus.COMPLETED for j in jobs)
    await world.step(1.5)
    assert world.workers() == []


async def test_lowering_workers_max_removes_the_excess(world: World) -> None:
    world.endpoint(workersMin=3, workersMax=3)
    await world.step()
    assert len(world.workers()) == 3
    world.update("ep", workersMin=1, workersMax=1)
    await world.step()
    assert len(world.workers()) == 1 and len(world.live_containers()) == 1


async def test_endpoint_deleted_drains_then_removes_its_workers(world: World) -> None:
    endpoint = world.endpoint(workersMin=2, workersMax=2, extraWorkers=1)
    await world.step()
    (job,) = world.submit(seconds=0.5)
    await world.step()
    world.core.endpoints.delete("ep")
    world.clock.advance(1)
    deletion = asyncio.create_task(world.sup.endpoint_deleted(endpoint))
    await asyncio.sleep(0.01)
    assert all(w.stopping for w in world.workers(standby=None))
    await world.act_workers()  # the running job finishes during the drain
    await deletion
    assert world.job(job.id).status == JobStatus.COMPLETED
    assert world.workers(standby=None) == [] and world.fake.containers == {}


async def test_stop_removes_every_container_unless_keep_workers(tmp_path: Path) -> None:
    world = await World.create(tmp_path / "a")
    world.endpoint(workersMin=2, workersMax=3, extraWorkers=1)
    await world.step()
    assert len(world.fake.containers) == 3
    await world.sup.stop()
    assert world.fake.containers == {} and world.core.workers.all() == []
    world.core.close()

    kept = await World.create(tmp_path / "b", keep_workers=True)
    kept.endpoint(workersMin=2, workersMax=3)
    await kept.step()
    await kept.sup.stop()
    assert len(kept.live_containers()) == 2 and len(kept.core.workers.all()) == 2
    kept.core.close()


async def test_validate_endpoint_and_worker_logs(world: World) -> None:
    world.fake.images = {IMAGE}
    endpoint = world.endpoint(workersMin=1, workersMax=1)
    await world.sup.validate_endpoint(endpoint)
    missing = endpoint.model_copy(update={"imageName": "nope:latest"})
    await world.sup.validate_endpoint(missing)  # a missing image is pulled by the workers, not refused
    assert (await world.sup.image_status(missing))["local"] is False
    assert (await world.sup.image_status(endpoint))["local"] is True
    world.fake.set_unavailable(True)  # the engine cannot be asked: the answer says so, nothing is refused
    unknown = await world.sup.image_status(endpoint)
    assert unknown["local"] is None and "could not check image" in unknown["message"]
    world.fake.set_unavailable(False)
    await world.step()
    (w,) = world.workers()
    world.fake.append_log(w.container_id or "", "hello from the worker")
    assert "hello from the worker" in await world.sup.worker_logs(w.id, 10)
    assert await world.sup.worker_logs("nobody", 10) == ""


async def test_container_spec_carries_env_limits_volume_command_and_labels(world: World) -> None:
    world.endpoint(
        workersMin=1,
        workersMax=1,
        env={"A": "1"},
        memoryInMb=512,
        networkVolumeId="models",
        dockerStartCmd=["python3", "serve.py"],
    )
    await world.step()
    (w,) = world.workers()
    spec = world.fake.spec_of(w.container_id or "")
    assert spec.name == f"se-ep-{w.id}" and spec.image == IMAGE and spec.network == "se-test-net"
    assert spec.memory_mb == 512 and spec.volume == "models" and spec.command == ["python3", "serve.py"]
    assert (
        spec.env["A"] == "1"
        and spec.env["RUNPOD_AI_API_KEY"] == w.token
        and spec.env["RUNPOD_POD_ID"] == w.id
    )
    assert spec.labels == {
        "serverless-emulator.endpoint": "ep",
        "serverless-emulator.worker": w.id,
        "serverless-emulator.version": "1",
        "serverless-emulator.instance": world.sup.instance,
    }
    assert world.fake.networks["se-test-net"]["labels"]["serverless-emulator.instance"] == world.sup.instance


async def test_a_start_failure_makes_the_worker_unhealthy_with_the_runtimes_reason(world: World) -> None:
    world.endpoint(workersMin=1, workersMax=1, backoff={"initialDelayS": 30}, gpuCount=0)
    refusal = RuntimeFailure("Docker refused: port is already allocated", reason="port is already allocated")
    world.fake.set_image_behavior(IMAGE, start_error=refusal)
    await world.step()
    (w,) = world.workers()
    assert w.state == S.UNHEALTHY and "could not start its container" in (w.reason or "")
    assert "port is already allocated" in (w.reason or "")


async def test_concurrent_starts_are_capped(tmp_path: Path) -> None:
    class SlowStarts(FakeRuntime):
        active = peak = 0

        async def start(self, container_id: str) -> None:
            SlowStarts.active += 1
            SlowStarts.peak = max(SlowStarts.peak, SlowStarts.active)
            await asyncio.sleep(0.02)
            SlowStarts.active -= 1
            await super().start(container_id)

    world = await World.create(tmp_path / "d", fake=SlowStarts(), max_concurrent_starts=2)
    try:
        world.endpoint(workersMin=6, workersMax=6)
        await world.step()
        assert SlowStarts.peak == 2 and len(world.live_containers()) == 6
    finally:
        await world.sup.stop()
        world.core.close()


async def test_the_loop_survives_a_dead_runtime_and_catches_up(tmp_path: Path) -> None:
    fake = FakeRuntime(clock=SystemClock())
    world = await World.create(tmp_path / "e", fake=fake, clock=SystemClock())  # type: ignore[arg-type]
    try:
        fake.set_unavailable(True)
        await world.sup.loop.stop()
        world.sup.loop.start()
        world.endpoint(workersMin=2, workersMax=2)
        world.sup.endpoint_changed(world.core.endpoints.require("ep"))
        await _until(lambda: world.sup.loop.failed_ticks >= 3)
        assert world.workers() == []
        status = world.sup.runtime_status()
        assert status["status"] == "unreachable" and status["since"] is not None and status["error"]
        fake.set_unavailable(False)
        await _until(lambda: len(world.live_containers()) == 2)
        assert world.sup.runtime_status() == {"status": "ok"}
        ticks = world.sup.loop.ticks
        await _until(lambda: world.sup.loop.ticks > ticks + 2)  # still ticking
    finally:
        await world.sup.stop()
        world.core.close()


async def _until(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)

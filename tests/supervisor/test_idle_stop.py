"""A worker that holds no job is stopped at once (no SIGTERM grace: RunPod's SDK ignores SIGTERM, so the
grace was pure waiting); one that still holds a job gets ``stop_grace_s``. FakeRuntime records the
timeout of every stop."""

from __future__ import annotations

from pathlib import Path

from emulator.models import JobStatus
from tests.supervisor.world import World


async def test_scale_down_and_shutdown_stop_idle_workers_at_once(tmp_path: Path) -> None:
    world = await World.create(tmp_path / "data", stop_grace_s=7.0)
    try:
        world.endpoint(workersMin=1, workersMax=2, idleTimeout=1, scalerValue=1)
        await world.step()
        jobs = world.submit(n=3, seconds=0.5)
        await world.run_until(lambda: len(world.workers()) == 2)
        await world.run_until(lambda: all(world.job(j.id).status == JobStatus.COMPLETED for j in jobs))
        await world.run_until(lambda: len(world.workers()) == 1)  # the extra one: idle past idleTimeout
        scaled_down = world.fake.calls_to("stop")
        assert len(scaled_down) == 1 and scaled_down[0][1] == 0.0
        await world.sup.stop()  # shutdown: the kept idle worker too
        stops = world.fake.calls_to("stop")
        assert len(stops) == 2 and stops[1][1] == 0.0
        assert world.fake.containers == {}
    finally:
        world.core.close()


async def test_a_worker_still_holding_a_job_gets_the_stop_grace(tmp_path: Path) -> None:
    world = await World.create(tmp_path / "data", stop_grace_s=0.2)  # real seconds: the drain waits them
    try:
        endpoint = world.endpoint(workersMin=2, workersMax=2)
        await world.step()
        (job,) = world.submit(seconds=600)
        await world.run_until(lambda: world.job(job.id).status == JobStatus.IN_PROGRESS)
        holder = world.job(job.id).worker_id
        containers = {w.id: w.container_id for w in world.workers()}
        world.core.endpoints.delete("ep")
        await world.sup.endpoint_deleted(endpoint)  # the job outlives the drain's grace
        grace = dict(world.fake.calls_to("stop"))
        assert grace == {cid: (0.2 if wid == holder else 0.0) for wid, cid in containers.items()}
    finally:
        await world.sup.stop()
        world.core.close()

"""A job handed over just before the control plane was killed (#19's SIGKILL-under-load test).

The claim is committed, then the process dies before the job-take answer reaches the worker. After the
restart the worker is in touch (it polls again) but never names the job, and the job's lease runs out.
A worker in touch that stops naming a job normally dropped it (RunPod's SDK drops a result it cannot
post), and such a job is not run again. But a job claimed by the earlier process and never named since
may simply never have arrived: it is requeued as a counted retry, not left IN_PROGRESS until its
execution timeout.
"""

from __future__ import annotations

from pathlib import Path

from emulator.models import JobStatus
from emulator.service.core import job_service
from tests.supervisor.world import World


async def _world_with_an_idle_worker(tmp_path: Path) -> World:
    world = await World.create(tmp_path, worker_lost_after_s=2.0)
    world.endpoint(workersMin=1)
    await world.run_until(lambda: world.states() == ["IDLE"])
    return world


async def test_a_job_claimed_before_a_restart_and_never_named_is_requeued(tmp_path: Path) -> None:
    world = await _world_with_an_idle_worker(tmp_path)
    [worker] = world.workers()
    [job] = world.submit()
    # the earlier process claims it (its answer to the job-take dies with it)
    world.core.jobs.claim("ep", worker.id, 1, world.clock.now(), lease_s=2.0)
    world.clock.advance(0.5)
    restarted = job_service(world.core)  # the new process
    world.clock.advance(2.0)  # the lease runs out while the worker polls again
    world.core.workers.touch(worker)
    restarted._expired_leases(world.clock.now())
    again = world.job(job.id)
    assert again.status == JobStatus.IN_QUEUE and again.retries == 1 and again.dropped_at is None


async def test_a_job_claimed_by_this_process_and_never_named_counts_as_dropped(tmp_path: Path) -> None:
    world = await _world_with_an_idle_worker(tmp_path)
    [worker] = world.workers()
    [job] = world.submit()
    service = job_service(world.core)  # started before the claim
    world.clock.advance(0.1)
    world.core.jobs.claim("ep", worker.id, 1, world.clock.now(), lease_s=2.0)
    world.clock.advance(2.5)
    world.core.workers.touch(worker)
    service._expired_leases(world.clock.now())
    again = world.job(job.id)
    assert again.status == JobStatus.IN_PROGRESS and again.retries == 0 and again.dropped_at is not None

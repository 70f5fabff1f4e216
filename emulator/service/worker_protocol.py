"""The worker protocol's operations: take, report, stream, stop signals, ping.

Each call is made by an authenticated worker (its own token) and may only touch jobs handed to it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from emulator import wire
from emulator.errors import BadRequest, Conflict, Forbidden, NotFound
from emulator.models import JobStatus
from emulator.service.core import Core
from emulator.service.hub import Change
from emulator.service.jobs import JobService
from emulator.service.payloads import Refusal, check_chunk, check_post
from emulator.store.records import JobRecord, dumps
from emulator.workers.records import WorkerRecord
from emulator.workers.states import WorkerEvent

log = structlog.get_logger("emulator.worker_protocol")


class WorkerProtocol:
    def __init__(self, core: Core, jobs: JobService) -> None:
        self.core = core
        self.jobs = jobs

    @property
    def lease_s(self) -> float:
        return self.core.settings.worker_lost_after_s

    def seen(self, worker: WorkerRecord) -> None:
        self.core.workers.touch(worker)
        if worker.job_ids and worker.last_ping_at is None:
            # a worker that does not ping: any request keeps its jobs leased
            self.core.jobs.renew_leases(worker.id, self.core.clock.now(), self.lease_s)

    @staticmethod
    def _stale(worker: WorkerRecord, start: float | None) -> bool:
        """A long poll held for a container that has since died and been restarted (same worker, same
        token) must not count as the new container's contact nor take jobs for it."""
        return worker.started_at != start or (worker.kind == "container" and worker.started_at is None)

    # --- job-take ------------------------------------------------------------------------------
    async def take(
        self,
        worker: WorkerRecord,
        batch_size: int,
        hold_s: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[wire.JobForWorker]:
        """Long poll: answers the moment a job is queued, or [] when ``hold_s`` passes.

        ``gone`` tells whether the worker hung up: a poll whose worker has exited (closing the
        connection) must not be handed a job it would never see."""
        deadline = self.core.clock.monotonic() + hold_s
        start = worker.started_at
        woken = passed = False
        while True:
            if self._stale(worker, start) or (woken and gone is not None and await gone()):
                # a dead container's poll, or a worker that hung up: end it, pass its wake-up on
                self.core.hub.work_available(worker.endpoint_id, 1)
                return []
            if self.core.hub.closing or self.core.workers.get(worker.id) is None:
                return []
            self.seen(worker)
            if self.core.workers.may_take(worker):
                claimed = self.core.jobs.claim(
                    worker.endpoint_id,
                    worker.id,
                    batch_size,
                    self.core.clock.now(),
                    self.lease_s,
                    breakdown=self._breakdown(worker),
                )
                if claimed:
                    try:
                        self._handed(worker, claimed)
                    except Exception:
                        self.jobs.worker_lost(worker.id, "job-take failed after the claim")
                        raise
                    return [wire.job_for_worker(job) for job in claimed]
            elif worker.paused and woken and not passed:
                # FlashBoot: a paused worker's held poll stays (it takes the job the moment the worker
                # is resumed) but passes the wake-up on, once, to a worker that can take the job now
                self.core.hub.work_available(worker.endpoint_id, 1)
                passed = True
            remaining = deadline - self.core.clock.monotonic()
            if remaining <= 0:
                return []
            woken = await self.core.hub.wait_for_work(worker.endpoint_id, remaining)

    def _breakdown(self, worker: WorkerRecord) -> Callable[[JobRecord], dict[str, Any]]:
        """Each claimed job's breakdown (``claim`` stores it with the hand-over): its queue wait, and
        for the first job a new worker takes, the worker's cold-start timings."""
        now = self.core.clock.now()
        cold = ["consumedBy" not in worker.timings and worker.started_at is not None]

        def breakdown(job: JobRecord) -> dict[str, Any]:
            out: dict[str, Any] = {
                "queueWaitMs": job.delay_ms(now),
                "coldStart": cold[0],
                "workerId": worker.id,
            }
            if cold[0]:
                for key in ("pullS", "createS", "startS", "readyS", "resumeS"):
                    if key in worker.timings:
                        out[key.replace("S", "Ms")] = int(round(worker.timings[key] * 1000))
                worker.timings["consumedBy"] = 1.0
                cold[0] = False
            return out

        return breakdown

    def _handed(self, worker: WorkerRecord, claimed: list[JobRecord]) -> None:
        for job in claimed:
            log.info("job taken", endpoint=worker.endpoint_id, worker=worker.id, job=job.id, **job.breakdown)
        self.core.workers.jobs_assigned(worker, [j.id for j in claimed])
        self.core.hub.publish(Change(worker.endpoint_id, jobs=tuple(j.id for j in claimed)))

    # --- job-done ------------------------------------------------------------------------------
    def _job_of(self, worker: WorkerRecord, job_id: str) -> JobRecord:
        job = self.core.jobs.get(job_id)
        if job is None or job.endpoint_id != worker.endpoint_id:
            raise NotFound(f"job {job_id!r} does not exist (it may have expired or been purged)", job=job_id)
        if job.worker_id != worker.id and worker.id not in job.past_workers:
            raise Forbidden(f"job {job_id!r} was not handed to worker {worker.id!r}", job=job_id)
        return job

    def _refuse(self, worker: WorkerRecord, job: JobRecord, refusal: Refusal) -> BadRequest:
        """Record on the job that a post was refused (its /v1 detail, the log) and the 400 to answer."""
        self.core.jobs.set_result_refused(job.id, refusal.message)
        log.warning(
            "worker post refused",
            endpoint=worker.endpoint_id,
            worker=worker.id,
            job=job.id,
            reason=refusal.message,
        )
        self.core.hub.publish(Change(job.endpoint_id, jobs=(job.id,)))
        return BadRequest(refusal.message, field="output")

    def done(self, worker: WorkerRecord, job_id: str, body: Any, size_bytes: int = 0) -> dict[str, Any]:
        """job-done: a result (COMPLETED, or FAILED with ``error``) or, with ``"status": "IN_PROGRESS"``,
        progress. ``size_bytes`` (the body's) is held to the job's route limit (``payloads``): over it,
        BadRequest (400) and the refusal recorded on the job. Also raises NotFound, Forbidden, Conflict."""
        self.seen(worker)
        job = self._job_of(worker, job_id)
        if not isinstance(body, dict):
            body = {"output": body}
        progress = body.get("status") == "IN_PROGRESS"
        if not job.status.terminal:
            refusal = check_post(
                "progress" if progress else "the result", size_bytes, job.is_sync, self.core.settings
            )
            if refusal is not None:
                raise self._refuse(worker, job, refusal)
        if progress:
            kept = self.core.jobs.set_progress(job_id, body.get("output"))
            if kept:
                self.core.hub.publish(Change(job.endpoint_id, jobs=(job_id,), counted=False))
            return {"accepted": kept, "status": "IN_PROGRESS" if kept else job.status.value}
        if body.get("stopPod"):
            worker.refresh_requested = True
            self.core.workers.save(worker)
            log.info("worker asked to be recycled", endpoint=worker.endpoint_id, worker=worker.id, job=job_id)
        if job.status.terminal:
            self._let_go(worker, job_id)
            raise Conflict(
                f"job {job_id!r} is already {job.status.value}; the result was not recorded", job=job_id
            )
        error = body.get("error")
        if error is not None and error != "":
            text = error if isinstance(error, str) else json.dumps(error)
            finished = self.jobs.finish(
                job, JobStatus.FAILED, output=body.get("output"), error=text, reason="handler error"
            )
        else:
            finished = self.jobs.finish(
                job, JobStatus.COMPLETED, output=body.get("output"), reason="completed"
            )
        if finished is None:
            current = self.core.jobs.get(job_id)
            state = current.status.value if current else "gone"
            raise Conflict(f"job {job_id!r} is already {state}; the result was not recorded", job=job_id)
        if worker.id != job.worker_id:
            # a late result from a worker the job was taken away from: let the new holder stop
            if job.worker_id:
                self.core.hub.publish(
                    Change(job.endpoint_id, stopped_workers=(job.worker_id,), counted=False)
                )
            self.core.workers.job_released(worker, job_id)
        return {"accepted": True, "status": finished.status.value}

    def stream_chunk(self, worker: WorkerRecord, job_id: str, body: Any) -> dict[str, Any]:
        """job-stream: one chunk. Held to RunPod's 1 MB per chunk and, with the chunks before it, to the
        job's route limit (``payloads``): over either, BadRequest (400) and the refusal recorded."""
        self.seen(worker)
        job = self._job_of(worker, job_id)
        if job.status.terminal:
            self._let_go(worker, job_id)
            raise Conflict(
                f"job {job_id!r} is already {job.status.value}; the chunk was not recorded", job=job_id
            )
        chunk = body.get("output") if isinstance(body, dict) and "output" in body else body
        size = len(dumps(chunk).encode())  # as stored
        refusal = check_chunk(size, self.core.streams.total_bytes(job_id), job.is_sync, self.core.settings)
        if refusal is not None:
            raise self._refuse(worker, job, refusal)
        n = self.core.streams.append(job_id, chunk)
        self.core.hub.publish(Change(job.endpoint_id, jobs=(job_id,), counted=False))
        return {"accepted": True, "n": n}

    # --- job-stop ------------------------------------------------------------------------------
    async def stops(self, worker: WorkerRecord, hold_s: float) -> list[str]:
        deadline = self.core.clock.monotonic() + hold_s
        start = worker.started_at
        while True:
            if self._stale(worker, start) or self.core.hub.closing:
                return []
            self.seen(worker)
            ids = self.core.jobs.pending_stops(worker.id)
            extra = self.core.hub.take_stops(worker.id)
            if ids or extra:
                self.core.jobs.clear_stops(ids)
                return sorted(set(ids) | extra)
            remaining = deadline - self.core.clock.monotonic()
            if remaining <= 0 or self.core.workers.get(worker.id) is None:
                return []
            await self.core.hub.wait_for_stop(worker.id, remaining)

    # --- ping ----------------------------------------------------------------------------------
    def ping(self, worker: WorkerRecord, job_ids: list[str], status: str | None, reason: str | None) -> None:
        self.seen(worker)
        if status and status.lower() == "unhealthy":
            text = f"worker reported itself unhealthy: {reason or 'no reason given'}"
            log.warning(
                "worker unhealthy",
                endpoint=worker.endpoint_id,
                worker=worker.id,
                job=",".join(worker.job_ids) or None,
                reason=text,
            )
            self.core.workers.apply(worker, WorkerEvent.FAILED, text)
            self.jobs.worker_lost(worker.id, text)
            return
        # The ping names the jobs the worker really holds: only those keep their lease, so a job
        # whose hand-over was lost (the job-take response never arrived) is requeued when it expires.
        now = worker.last_ping_at = self.core.clock.now()
        self.core.jobs.renew_named(worker.id, job_ids, now, self.lease_s)
        self._not_named(worker, set(job_ids), now)

    def _not_named(self, worker: WorkerRecord, named: set[str], now: float) -> None:
        """Jobs the worker holds that its ping no longer names.

        An ended job (timeout, cancel, TTL) it let go of: released, the worker is free again. A job in
        progress that an earlier ping named: the worker had it and dropped it (RunPod's SDK drops a
        result it cannot post); it is released from the worker but stays IN_PROGRESS until its
        execution timeout, never requeued (RunPod does not run it again). A job never named yet is
        left alone: its hand-over may still be on its way, and its lease decides."""
        released = False
        for job_id in [j for j in worker.ending if j not in named]:
            log.info(
                "worker let go of an ended job", endpoint=worker.endpoint_id, worker=worker.id, job=job_id
            )
            self.core.workers.job_released(worker, job_id)
            released = True
        candidates = [j for j in worker.job_ids if j not in named and j not in worker.ending]
        dropped = self.core.jobs.mark_dropped(worker.id, candidates, now) if candidates else []
        for job_id in dropped:
            log.warning(
                "worker stopped reporting a job; it stays IN_PROGRESS until its execution timeout",
                endpoint=worker.endpoint_id,
                worker=worker.id,
                job=job_id,
            )
            self.core.workers.job_released(worker, job_id)
        if released or dropped:  # the worker is free again: held job-takes re-check
            self.core.hub.publish(Change(worker.endpoint_id, jobs=tuple(dropped), takers_recheck=True))

    def _let_go(self, worker: WorkerRecord, job_id: str) -> None:
        """A post for an ended job: the handler has finished it, the worker no longer runs it."""
        if job_id in worker.ending:
            self.core.workers.job_released(worker, job_id)
            self.core.hub.publish(Change(worker.endpoint_id, takers_recheck=True))

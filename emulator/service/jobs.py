"""Client-side job operations (RunPod's /v2 routes) and the janitor that enforces time limits."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from emulator import wire
from emulator.clock import Clock
from emulator.config import Settings
from emulator.errors import Conflict, NotFound, QueueFull
from emulator.models import Endpoint, JobRequest, JobStatus, WorkerState
from emulator.service.hub import Change, Hub
from emulator.service.webhooks import WebhookSender
from emulator.service.workers import WorkerRegistry
from emulator.store.jobs import JobStore, NewJob, Requeued
from emulator.store.records import JobRecord
from emulator.store.streams import StreamStore
from emulator.workers.records import WorkerRecord

if TYPE_CHECKING:
    from emulator.service.metrics import Metrics

log = structlog.get_logger("emulator.jobs")


def timeout_error(job: JobRecord, now: float) -> str:
    """The error of a job past its execution timeout: what the clock counted and why nothing ended it."""
    text = f"job exceeded its execution timeout of {job.execution_timeout_ms} ms"
    start = job.first_started_at if job.first_started_at is not None else job.started_at
    if job.dropped_at is not None and start is not None:
        text += (
            f"; worker {job.worker_id} stopped reporting the job {max(0.0, job.dropped_at - start):.1f}s after it "
            "started (its pings no longer named it: the worker dropped the result, e.g. one it could not post)"
        )
    elif job.status == JobStatus.IN_QUEUE:
        text += f", counted from its first start (a requeue does not reset it; retries: {job.retries})"
    if job.result_refused:
        text += f"; a result was refused: {job.result_refused}"
    return text


def worker_in_touch(worker: WorkerRecord, now: float, window_s: float) -> bool:
    """PURE: the worker made a request (ping, poll, post) within ``window_s`` and is not UNHEALTHY."""
    last = worker.last_seen_at
    return worker.state != WorkerState.UNHEALTHY and last is not None and now - last <= window_s


def new_job_id(sync: bool) -> str:
    base = f"{uuid.uuid4()}-e1"
    return f"sync-{base}" if sync else base


class JobService:
    """Jobs' use cases: submit, wait, stream, cancel, retry, purge, health, finish, requeue, the janitor.

    Its collaborators are named: the job and stream stores, the worker registry (to release jobs),
    the hub (every write publishes through ``hub.publish``), the webhook sender, the clock, the
    settings, and the metrics (``None``: not recorded). Raises ``NotFound`` for an unknown or expired
    job, ``Conflict`` for a retry of a job that cannot be retried, ``QueueFull`` past the queue bound.
    """

    def __init__(
        self,
        store: JobStore,
        streams: StreamStore,
        workers: WorkerRegistry,
        hub: Hub,
        webhooks: WebhookSender,
        clock: Clock,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.streams = streams
        self.workers = workers
        self.hub = hub
        self.webhooks = webhooks
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self._depth: dict[str, tuple[int, float]] = {}  # endpoint -> (queued jobs, when counted)
        # this process's start: a job handed over before it, and never named by a ping since, may have
        # been claimed by a control plane that was killed before its answer reached the worker
        self.started_at = clock.now()

    def _queue_depth(self, endpoint_id: str, fresh: bool = False) -> int:
        """Queued jobs, recounted at most every 0.5 s (the bound is a guard, not an exact quota).

        Between recounts the figure only grows (each submit adds one; jobs taken are not subtracted),
        so a refusal asks for a ``fresh`` count."""
        now = self.clock.monotonic()
        cached = self._depth.get(endpoint_id)
        if fresh or cached is None or now - cached[1] > 0.5:
            cached = (self.store.queued_count(endpoint_id), now)
            self._depth[endpoint_id] = cached
        return cached[0]

    # --- submit --------------------------------------------------------------------------------
    def queue_limit(self, endpoint: Endpoint) -> int:
        configured = self.settings.max_queue_per_endpoint
        if configured > 0:
            return configured
        return max(50, endpoint.workersMax * 500)  # RunPod's documented bound

    def submit(self, endpoint: Endpoint, request: JobRequest, sync: bool) -> JobRecord:
        now = self.clock.now()
        depth = self._queue_depth(endpoint.id)
        limit = self.queue_limit(endpoint)
        if depth >= limit:
            depth = self._queue_depth(endpoint.id, fresh=True)  # never refuse on a stale, grown count
        if depth >= limit:
            raise QueueFull(f"endpoint {endpoint.id!r} has {depth} jobs queued (limit {limit}); retry later")
        policy = request.policy
        job = self.store.enqueue(
            NewJob(
                id=new_job_id(sync),
                endpoint_id=endpoint.id,
                input=request.input,
                webhook=request.webhook,
                s3_config=request.s3Config,
                low_priority=policy.lowPriority,
                execution_timeout_ms=policy.executionTimeout or endpoint.executionTimeoutMs,
                ttl_ms=policy.ttl or self.settings.default_ttl_ms,
                is_sync=sync,
                has_input="input" in request.model_fields_set,
            ),
            now,
        )
        self._depth[endpoint.id] = (depth + 1, self._depth[endpoint.id][1])
        log.info(
            "job queued",
            endpoint=endpoint.id,
            job=job.id,
            worker=None,
            sync=sync,
            low_priority=policy.lowPriority,
        )
        self.hub.publish(Change(endpoint.id, queued=1))
        return job

    # --- read ----------------------------------------------------------------------------------
    def require(self, endpoint_id: str, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        now = self.clock.now()
        if job is None or job.endpoint_id != endpoint_id or self._expired(job, now):
            raise NotFound(
                f"job {job_id!r} does not exist on endpoint {endpoint_id!r} (or has expired)", job=job_id
            )
        return job

    @staticmethod
    def _expired(job: JobRecord, now: float) -> bool:
        return (job.expires_at is not None and job.expires_at < now) or job.ttl_deadline < now

    async def wait_terminal(self, endpoint_id: str, job_id: str, wait_s: float) -> JobRecord:
        deadline = self.clock.monotonic() + wait_s
        while True:
            job = self.require(endpoint_id, job_id)
            remaining = deadline - self.clock.monotonic()
            if job.status.terminal or remaining <= 0 or self.hub.closing:
                return job
            await self.hub.wait_for_job(job_id, remaining)

    async def stream(self, endpoint_id: str, job_id: str, wait_s: float) -> tuple[JobRecord, list[Any]]:
        """The job and its chunks not yet delivered (now marked delivered); with ``wait_s`` waits for the
        next chunk or the job's end. Raises ``NotFound`` for an unknown or expired job."""
        deadline = self.clock.monotonic() + wait_s
        while True:
            job = self.require(endpoint_id, job_id)
            chunks = self.streams.take_undelivered(job_id)
            remaining = deadline - self.clock.monotonic()
            if chunks or job.status.terminal or remaining <= 0 or self.hub.closing:
                return job, chunks
            await self.hub.wait_for_job(job_id, remaining)

    # --- control -------------------------------------------------------------------------------
    def cancel(self, endpoint_id: str, job_id: str) -> JobRecord:
        job = self.require(endpoint_id, job_id)
        if job.status.terminal:
            return job
        done = self.finish(job, JobStatus.CANCELLED, stop_worker=True, reason="cancelled by the client")
        return done or self.require(endpoint_id, job_id)

    def retry(self, endpoint_id: str, job_id: str) -> JobRecord:
        job = self.require(endpoint_id, job_id)
        if job.status not in (JobStatus.FAILED, JobStatus.TIMED_OUT):
            raise Conflict(
                f"job {job_id!r} is {job.status.value}; only FAILED or TIMED_OUT jobs can be retried"
            )
        again = self.store.retry(job_id, self.clock.now())
        if again is None:
            raise Conflict(f"job {job_id!r} changed state; retry again")
        log.info("job retried", endpoint=endpoint_id, job=job_id, worker=None)
        self.hub.publish(Change(endpoint_id, jobs=(job_id,), queued=1))
        return again

    def purge(self, endpoint_id: str) -> int:
        removed = self.store.purge_queue(endpoint_id)
        log.info("queue purged", endpoint=endpoint_id, removed=len(removed))
        # a /runsync or /status-sync waiting on a removed job answers now (404), not at its wait's end
        self.hub.publish(Change(endpoint_id, jobs=tuple(removed)))
        return len(removed)

    def health(self, endpoint: Endpoint) -> wire.HealthBody:
        """RunPod's /health for ``endpoint`` (queue counts, durable counters, serving workers)."""
        stats = self.store.stats(endpoint.id, self.clock.now())
        counters = self.store.counter(endpoint.id)
        workers = self.workers.for_endpoint(endpoint.id)
        return wire.health_body(stats.in_queue, stats.in_progress, counters, workers)

    # --- endings ---------------------------------------------------------------------------------
    def retention_s(self, job: JobRecord) -> float:
        s = self.settings
        return s.sync_retention_s if job.is_sync else s.run_retention_s

    def finish(
        self,
        job: JobRecord,
        status: JobStatus,
        output: Any = None,
        error: str | None = None,
        stop_worker: bool = False,
        reason: str = "",
        from_statuses: tuple[str, ...] = ("IN_QUEUE", "IN_PROGRESS"),
    ) -> JobRecord | None:
        holder = job.worker_id if job.status == JobStatus.IN_PROGRESS else None
        done = self.store.finish(
            job.id,
            status,
            self.clock.now(),
            self.retention_s(job),
            output=output,
            error=error,
            stop_pending=stop_worker and holder is not None,
            from_statuses=from_statuses,
        )
        if done is None:
            return None
        log.info(
            "job finished",
            endpoint=job.endpoint_id,
            job=job.id,
            worker=holder,
            status=status.value,
            reason=reason or None,
            delay_ms=done.delay_ms(done.completed_at or 0),
            execution_ms=done.execution_ms(done.completed_at or 0),
        )
        if self.metrics is not None:
            self.metrics.job_finished(done)
        if holder is not None:
            worker = self.workers.get(holder)
            if worker is not None:
                if stop_worker:
                    self.end_on_worker(worker, job.id, reason or status.value.lower())
                else:
                    self.workers.job_released(worker, job.id)
        stopped = (holder,) if stop_worker and holder is not None else ()
        self.hub.publish(Change(job.endpoint_id, jobs=(job.id,), stopped_workers=stopped))
        self.webhooks.schedule(done)
        return done

    def end_on_worker(self, worker: WorkerRecord, job_id: str, reason: str) -> None:
        """A job ended under ``worker`` (timeout, cancel, TTL) and it was sent the stop signal.

        A worker whose pings name the job still runs its handler (RunPod's SDK cannot interrupt a sync
        handler): it stays RUNNING, holding the job, until a ping no longer names it; the supervisor
        stops and replaces it past ``ended_job_grace_s``. A worker that does not ping (nothing tells
        whether it still runs the job), or that does not hold the job, is released at once."""
        if job_id in worker.job_ids and worker.last_ping_at is not None:
            self.workers.job_ending(worker, job_id, reason)
        else:
            self.workers.job_released(worker, job_id)

    def requeued(self, outcomes: list[Requeued], worker_id: str | None = None) -> None:
        for outcome in outcomes:
            log.info(
                "job requeued" if not outcome.failed else "job failed: retries exhausted",
                endpoint=outcome.endpoint_id,
                job=outcome.job_id,
                worker=worker_id,
            )
            if worker_id is not None:
                worker = self.workers.get(worker_id)
                if worker is not None:
                    self.workers.job_released(worker, outcome.job_id)
            if outcome.failed:
                job = self.store.get(outcome.job_id)
                if job is not None:
                    self.webhooks.schedule(job)
            queued = 0 if outcome.failed else 1
            self.hub.publish(Change(outcome.endpoint_id, jobs=(outcome.job_id,), queued=queued))

    def worker_lost(self, worker_id: str, reason: str) -> int:
        """Give the jobs of a vanished worker back to the queue (retries + 1)."""
        outcomes = self.store.requeue_worker(
            worker_id, self.clock.now(), self.settings.max_job_retries, reason
        )
        self.requeued(outcomes, worker_id)
        worker = self.workers.get(worker_id)
        if worker is not None:  # ended jobs it still ran: gone with it
            for job_id in list(worker.ending):
                self.workers.job_released(worker, job_id)
        return len(outcomes)

    # --- janitor -------------------------------------------------------------------------------
    def sweep(self) -> None:
        """One pass: execution timeouts, expired leases, TTL and retention."""
        now = self.clock.now()
        for job in self.store.overdue(now):
            self.finish(
                job,
                JobStatus.TIMED_OUT,
                error=timeout_error(job, now),
                stop_worker=job.status == JobStatus.IN_PROGRESS and job.dropped_at is None,
                reason="execution timeout",
                from_statuses=(job.status.value,),
            )
        self._expired_leases(now)
        for job in self.store.delete_expired(now):
            stopped: tuple[str, ...] = ()
            if job.status == JobStatus.IN_PROGRESS and job.worker_id:
                self.hub.stop_jobs(job.worker_id, {job.id})
                worker = self.workers.get(job.worker_id)
                if worker is not None:
                    self.end_on_worker(worker, job.id, "ttl expired")
                stopped = (job.worker_id,)
            self.hub.publish(Change(job.endpoint_id, jobs=(job.id,), stopped_workers=stopped))

    def _expired_leases(self, now: float) -> None:
        """Leases that ran out: requeued when the worker is gone or silent (RunPod re-runs a job only
        when its worker is lost), or when the hand-over may have been lost in a control-plane crash
        (``_handed_before_crash``); otherwise the live worker dropped the job (RunPod's SDK pings on a
        timer, so a job it finished or dropped within one interval was never named): it stays
        IN_PROGRESS until its execution timeout, and is not run again."""
        lost: list[str] = []
        s = self.settings
        # in touch: a request within three ping intervals (a worker that died since its last ping is
        # not taken for a live one), and never longer than worker_lost_after_s
        window_s = min(s.worker_lost_after_s, max(1.0, 3 * s.ping_interval_ms / 1000))
        for job in self.store.expired_leases(now):
            worker = self.workers.get(job.worker_id) if job.worker_id else None
            if worker is None or not worker_in_touch(worker, now, window_s) or self._handed_before_crash(job):
                lost.append(job.id)
            elif self.store.mark_dropped(worker.id, [job.id], now, named_only=False):
                log.warning(
                    "worker stopped reporting a job; it stays IN_PROGRESS until its execution timeout",
                    endpoint=job.endpoint_id,
                    worker=worker.id,
                    job=job.id,
                )
                self.workers.job_released(worker, job.id)  # the worker is free: held job-takes re-check
                self.hub.publish(Change(job.endpoint_id, jobs=(job.id,), takers_recheck=True))
        outcomes = self.store.requeue_jobs(
            lost, now, self.settings.max_job_retries, "its worker stopped answering (lease expired)"
        )
        self._release_requeued_from_workers(outcomes)

    def _handed_before_crash(self, job: JobRecord) -> bool:
        """Claimed by an earlier control-plane process and never named by its worker's pings since: the
        answer to that job-take may have died with the process (SIGKILL between the claim's commit and
        the socket write), so a worker in touch that does not name it never had it. Requeued (a counted
        retry: at least once, never lost), not taken for dropped."""
        return job.named_at is None and job.started_at is not None and job.started_at < self.started_at

    def _release_requeued_from_workers(self, outcomes: list[Requeued]) -> None:
        if not outcomes:
            return
        wanted = {o.job_id for o in outcomes}
        for worker in self.workers.all():
            for job_id in [j for j in worker.job_ids if j in wanted]:
                self.workers.job_released(worker, job_id)
        self.requeued(outcomes)

    async def run_janitor(self, stop: asyncio.Event) -> None:
        interval = self.settings.janitor_interval_s
        while not stop.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("janitor pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

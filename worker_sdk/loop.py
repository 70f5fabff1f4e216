"""The production worker: takes jobs, runs them concurrently, posts results, drains on SIGTERM."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import log, polling, progress, transport
from .jobs import Execution, JobGone, error_payload, handler_kind
from .report import GONE, OK, REJECTED, Link, deliver, encode

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Any

    from .config import Settings
    from .heartbeat import Heartbeat


class JobContext:
    __slots__ = (
        "job",
        "id",
        "task",
        "handler_task",
        "execution",
        "stopped",
        "closed",
        "posting",
        "progress_pending",
        "progress_task",
        "progress_busy",
    )
    # The attributes __init__ sets to None (the rest are inferred from __init__).
    id: str
    task: asyncio.Future[None] | None
    handler_task: asyncio.Future[tuple[dict[str, Any], bool]] | None
    execution: Execution | None
    progress_pending: bytes | None
    progress_task: asyncio.Future[None] | None

    def __init__(self, job: dict[str, Any]) -> None:
        self.job, self.id = job, job["id"]
        self.task = self.handler_task = self.execution = None
        self.stopped = self.closed = self.posting = self.progress_busy = False
        self.progress_pending = self.progress_task = None


class Worker:
    def __init__(self, config: dict[str, Any], settings: Settings) -> None:
        self.handler = config["handler"]
        self.kind = handler_kind(self.handler)
        self.modifier = config.get("concurrency_modifier")
        self.aggregate = bool(config.get("return_aggregate_stream", False))
        self.refresh = bool(config.get("refresh_worker", False))
        self.settings = settings
        self.link = Link()
        self.jobs: dict[str, JobContext] = {}  # in flight until the final POST is done
        self.job_ids: tuple[str, ...] = ()  # immutable snapshot for the heartbeat thread
        self.concurrency = 1
        self.exit_code = 0
        self.completed = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # set by run()
        self.heartbeat: Heartbeat | None = None
        self._warned_no_stream = False

    # ---- lifecycle ------------------------------------------------------------------------
    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.shutdown = asyncio.Event()
        self.drained = asyncio.Event()
        self.force = asyncio.Event()
        self.wake = asyncio.Event()
        self.has_jobs = asyncio.Event()
        self._shutdown_at: float | None = None  # loop time of request_shutdown
        progress.attach(self)
        if self.settings.ping_url:
            from .heartbeat import Heartbeat

            self.heartbeat = Heartbeat(self.settings, lambda: self.job_ids)
            self.heartbeat.start()
        log.info(
            "worker {} started: {} handler {}, job-take {}".format(
                self.settings.worker_id,
                self.kind,
                getattr(self.handler, "__name__", "?"),
                (self.settings.job_take_url or "").partition("?")[0],
            )
        )
        fetch = asyncio.ensure_future(self._guard(polling.fetch_jobs(self), "job-take loop"))
        stops = asyncio.ensure_future(self._guard(polling.watch_stops(self), "job-stop loop"))
        try:
            await self.shutdown.wait()
            await asyncio.wait({fetch})
            await self._drain()
        finally:
            self.drained.set()
            self.wake.set()
            for task in (fetch, stops):
                task.cancel()
            await asyncio.wait({fetch, stops})
            if self.heartbeat is not None:
                self.heartbeat.stop()
            progress.detach(self)
            transport.close_idle()
        log.info(f"worker {self.settings.worker_id} stopped after {self.completed} job(s)")
        return self.exit_code

    async def _guard(self, coro: Awaitable[None], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a loop must not leave a zombie worker
            log.error(f"{name} crashed: {type(exc).__name__}: {exc}; shutting down")
            self.request_shutdown("internal error", exit_code=1)

    def request_shutdown(self, reason: str, exit_code: int = 0) -> None:
        if self.shutdown.is_set():
            return
        self.exit_code = exit_code
        self._shutdown_at = self._now()
        log.info(f"shutting down ({reason}): taking no new job, {len(self.jobs)} in flight")
        self.shutdown.set()
        self.wake.set()

    def on_signal(self, name: str) -> None:
        if self.shutdown.is_set():
            log.warn(f"{name} received again: not waiting any longer for in-flight jobs")
            self.force.set()
        else:
            self.request_shutdown(name + " received")

    def _now(self) -> float:
        assert self.loop is not None, "the worker is not running"
        return self.loop.time()

    def _running(self) -> list[tuple[JobContext, asyncio.Future[None]]]:  # start_job sets every task
        return [(c, c.task) for c in self.jobs.values() if c.task is not None and not c.task.done()]

    async def _drain(self) -> None:
        assert self._shutdown_at is not None, "_drain runs after request_shutdown"
        deadline = self._shutdown_at + self.settings.grace_s
        if self.jobs:
            log.info(f"waiting up to {self.settings.grace_s:g}s for {len(self.jobs)} in-flight job(s)")
        while True:
            pending: set[asyncio.Future[Any]] = {task for _, task in self._running()}
            remaining = deadline - self._now()
            if not pending or remaining <= 0 or self.force.is_set():
                break
            forced = asyncio.ensure_future(self.force.wait())
            await asyncio.wait(pending | {forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
        leftovers = self._running()
        for ctx, task in leftovers:
            log.error("grace period over: job abandoned, its result was NOT posted", ctx.id)
            task.cancel()
        if leftovers:
            await asyncio.wait({task for _, task in leftovers}, timeout=2.0)

    # ---- jobs -----------------------------------------------------------------------------
    def update_concurrency(self) -> None:
        if self.modifier is None:
            return
        try:
            wanted = int(self.modifier(self.concurrency))
        except Exception as exc:
            log.error(f"concurrency_modifier raised {type(exc).__name__}: {exc}; keeping {self.concurrency}")
            return
        wanted = max(1, wanted)
        if wanted != self.concurrency:
            log.debug(f"concurrency {self.concurrency} -> {wanted}")
            self.concurrency = wanted

    def start_job(self, job: dict[str, Any]) -> None:
        if job["id"] in self.jobs:
            log.warn("job handed out again while still in flight; ignored", job["id"])
            return
        ctx = JobContext(job)
        self.jobs[ctx.id] = ctx
        self.job_ids = tuple(self.jobs)
        ctx.task = asyncio.ensure_future(self._job_main(ctx))
        self.has_jobs.set()

    def stop_job(self, job_id: str) -> None:
        ctx = self.jobs.get(job_id)
        if ctx is None or ctx.stopped:
            log.debug("stop signal for a job not in flight; ignored", job_id)
            return
        if ctx.posting:
            log.info("stop signal after the handler finished; the control plane decides", job_id)
            return
        ctx.stopped = True
        progress.abort(ctx)
        if ctx.handler_task is not None:
            ctx.handler_task.cancel()
        thread = ctx.execution.thread if ctx.execution is not None else None
        if thread is not None and thread.is_alive():
            log.warn(
                "stopping a sync handler: it cannot be interrupted, keeps running in its thread, "
                "and its result will be discarded",
                job_id,
            )
        else:
            log.info("stopping job", job_id)

    async def _job_main(self, ctx: JobContext) -> None:
        try:
            if ctx.stopped:  # stopped before it even started
                log.info("stopped before starting: no result posted", ctx.id)
                return
            log.info("started", ctx.id)
            ctx.execution = Execution(
                self.handler,
                self.kind,
                ctx.job,
                lambda item: self._emit(ctx, item),
                self.aggregate,
                self.settings.worker_id,
                self.settings.hostname,
            )
            ctx.handler_task = asyncio.ensure_future(ctx.execution.run())
            try:
                result, is_stream = await ctx.handler_task
            except asyncio.CancelledError:
                if not ctx.stopped:
                    raise
                result = None
            except JobGone:
                log.warn("the control plane no longer knows this job; stopping it without a result", ctx.id)
                return
            except Exception as exc:  # a bug in the SDK itself: still report the job as failed
                log.error(f"internal error while running the job: {type(exc).__name__}: {exc}", ctx.id)
                result, is_stream = error_payload(exc, self.settings.worker_id, self.settings.hostname), False
            if ctx.stopped or result is None:
                log.info("stopped: no result posted", ctx.id)
                return
            ctx.posting = True
            if self.refresh:
                result["stopPod"] = True
            if result.get("stopPod"):
                self.request_shutdown("refresh_worker: exiting after this job so the worker is replaced")
            await progress.finish(self, ctx)
            await self._post_result(ctx, result, is_stream)
        finally:
            progress.abort(ctx)
            self.jobs.pop(ctx.id, None)
            self.job_ids = tuple(self.jobs)
            self.completed += 1
            self.wake.set()

    async def _emit(self, ctx: JobContext, item: Any) -> None:
        if not self.settings.job_stream_template:
            if not self._warned_no_stream:
                log.warn("RUNPOD_WEBHOOK_POST_STREAM is not set: streamed items are not sent", ctx.id)
                self._warned_no_stream = True
            return
        body = encode({"output": item})  # TypeError here becomes the job's error
        outcome, _ = await deliver(
            self, "stream chunk", self.settings.stream_url(ctx.id), body, ctx.id, self.settings.post_timeout_s
        )
        if outcome == GONE:
            raise JobGone(ctx.id)

    async def _post_result(self, ctx: JobContext, result: dict[str, Any], is_stream: bool) -> None:
        try:
            body = encode(result)
        except (TypeError, ValueError) as exc:
            log.error(f"handler output is not JSON serializable: {exc}", ctx.id)
            body = encode(
                error_payload(
                    TypeError(f"handler output is not JSON serializable: {exc}"),
                    self.settings.worker_id,
                    self.settings.hostname,
                )
            )
        url = self.settings.done_url(ctx.id, is_stream)
        outcome, status = await deliver(self, "result", url, body, ctx.id, self.settings.post_timeout_s)
        if outcome == REJECTED and "error" not in result:
            reason = ValueError(f"the control plane rejected the result with HTTP {status}")
            body = encode(error_payload(reason, self.settings.worker_id, self.settings.hostname))
            outcome, status = await deliver(
                self,
                "result (error in place of the rejected output)",
                url,
                body,
                ctx.id,
                self.settings.post_timeout_s,
            )
        if outcome == OK:
            log.info("finished: %s result posted" % ("error" if "error" in result else "output"), ctx.id)
        elif outcome == REJECTED:
            log.error(f"result could not be delivered (HTTP {status})", ctx.id)

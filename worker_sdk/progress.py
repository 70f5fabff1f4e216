"""``progress_update`` and the per-job progress channel.

Ordering guarantee: a job's progress POSTs go out one at a time, newest value wins (pending
values are coalesced), and the final result is only sent after the progress POST on the wire
finished (or ``progress_flush_s`` passed); progress that was not sent yet, or that arrives after
the job ended, is dropped. So progress can never overwrite or race the final result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import log

if TYPE_CHECKING:
    from typing import Any

    from .loop import JobContext, Worker

_worker: Worker | None = None  # the running Worker, if any (set by loop.Worker.run)


def attach(worker: Worker) -> None:
    global _worker
    _worker = worker


def detach(worker: Worker) -> None:
    global _worker
    if _worker is worker:
        _worker = None


def progress_update(job: dict[str, Any] | str, data: Any) -> None:
    """Report ``data`` as the job's IN_PROGRESS output. Safe from any thread; never blocks."""
    job_id: str | None = job.get("id") if isinstance(job, dict) else job
    worker = _worker
    if worker is None or worker.loop is None:
        log.info(f"progress: {data!r}", job_id)  # local mode, or no worker running
        return
    from .report import encode

    try:
        body = encode({"status": "IN_PROGRESS", "output": data})
    except (TypeError, ValueError) as exc:
        log.error(f"progress_update: data is not JSON serializable ({exc}); not sent", job_id)
        return
    try:
        worker.loop.call_soon_threadsafe(_enqueue, worker, job_id, body)
    except RuntimeError:  # loop closed: the worker is gone
        log.debug("progress dropped: the worker has stopped", job_id)


def _enqueue(worker: Worker, job_id: str | None, body: bytes) -> None:
    ctx = worker.jobs.get(job_id) if job_id is not None else None
    if ctx is None or ctx.closed:
        log.debug("progress dropped: the job has already ended", job_id)
        return
    ctx.progress_pending = body
    if ctx.progress_task is None or ctx.progress_task.done():
        import asyncio

        ctx.progress_task = asyncio.ensure_future(_send(worker, ctx))


async def _send(worker: Worker, ctx: JobContext) -> None:
    from .report import deliver

    settings = worker.settings

    def busy(flag: bool) -> None:
        ctx.progress_busy = flag

    while ctx.progress_pending is not None and not ctx.closed:
        body, ctx.progress_pending = ctx.progress_pending, None
        await deliver(
            worker,
            "progress update",
            settings.done_url(ctx.id, False),
            body,
            ctx.id,
            settings.progress_timeout_s,
            keep_going=lambda: not ctx.closed,
            busy=busy,
        )


async def finish(worker: Worker, ctx: JobContext) -> None:
    """Close the channel before the final result: let a POST on the wire finish, drop the rest."""
    import asyncio

    ctx.closed = True
    ctx.progress_pending = None
    task = ctx.progress_task
    if task is None or task.done():
        return
    if ctx.progress_busy:
        await asyncio.wait({task}, timeout=worker.settings.progress_flush_s)
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
        log.debug("pending progress update abandoned before the final result", ctx.id)


def abort(ctx: JobContext) -> None:
    """Drop a stopped or abandoned job's progress at once."""
    ctx.closed = True
    ctx.progress_pending = None
    if ctx.progress_task is not None and not ctx.progress_task.done():
        ctx.progress_task.cancel()

"""The two long polls: job-take (fetch work) and job-stop (cancellations and timeouts)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from . import log
from .report import backoff
from .transport import Response, TransportError, request

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Any, TypeVar

    from .loop import Worker

    T = TypeVar("T")


async def interruptible(coro: Awaitable[T], event: asyncio.Event) -> T | None:
    """Await ``coro`` unless ``event`` fires first; then cancel it and return None."""
    task = asyncio.ensure_future(coro)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        return None
    return task.result()  # an answer that raced the event is still used: those jobs are ours


async def pause(seconds: float, event: asyncio.Event) -> None:
    """Sleep, waking early when ``event`` is set."""
    if seconds <= 0 or event.is_set():
        return
    # asyncio.TimeoutError: not the builtin TimeoutError on Python 3.9
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _parse_jobs(response: Response) -> list[dict[str, Any]]:
    try:
        payload = response.json()
    except ValueError as exc:
        log.error(f"job-take answered 200 with a body that is not JSON ({exc}): {response.text(120)!r}")
        return []
    if payload is None:
        return []
    items = [payload] if isinstance(payload, dict) else payload if isinstance(payload, list) else None
    if items is None:
        log.error(f"job-take answered 200 with neither a job object nor a list: {response.text(120)!r}")
        return []
    jobs: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), (str, int)) or item.get("id") == "":
            log.error(f"job-take returned a job without an id; ignored: {item!r}")
            continue
        item["id"] = str(item["id"])
        if "input" not in item:
            log.warn("job has no 'input' field", item["id"])
        jobs.append(item)
    return jobs


async def fetch_jobs(worker: Worker) -> None:
    """Take jobs while there is room, until shutdown. Never raises on control-plane trouble."""
    settings, loop = worker.settings, asyncio.get_running_loop()
    failures = 0
    while not worker.shutdown.is_set():
        worker.update_concurrency()
        needed = worker.concurrency - len(worker.jobs)
        if needed <= 0:
            worker.wake.clear()
            await pause(1.0, worker.wake)  # a job ended, shutdown, or re-ask the concurrency modifier
            continue
        if not settings.can_batch:
            needed = 1
        url = settings.take_url(needed, bool(worker.jobs))
        started = loop.time()
        try:
            response = await interruptible(
                request("GET", url, headers=settings.headers(), timeout=settings.take_timeout_s),
                worker.shutdown,
            )
        except TransportError as exc:
            failures += 1
            worker.link.failure("job-take", str(exc), url)
            await pause(backoff(settings, failures - 1), worker.shutdown)
            continue
        if response is None:
            break  # shutdown while polling
        delay = 0.0
        status = response.status
        if status == 200:
            failures = 0
            worker.link.success()
            jobs = _parse_jobs(response)
            for job in jobs:
                worker.start_job(job)
            if jobs:
                log.debug(f"took {len(jobs)} job(s)")
                continue
        elif status == 204:
            failures = 0
            worker.link.success()
        elif status == 400:
            log.debug("job-take answered 400 (RunPod: expected with FlashBoot); polling again")
            delay = 1.0
        elif status == 429:
            log.warn(
                f"job-take answered 429 Too Many Requests; backing off {settings.too_many_requests_s:g}s"
            )
            delay = settings.too_many_requests_s
        else:
            failures += 1
            hint = " (check RUNPOD_AI_API_KEY)" if status in (401, 403) else ""
            worker.link.failure("job-take", f"HTTP {status} {response.text(120)}{hint}", url)
            delay = backoff(settings, failures - 1)
        # An empty answer that came back at once (the server did not hold the poll): do not spin.
        delay = max(delay, settings.min_poll_gap_s - (loop.time() - started))
        await pause(delay, worker.shutdown)


def _stop_ids(response: Response) -> list[str]:
    try:
        payload = response.json()
    except ValueError:
        log.warn(f"job-stop answered 200 with a body that is not JSON: {response.text(120)!r}")
        return []
    ids = payload.get("jobsToStop") if isinstance(payload, dict) else None
    if not isinstance(ids, list):
        if payload is not None:
            log.warn(f"job-stop answer has no jobsToStop list: {response.text(120)!r}")
        return []
    return [str(i) for i in ids if isinstance(i, (str, int))]


async def watch_stops(worker: Worker) -> None:
    """Long-poll job-stop while jobs are in flight, until the worker has drained."""
    settings, loop = worker.settings, asyncio.get_running_loop()
    if not settings.job_stop_url:
        log.warn(
            "no job-stop channel (the job-take URL has no /job-take/): cancellations cannot stop handlers"
        )
        return
    failures = 0
    while not worker.drained.is_set():
        if not worker.jobs:
            worker.has_jobs.clear()
            await interruptible(worker.has_jobs.wait(), worker.drained)
            continue
        url = settings.stop_url(True)
        started = loop.time()
        try:
            response = await interruptible(
                request("GET", url, headers=settings.headers(), timeout=settings.stop_timeout_s),
                worker.drained,
            )
        except TransportError as exc:
            failures += 1
            worker.link.failure("job-stop", str(exc), url)
            await pause(backoff(settings, failures - 1), worker.drained)
            continue
        if response is None:
            break
        delay = 0.0
        if response.status == 200:
            failures = 0
            for job_id in _stop_ids(response):
                worker.stop_job(job_id)
        elif response.status == 204:
            failures = 0
        elif response.status == 429:
            delay = settings.too_many_requests_s
        else:
            failures += 1
            worker.link.failure("job-stop", f"HTTP {response.status} {response.text(120)}", url)
            delay = backoff(settings, failures - 1)
        delay = max(delay, settings.min_poll_gap_s - (loop.time() - started))
        await pause(delay, worker.drained)

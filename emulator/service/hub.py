"""In-memory wake-ups for the long polls: job-take, job-stop, runsync and status/stream waits.

Nothing here polls: a waiter parks on a future and is woken by the event that concerns it. The
store stays the source of truth; a woken waiter re-reads it. All calls happen on one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """What one write changed, so that ``Hub.publish`` wakes exactly the waiters it concerns.

    ``jobs``: jobs whose state changed (their /runsync, /status-sync and /stream waiters re-read);
    ``queued``: jobs that became takeable on ``endpoint_id`` (that many held job-takes wake);
    ``stopped_workers``: workers with a new stop signal (their job-stop polls answer);
    ``takers_recheck``: every held job-take of ``endpoint_id`` re-reads (the endpoint went, a worker
    is stopping); ``counted``: the change moves a count the "anything changed" watchers (the dashboard,
    the supervisor's loop) read, such as queue depth or a job's status. A progress update or a stream
    chunk is not counted: it wakes only the job's own waiters, not a reconcile tick per chunk.
    """

    endpoint_id: str | None = None
    jobs: tuple[str, ...] = ()
    queued: int = 0
    stopped_workers: tuple[str, ...] = ()
    takers_recheck: bool = False
    counted: bool = True


class Hub:
    def __init__(self) -> None:
        self._takers: dict[str, deque[asyncio.Future[bool]]] = defaultdict(deque)
        self._stoppers: dict[str, list[asyncio.Future[bool]]] = defaultdict(list)
        self._job_watchers: dict[str, list[asyncio.Future[bool]]] = defaultdict(list)
        self._endpoint_watchers: list[asyncio.Future[bool]] = []
        self._extra_stops: dict[str, set[str]] = defaultdict(set)  # worker -> deleted jobs to stop
        self.closing = False  # the control plane is shutting down: long polls answer now

    def close(self) -> None:
        """Wake every parked long poll; they see ``closing`` and answer at once."""
        self.closing = True
        for endpoint_id in list(self._takers):
            self.wake_all_takers(endpoint_id)
        for worker_id in list(self._stoppers):
            self.stop_available(worker_id)
        for job_id in list(self._job_watchers):
            self.job_changed(job_id)
        self.changed()

    def publish(self, change: Change) -> None:
        """Wake the waiters ``change`` concerns: the one place the services' writes wake long polls."""
        for job_id in change.jobs:
            self.job_changed(job_id)
        if change.endpoint_id is not None:
            if change.takers_recheck:
                self.wake_all_takers(change.endpoint_id)
            elif change.queued:
                self.work_available(change.endpoint_id, change.queued)
        for worker_id in change.stopped_workers:
            self.stop_available(worker_id)
        if change.counted:
            self.changed()

    # --- job-take ------------------------------------------------------------------------------
    async def wait_for_work(self, endpoint_id: str, timeout_s: float) -> bool:
        """Park until ``work_available`` wakes this waiter or ``timeout_s`` passes."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._takers[endpoint_id]
        queue.append(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # woken but the request went away: pass the wake-up on
                self.work_available(endpoint_id, 1)
            raise
        finally:
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                queue.remove(fut)

    def work_available(self, endpoint_id: str, count: int = 1) -> None:
        queue = self._takers.get(endpoint_id)
        while queue and count > 0:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(True)
                count -= 1

    def wake_all_takers(self, endpoint_id: str) -> None:
        self.work_available(endpoint_id, len(self._takers.get(endpoint_id, ())))

    def takers(self, endpoint_id: str) -> int:
        return sum(1 for f in self._takers.get(endpoint_id, ()) if not f.done())

    # --- job-stop ------------------------------------------------------------------------------
    async def wait_for_stop(self, worker_id: str, timeout_s: float) -> bool:
        return await self._park(self._stoppers[worker_id], timeout_s)

    def stop_available(self, worker_id: str) -> None:
        self._wake(self._stoppers.pop(worker_id, []))

    def stop_jobs(self, worker_id: str, job_ids: set[str]) -> None:
        """Jobs the worker must stop that the store no longer holds (deleted at their TTL)."""
        self._extra_stops[worker_id] |= job_ids

    def take_stops(self, worker_id: str) -> set[str]:
        """The deleted jobs ``stop_jobs`` recorded for the worker, forgotten once taken."""
        return self._extra_stops.pop(worker_id, set())

    # --- job changes (runsync, status-sync, stream?wait) ------------------------------------------
    async def wait_for_job(self, job_id: str, timeout_s: float) -> bool:
        return await self._park(
            self._job_watchers[job_id], timeout_s, cleanup_key=(self._job_watchers, job_id)
        )

    def job_changed(self, job_id: str) -> None:
        self._wake(self._job_watchers.pop(job_id, []))

    # --- anything changed (dashboard live updates, supervisor nudges) ------------------------------
    async def wait_for_change(self, timeout_s: float) -> bool:
        return await self._park(self._endpoint_watchers, timeout_s)

    def changed(self) -> None:
        watchers, self._endpoint_watchers = self._endpoint_watchers, []
        self._wake(watchers)

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    async def _park(
        bucket: list[asyncio.Future[bool]],
        timeout_s: float,
        cleanup_key: tuple[dict[str, list[asyncio.Future[bool]]], str] | None = None,
    ) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        bucket.append(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), max(0.0, timeout_s))
        except TimeoutError:
            return False
        finally:
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                bucket.remove(fut)
            if cleanup_key is not None:
                mapping, key = cleanup_key
                if key in mapping and not mapping[key]:
                    del mapping[key]

    @staticmethod
    def _wake(futures: list[asyncio.Future[bool]]) -> None:
        for fut in futures:
            if not fut.done():
                fut.set_result(True)

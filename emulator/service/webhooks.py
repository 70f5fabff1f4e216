"""Client webhooks: POST the status-shaped body (plus input and webhook) when a job ends.

Up to ``webhook_attempts`` tries, ``webhook_interval_s`` apart; each attempt is recorded and
visible at GET /v1/endpoints/{id}/jobs/{job}. Pending deliveries resume after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import structlog

from emulator import wire
from emulator.clock import Clock
from emulator.config import Settings
from emulator.store.records import JobRecord
from emulator.store.streams import WebhookStore

log = structlog.get_logger("emulator.service.webhooks")


class WebhookSender:
    def __init__(
        self,
        store: WebhookStore,
        settings: Settings,
        clock: Clock,
        get_job: Callable[[str], JobRecord | None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.get_job = get_job
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def schedule(self, job: JobRecord) -> None:
        if not job.webhook:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(job.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume_pending(self) -> None:
        for job_id in self.store.pending_job_ids():
            job = self.get_job(job_id)
            if job is not None:
                self.schedule(job)

    async def _deliver(self, job_id: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s, follow_redirects=False)
        attempts = max(1, self.settings.webhook_attempts)
        for attempt in range(1, attempts + 1):
            job = self.get_job(job_id)
            if job is None or not job.webhook:
                return
            url = job.webhook
            status: int | None = None
            error: str | None = None
            try:
                response = await self._client.post(url, json=wire.webhook_body(job, self.clock.now()))
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"answered {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.store.record_attempt(job_id, attempt, self.clock.now(), url, status, error)
            log.info(
                "webhook attempt",
                job=job_id,
                endpoint=job.endpoint_id,
                attempt=attempt,
                status=status,
                error=error,
            )
            if error is None:
                self.store.set_state(job_id, "delivered")
                return
            if attempt < attempts:
                await self.clock.sleep(self.settings.webhook_interval_s)
        self.store.set_state(job_id, "failed")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

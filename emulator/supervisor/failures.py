"""A worker that failed: UNHEALTHY with its reason and back-off, its jobs back to the queue.

Shared by the actuator (lost workers, crashes, start-up timeouts) and the launcher (a container
that could not be created or started). The back-off plan is ``policy.on_failure`` (pure).
"""

from __future__ import annotations

import asyncio

import structlog

from emulator.errors import EmulatorError
from emulator.models import BackoffPolicy
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.service.jobs import JobService
from emulator.supervisor import policy
from emulator.supervisor.faults import Faults
from emulator.workers.records import WorkerRecord
from emulator.workers.states import WorkerEvent

log = structlog.get_logger("emulator.supervisor")

LOG_TAIL_LINES = 15
LOG_TAIL_CHARS = 3000


class Failures:
    """``mark_failed(worker, reason, backoff, tail)`` and ``log_tail(container_id)``."""

    def __init__(self, core: Core, jobs: JobService, runtime: Runtime, faults: Faults) -> None:
        self.core = core
        self.jobs = jobs
        self.runtime = runtime
        self.faults = faults

    def mark_failed(self, worker: WorkerRecord, reason: str, backoff: BackoffPolicy, tail: str = "") -> None:
        """UNHEALTHY with the reason (and the container's last lines), jobs back to the queue."""
        now = self.core.clock.now()
        reason = self.faults.explain(worker.id, reason)
        plan = policy.on_failure(worker.restarts, worker.first_failure_at, worker.ready_at, now, backoff)
        text = f"{reason}; {plan.note}"
        if tail:
            text += f"; last log lines:\n{tail}"
        self.core.workers.apply(
            worker,
            WorkerEvent.FAILED,
            text,
            restarts=plan.restarts,
            first_failure_at=plan.first_failure_at,
            next_retry_at=plan.next_retry_at,
            gpu_ids=[],  # its container is dead: its GPUs are free for others until it restarts
        )
        requeued = self.jobs.worker_lost(worker.id, reason)
        log.warning(
            "worker failed",
            endpoint=worker.endpoint_id,
            worker=worker.id,
            reason=reason,
            requeued=requeued,
            next_retry_at=plan.next_retry_at,
            restarts=plan.restarts,
        )
        self.core.hub.wake_all_takers(worker.endpoint_id)
        self.core.hub.changed()

    async def log_tail(self, container_id: str | None) -> str:
        """The container's last ``LOG_TAIL_LINES`` lines (at most ``LOG_TAIL_CHARS``), or why not."""
        if not container_id:
            return ""
        try:
            text = await asyncio.wait_for(self.runtime.logs(container_id, tail=LOG_TAIL_LINES), 5.0)
        except (EmulatorError, TimeoutError) as exc:
            return f"(logs unavailable: {getattr(exc, 'message', exc)})"
        text = text.strip("\n")
        return text[-LOG_TAIL_CHARS:] if text else "(no output)"

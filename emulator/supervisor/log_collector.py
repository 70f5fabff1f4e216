"""Copies every worker container's output into the endpoint's log store (``Core.logs``) as it is
written, so that it outlives the container (RunPod's endpoint logs: serverless/development/logs).

One task per started container follows its output (``Runtime.follow_logs``) until the container
stops. Each line is tagged with the worker and its job: the ``requestId`` of RunPod's SDK JSON log
lines when there is one, else the job the worker held when the line arrived. ``EMULATOR_ENDPOINT_LOG_MB=0``
turns collection off. Containers adopted after a control-plane restart are not followed (their earlier
output would be stored twice); their next container is.
"""

from __future__ import annotations

import asyncio

import structlog

from emulator.errors import EmulatorError
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.store.endpoint_logs import job_of_line

log = structlog.get_logger("emulator.supervisor")


class LogCollector:
    def __init__(self, core: Core, runtime: Runtime) -> None:
        self.core = core
        self.runtime = runtime
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        return self.core.settings.endpoint_log_mb > 0

    def follow(self, endpoint_id: str, worker_id: str, container_id: str) -> None:
        """Start copying ``container_id``'s output (once per container)."""
        if not self.enabled or container_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(
            self._pump(endpoint_id, worker_id, container_id), name=f"logs-{worker_id}"
        )
        self._tasks[container_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(container_id, None))

    async def _pump(self, endpoint_id: str, worker_id: str, container_id: str) -> None:
        core = self.core
        try:
            async for line in self.runtime.follow_logs(container_id):
                worker = core.workers.get(worker_id)
                current = worker.job_ids[0] if worker is not None and worker.job_ids else None
                core.logs.append(endpoint_id, worker_id, job_of_line(line, current), line, core.clock.now())
        except asyncio.CancelledError:
            raise
        except EmulatorError as exc:  # the container went away under us: its output so far is kept
            log.debug("worker output no longer followed", endpoint=endpoint_id, worker=worker_id, error=exc.message)
        except OSError as exc:  # the data dir: full or read-only; the worker itself is not affected
            log.warning("worker output not stored", endpoint=endpoint_id, worker=worker_id, error=str(exc))

    async def close(self) -> None:
        """Stop following every container (at shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""Copies every worker container's output into the endpoint's log store (``Core.logs``) as it is
written, so that it outlives the container (RunPod's endpoint logs: serverless/development/logs).

One task per started container follows its output with the engine's timestamps
(``Runtime.follow_logs(..., timestamps=True)``) until the container stops. Each line is stored with
the time it was written, its worker and its job: the ``requestId`` of RunPod's SDK JSON log lines when
there is one, else the job the worker was running at that time (``JobStore.running_at``), so a line
read a moment after its job finished still belongs to it. The engine stamps a line when it reads it
from the container, which can be a little after the worker reported the job done: a line stamped up to
``AFTER_JOB_S`` after a job finished (and before the next began) is that job's. ``EMULATOR_ENDPOINT_LOG_MB=0`` turns
collection off. Containers adopted after a control-plane restart are not followed (their earlier output
would be stored twice); their next container is.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import structlog

from emulator.errors import EmulatorError
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.store.endpoint_logs import job_of_line

log = structlog.get_logger("emulator.supervisor")
AFTER_JOB_S = 1.0
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d) ?")


def split_stamp(line: str) -> tuple[float | None, str]:
    """``("2026-11-30T17:40:00.123456789Z hello")`` -> ``(unix seconds, "hello")``; ``(None, line)``
    when the line carries no timestamp."""
    match = _STAMP.match(line)
    if match is None:
        return None, line
    whole, fraction, zone = match.groups()
    text = f"{whole}.{(fraction or '0')[:6]}{'+00:00' if zone == 'Z' else zone}"
    try:
        return datetime.fromisoformat(text).timestamp(), line[match.end() :]
    except ValueError:
        return None, line


class LogCollector:
    def __init__(self, core: Core, runtime: Runtime) -> None:
        self.core = core
        self.runtime = runtime
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last_job: dict[str, tuple[str, float, float | None]] = {}  # worker -> (job, started, completed)

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

    def job_at(self, worker_id: str, at: float) -> str | None:
        """The job ``worker_id`` was running at ``at`` (the last one found is remembered)."""
        last = self._last_job.get(worker_id)
        if last is not None and last[1] <= at:
            if last[2] is not None and at <= last[2]:
                return last[0]  # (in the grace after it, a job begun since would win: asked below)
            worker = self.core.workers.get(worker_id)
            if last[2] is None and worker is not None and last[0] in worker.job_ids:
                return last[0]  # still running: a line of it

        job = self.core.jobs.running_at(worker_id, at, AFTER_JOB_S)
        if job is None or job.started_at is None:
            return None
        self._last_job[worker_id] = (job.id, job.started_at, job.completed_at)
        return job.id

    async def _pump(self, endpoint_id: str, worker_id: str, container_id: str) -> None:
        core = self.core
        try:
            async for raw in self.runtime.follow_logs(container_id, timestamps=True):
                stamp, line = split_stamp(raw)
                at = stamp if stamp is not None else core.clock.now()
                job = job_of_line(line, None) or self.job_at(worker_id, at)
                core.logs.append(endpoint_id, worker_id, job, line, at)
        except asyncio.CancelledError:
            raise
        except EmulatorError as exc:  # the container went away under us: its output so far is kept
            log.debug(
                "worker output no longer followed", endpoint=endpoint_id, worker=worker_id, error=exc.message
            )
        except OSError as exc:  # the data dir: full or read-only; the worker itself is not affected
            log.warning("worker output not stored", endpoint=endpoint_id, worker=worker_id, error=str(exc))
        finally:
            self._last_job.pop(worker_id, None)

    async def close(self) -> None:
        """Stop following every container (at shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

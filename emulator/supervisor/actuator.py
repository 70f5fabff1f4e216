"""Carries out the reconcile plan: the only part of the supervisor that changes containers and workers.

Each action has a synchronous part, done at once (a record created, a worker marked stopping, a state
applied) and, where containers are involved, an operation run as a task so that one slow ``docker``
call never holds up the loop. A worker with an operation in flight is ``busy``: the planner leaves it
alone until the operation ends. Container starts share a semaphore (``max_concurrent_starts``).
Every state change goes through ``registry.apply`` with a reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from emulator import metrics
from emulator.config import Settings
from emulator.core import Core
from emulator.errors import EmulatorError
from emulator.models import BackoffPolicy, Endpoint
from emulator.runtime.base import Runtime
from emulator.service.jobs import JobService
from emulator.supervisor import policy
from emulator.supervisor.containers import container_spec
from emulator.supervisor.reconcile import (
    Action,
    Adopt,
    CreateStandby,
    Drain,
    Fail,
    MarkOutdated,
    Remove,
    RemoveContainer,
    Restart,
    Start,
)
from emulator.supervisor.states import WorkerEvent
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.supervisor")

LOG_TAIL_LINES = 15
LOG_TAIL_CHARS = 3000
STANDBY_RETRY_S = 5.0


class Actuator:
    def __init__(
        self, core: Core, jobs: JobService, settings: Settings, runtime: Runtime, instance: str
    ) -> None:
        self.core = core
        self.jobs = jobs
        self.settings = settings
        self.runtime = runtime
        self.instance = instance
        self.worker_url = ""
        self.on_done: Callable[[], None] = lambda: None  # the loop's wake-up
        self._ops: dict[str, asyncio.Task[None]] = {}
        self._starts = asyncio.Semaphore(max(1, settings.max_concurrent_starts))
        self._standby_blocked_until: dict[str, float] = {}

    # --- bookkeeping ---------------------------------------------------------------------------
    def busy(self) -> set[str]:
        return {key for key, task in self._ops.items() if not task.done()}

    def _spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        if key in self._ops and not self._ops[key].done():
            coro.close()
            return
        task = asyncio.create_task(self._guard(key, coro), name=f"supervisor-op:{key}")
        self._ops[key] = task

    async def _guard(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except EmulatorError as exc:
            log.warning("supervisor operation failed; the next tick retries", op=key, error=exc.message)
        except Exception:
            log.exception("supervisor operation failed", op=key)
        finally:
            if self._ops.get(key) is asyncio.current_task():
                del self._ops[key]
            self.on_done()

    async def wait_ops(self, keys: set[str] | None = None, timeout_s: float | None = None) -> None:
        """Wait for in-flight operations (all, or those of ``keys``) to end."""
        tasks = [t for k, t in list(self._ops.items()) if (keys is None or k in keys) and not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def cancel_all(self) -> None:
        tasks = [t for t in self._ops.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- dispatch ------------------------------------------------------------------------------
    def run(self, action: Action, endpoint: Endpoint | None) -> None:
        """Carry out one planned action. Never raises: a failure is logged and the next tick retries."""
        try:
            self._run(action, endpoint)
        except Exception:
            log.exception("supervisor action failed", action=repr(action))

    def _run(self, action: Action, endpoint: Endpoint | None) -> None:
        workers = self.core.workers
        if isinstance(action, RemoveContainer):
            self._spawn(
                f"container:{action.container_id}", self._remove_container(action.container_id, action.reason)
            )
            return
        if isinstance(action, Start | CreateStandby):
            assert endpoint is not None
            self._start(action, endpoint)
            return
        worker = workers.get(action.worker_id)
        if worker is None:
            return
        if isinstance(action, Fail):
            self._spawn(worker.id, self._fail(worker, action, endpoint))
        elif isinstance(action, Restart):
            assert endpoint is not None
            self._restart(worker, action.reason, endpoint)
        elif isinstance(action, Remove):
            self.mark_stopping(worker)
            self._spawn(worker.id, self.remove(worker, action.reason))
        elif isinstance(action, Drain):
            self.mark_stopping(worker, f"draining: {action.reason}")
            log.info(
                "worker draining",
                endpoint=worker.endpoint_id,
                worker=worker.id,
                reason=action.reason,
                jobs=list(worker.job_ids),
            )
        elif isinstance(action, MarkOutdated):
            workers.apply(worker, WorkerEvent.OUTDATED, action.reason)
            self.core.hub.wake_all_takers(worker.endpoint_id)
        elif isinstance(action, Adopt):
            # a fresh liveness grace: it could not reach us while the control plane was down
            worker.last_seen_at = self.core.clock.now()
            workers.save(worker)
            log.info(
                "worker adopted",
                endpoint=worker.endpoint_id,
                worker=worker.id,
                container=action.container_id[:12],
                state=worker.state.value,
            )

    def mark_stopping(self, worker: WorkerRecord, reason: str | None = None) -> None:
        """Takes no new job from now on; a held job-take returns at once."""
        worker.stopping = True
        if reason is not None:
            worker.reason = reason
        self.core.workers.save(worker)
        self.core.hub.wake_all_takers(worker.endpoint_id)

    # --- starting ------------------------------------------------------------------------------
    def _start(self, action: Start | CreateStandby, endpoint: Endpoint) -> None:
        workers = self.core.workers
        if isinstance(action, CreateStandby):
            if self._standby_blocked_until.get(endpoint.id, 0.0) > self.core.clock.monotonic():
                return
            worker = workers.create(endpoint.id, endpoint.version, reason="standby (extraWorkers)")
            worker.standby = True
            workers.save(worker)
            self._spawn(worker.id, self._create_standby(worker, endpoint))
            return
        if action.standby_id is not None:
            standby = workers.get(action.standby_id)
            if standby is not None and standby.standby and standby.container_id:
                standby.standby = False
                workers.save(standby)
                log.info(
                    "standby worker called up", endpoint=endpoint.id, worker=standby.id, reason=action.reason
                )
                self._spawn(standby.id, self._launch(standby, endpoint, create=False))
                return
        worker = workers.create(endpoint.id, endpoint.version, reason=action.reason)
        log.info("worker wanted", endpoint=endpoint.id, worker=worker.id, reason=action.reason)
        self._spawn(worker.id, self._launch(worker, endpoint, create=True))

    def _restart(self, worker: WorkerRecord, reason: str, endpoint: Endpoint) -> None:
        self.core.workers.apply(
            worker,
            WorkerEvent.RESTART,
            reason,
            restarts=worker.restarts + 1,
            next_retry_at=None,
            ready_at=None,
            started_at=None,
            last_seen_at=None,
            last_ping_at=None,
            refresh_requested=False,
            timings={},
            job_ids=[],
        )
        metrics.worker_restarted(self.core, endpoint.id)
        self._spawn(worker.id, self._replace_container(worker, endpoint))

    async def _replace_container(self, worker: WorkerRecord, endpoint: Endpoint) -> None:
        old = worker.container_id
        if old:
            await self.runtime.remove(old, force=True)
            worker.container_id = None
            self.core.workers.save(worker)
        await self._launch(worker, endpoint, create=True)

    async def _create_standby(self, worker: WorkerRecord, endpoint: Endpoint) -> None:
        try:
            async with self._starts:
                started = self.core.clock.monotonic()
                spec = container_spec(self.settings, self.worker_url, endpoint, worker, self.instance)
                container_id = await self.runtime.create(spec)
        except EmulatorError as exc:
            self._standby_blocked_until[endpoint.id] = self.core.clock.monotonic() + STANDBY_RETRY_S
            log.warning(
                "standby container not created", endpoint=endpoint.id, worker=worker.id, error=exc.message
            )
            self.core.workers.remove(worker.id, f"standby container not created: {exc.message}")
            return
        worker.container_id = container_id
        worker.timings = {"createS": round(self.core.clock.monotonic() - started, 4)}
        self.core.workers.save(worker)
        if self.core.workers.get(worker.id) is not worker:  # removed meanwhile
            await self.runtime.remove(container_id, force=True)
            return
        log.info(
            "standby container created",
            endpoint=endpoint.id,
            worker=worker.id,
            container=container_id[:12],
            create_s=worker.timings["createS"],
        )

    async def _launch(self, worker: WorkerRecord, endpoint: Endpoint, create: bool) -> None:
        """Create (unless a standby) and start the worker's container, timing each step."""
        clock, workers = self.core.clock, self.core.workers
        try:
            async with self._starts:
                if workers.get(worker.id) is not worker or worker.stopping:
                    return
                if create:
                    began = clock.monotonic()
                    spec = container_spec(self.settings, self.worker_url, endpoint, worker, self.instance)
                    worker.container_id = await self.runtime.create(spec)
                    create_s = clock.monotonic() - began
                else:
                    create_s = 0.0  # a standby: created ahead of time
                worker.timings = {"createS": round(create_s, 4)}
                worker.started_at, worker.ready_at = clock.now(), None
                workers.save(worker)
                if workers.get(worker.id) is not worker or worker.stopping:
                    return  # removed while it was being created: the removal takes the container
                began = clock.monotonic()
                assert worker.container_id is not None
                await self.runtime.start(worker.container_id)
                start_s = clock.monotonic() - began
        except asyncio.CancelledError:
            raise
        except EmulatorError as exc:
            metrics.container_start_failed(self.core, endpoint.id)
            self.mark_failed(worker, f"could not start its container: {exc.message}", endpoint.backoff)
            return
        metrics.container_started(self.core, endpoint.id, seconds=create_s + start_s)
        worker.timings["startS"] = round(start_s, 4)
        workers.apply(worker, WorkerEvent.STARTED, "container started")
        log.info(
            "worker container started",
            endpoint=endpoint.id,
            worker=worker.id,
            container=(worker.container_id or "")[:12],
            create_s=round(create_s, 4),
            start_s=round(start_s, 4),
            from_standby=not create,
            restarts=worker.restarts,
        )

    # --- failing -------------------------------------------------------------------------------
    async def _fail(self, worker: WorkerRecord, action: Fail, endpoint: Endpoint | None) -> None:
        container_id = worker.container_id
        if action.kill and container_id:
            try:
                await self.runtime.kill(container_id)
            except EmulatorError as exc:
                log.warning("could not kill a lost worker's container", worker=worker.id, error=exc.message)
        tail = await self.log_tail(container_id) if action.with_logs and container_id else ""
        if self.core.workers.get(worker.id) is not worker:
            return
        backoff = endpoint.backoff if endpoint is not None else BackoffPolicy.model_validate({})
        self.mark_failed(worker, action.reason, backoff, tail)

    def mark_failed(self, worker: WorkerRecord, reason: str, backoff: BackoffPolicy, tail: str = "") -> None:
        """UNHEALTHY with the reason (and the container's last lines), jobs back to the queue."""
        now = self.core.clock.now()
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
        if not container_id:
            return ""
        try:
            text = await asyncio.wait_for(self.runtime.logs(container_id, tail=LOG_TAIL_LINES), 5.0)
        except (EmulatorError, TimeoutError) as exc:
            return f"(logs unavailable: {getattr(exc, 'message', exc)})"
        text = text.strip("\n")
        return text[-LOG_TAIL_CHARS:] if text else "(no output)"

    # --- removing ------------------------------------------------------------------------------
    async def remove(self, worker: WorkerRecord, reason: str) -> None:
        """Stop and remove the container, then requeue what the worker still holds and forget it.

        When the runtime refuses, the record stays (stopping) and the next tick tries again.
        """
        container_id = worker.container_id
        if container_id:
            try:
                await self.runtime.stop(container_id, timeout_s=self.settings.stop_grace_s)
            except EmulatorError as exc:
                log.warning(
                    "could not stop a worker's container; removing it by force",
                    worker=worker.id,
                    error=exc.message,
                )
            await self.runtime.remove(container_id, force=True)
        if self.core.workers.get(worker.id) is not worker:
            return
        self.jobs.worker_lost(worker.id, reason)
        self.core.workers.remove(worker.id, reason)
        self.core.hub.wake_all_takers(worker.endpoint_id)  # its held polls see it is gone and return
        self.core.hub.stop_available(worker.id)
        self.core.hub.changed()

    async def remove_now(self, worker: WorkerRecord, reason: str) -> None:
        """``remove`` as an operation of its own, awaited (shutdown, endpoint deletion)."""
        self.mark_stopping(worker)
        await self.wait_ops({worker.id})
        self._spawn(worker.id, self.remove(worker, reason))
        await self.wait_ops({worker.id})

    async def _remove_container(self, container_id: str, reason: str) -> None:
        log.info("removing a leftover container", container=container_id[:12], reason=reason)
        await self.runtime.remove(container_id, force=True)

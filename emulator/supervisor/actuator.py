"""Carries out the reconcile plan: the only part of the supervisor that changes containers and workers.

Each action has a synchronous part, done at once (a record created, a worker marked stopping, a state
applied) and, where containers are involved, an operation run as a task so that one slow ``docker``
call never holds up the loop. A worker with an operation in flight is ``busy``: the planner leaves it
alone until the operation ends. Starting workers is the ``Launcher``'s (``launch``); failing,
draining, removing, FlashBoot pauses and the rollout status are here. Every state change goes
through ``registry.apply`` with a reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from emulator.config import Settings
from emulator.errors import EmulatorError
from emulator.models import BackoffPolicy, Endpoint, WorkerState
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.service.jobs import JobService
from emulator.supervisor import policy
from emulator.supervisor.actions import (
    Action,
    Adopt,
    CreateStandby,
    Drain,
    Fail,
    MarkOutdated,
    Pause,
    Remove,
    RemoveContainer,
    Restart,
    Resume,
    SetRollout,
    Start,
    Throttle,
    Unthrottle,
)
from emulator.supervisor.faults import Faults
from emulator.supervisor.launch import Launcher
from emulator.workers.records import WorkerRecord
from emulator.workers.states import WorkerEvent

log = structlog.get_logger("emulator.supervisor")

LOG_TAIL_LINES = 15
LOG_TAIL_CHARS = 3000


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
        self.faults = Faults()
        self.launcher = Launcher(self)

    # --- bookkeeping ---------------------------------------------------------------------------
    def busy(self) -> set[str]:
        return {key for key, task in self._ops.items() if not task.done()}

    def spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
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
            self.spawn(
                f"container:{action.container_id}", self._remove_container(action.container_id, action.reason)
            )
            return
        if isinstance(action, SetRollout):
            self._set_rollout(action)
            return
        if isinstance(action, Start | CreateStandby | Throttle):
            assert endpoint is not None
            if isinstance(action, Throttle):
                self.launcher.throttle(action, endpoint)
            else:
                self.launcher.start(action, endpoint)
            return
        worker = workers.get(action.worker_id)
        if worker is None:
            return
        if isinstance(action, Fail):
            self.spawn(worker.id, self._fail(worker, action, endpoint))
        elif isinstance(action, Restart):
            assert endpoint is not None
            self.launcher.restart(worker, action, endpoint)
        elif isinstance(action, Unthrottle):
            assert endpoint is not None
            self.launcher.unthrottle(worker, action, endpoint)
        elif isinstance(action, Remove):
            self.mark_stopping(worker)
            self.spawn(worker.id, self.remove(worker, action.reason))
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
            if action.replacing:
                self.mark_stopping(worker, f"rolling update: {action.reason}")
            self.core.hub.wake_all_takers(worker.endpoint_id)
        elif isinstance(action, Pause):
            worker.paused = True  # takes no job from now on
            worker.state_since = self.core.clock.now()
            workers.save(worker)
            self.spawn(worker.id, self._pause(worker, action.reason))
        elif isinstance(action, Resume):
            self.spawn(worker.id, self._resume(worker, action.reason))
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
        self.faults.forget(worker.id)
        self.core.hub.wake_all_takers(worker.endpoint_id)  # its held polls see it is gone and return
        self.core.hub.stop_available(worker.id)
        self.core.hub.changed()

    async def remove_now(self, worker: WorkerRecord, reason: str) -> None:
        """``remove`` as an operation of its own, awaited (shutdown, endpoint deletion)."""
        self.mark_stopping(worker)
        await self.wait_ops({worker.id})
        self.spawn(worker.id, self.remove(worker, reason))
        await self.wait_ops({worker.id})

    async def _remove_container(self, container_id: str, reason: str) -> None:
        log.info("removing a leftover container", container=container_id[:12], reason=reason)
        await self.runtime.remove(container_id, force=True)

    # --- FlashBoot ---------------------------------------------------------------------------------
    async def _pause(self, worker: WorkerRecord, reason: str) -> None:
        try:
            assert worker.container_id is not None
            await self.runtime.pause(worker.container_id)
        except (EmulatorError, AssertionError) as exc:
            worker.paused = False  # still running: the next tick decides again
            self.core.workers.save(worker)
            log.warning("could not pause an idle worker", worker=worker.id, error=str(exc))
            return
        log.info("worker paused (FlashBoot)", endpoint=worker.endpoint_id, worker=worker.id, reason=reason)
        self.core.hub.changed()

    async def _resume(self, worker: WorkerRecord, reason: str) -> None:
        clock = self.core.clock
        began = clock.monotonic()
        try:
            assert worker.container_id is not None
            await self.runtime.unpause(worker.container_id)
        except (EmulatorError, AssertionError) as exc:
            log.warning("could not resume a paused worker; removing it", worker=worker.id, error=str(exc))
            self.mark_stopping(worker)
            await self.remove(worker, f"could not resume (FlashBoot): {exc}")
            return
        resume_s = clock.monotonic() - began
        worker.paused = False
        worker.state_since = worker.last_seen_at = clock.now()  # idle from now on; a fresh liveness grace
        worker.timings = {"resumeS": round(resume_s, 4)}  # the next job's cold-start breakdown shows it
        self.core.workers.save(worker)
        log.info(
            "worker resumed (FlashBoot)",
            endpoint=worker.endpoint_id,
            worker=worker.id,
            reason=reason,
            resume_s=round(resume_s, 4),
        )
        self.core.hub.wake_all_takers(worker.endpoint_id)
        self.core.hub.changed()

    # --- the throttle fault -----------------------------------------------------------------------
    async def evict_throttled(self, worker: WorkerRecord, duration_s: float) -> None:
        """Take the worker off the host: container removed, jobs requeued, THROTTLED for ``duration_s``."""
        reason = f"throttled for {duration_s:g}s (injected fault: throttle)"
        await self.remove_now(worker, reason)
        if self.core.workers.get(worker.id) is not None:
            return  # the runtime refused the removal: the loop retries it
        again = self.core.workers.create(
            worker.endpoint_id,
            worker.version,
            state=WorkerState.THROTTLED,
            worker_id=worker.id,
            reason=reason,
        )
        again.reason = reason
        again.restarts = worker.restarts
        again.next_retry_at = self.core.clock.now() + duration_s
        self.core.workers.save(again)
        self.core.hub.changed()

    # --- rollout status ---------------------------------------------------------------------------
    def _set_rollout(self, action: SetRollout) -> None:
        current = self.core.endpoints.get(action.endpoint_id)
        if current is None or current.version != action.version or current.rollout == action.rollout:
            return
        self.core.endpoints.save(current.model_copy(update={"rollout": action.rollout}))
        log.info(
            "endpoint rollout", endpoint=action.endpoint_id, version=action.version, rollout=action.rollout
        )
        self.core.hub.changed()

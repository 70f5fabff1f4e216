"""Carries out the reconcile plan: the only part of the supervisor that changes containers and workers.

Each action has a synchronous part, done at once (a record created, a worker marked stopping, a state
applied) and, where containers are involved, an operation run as a task so that one slow ``docker``
call never holds up the loop. A worker with an operation in flight is ``busy``: the planner leaves it
alone until the operation ends. Starting workers is the ``Launcher``'s (``launch``), marking a worker failed is
``Failures``' (``failures``), the task set is ``Operations`` (``ops``); draining, removing, FlashBoot pauses
and the rollout status are here. Dispatch is one table, action type -> handler (``handled()``). Every state change goes
through ``registry.apply`` with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from emulator.config import Settings
from emulator.errors import EmulatorError
from emulator.models import BackoffPolicy, Endpoint, WorkerState
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.service.jobs import JobService
from emulator.supervisor.actions import (
    Action,
    Adopt,
    CreateStandby,
    Drain,
    Fail,
    MarkOutdated,
    Pause,
    Placed,
    Remove,
    RemoveContainer,
    Restart,
    Resume,
    SetRollout,
    Start,
    Throttle,
    Unthrottle,
)
from emulator.supervisor.failures import Failures
from emulator.supervisor.faults import Faults
from emulator.supervisor.launch import Launcher
from emulator.supervisor.ops import Operations
from emulator.supervisor.pulls import PullManager
from emulator.workers.records import WorkerRecord
from emulator.workers.states import WorkerEvent

log = structlog.get_logger("emulator.supervisor")


class Actuator:
    def __init__(
        self, core: Core, jobs: JobService, settings: Settings, runtime: Runtime, instance: str
    ) -> None:
        self.core = core
        self.jobs = jobs
        self.settings = settings
        self.runtime = runtime
        self.instance = instance
        self.ops = Operations()
        self.faults = Faults()
        self.failures = Failures(core, jobs, runtime, self.faults)
        self.pulls = PullManager(core, runtime)
        self.launcher = Launcher(
            core, settings, runtime, instance, self.ops, self.failures, self.faults, self.pulls
        )
        self._handlers: dict[type[Any], Callable[[Any, Endpoint | None], None]] = {
            RemoveContainer: self._do_remove_container,
            SetRollout: self._do_set_rollout,
            Start: self._do_start,
            CreateStandby: self._do_start,
            Throttle: self._do_throttle,
            Placed: self._do_placed,
            Fail: self._do_fail,
            Restart: self._do_restart,
            Unthrottle: self._do_unthrottle,
            Remove: self._do_remove,
            Drain: self._do_drain,
            MarkOutdated: self._do_mark_outdated,
            Pause: self._do_pause,
            Resume: self._do_resume,
            Adopt: self._do_adopt,
        }

    def handled(self) -> set[type[Any]]:
        """The action types this actuator carries out (a test checks it covers the ``Action`` union)."""
        return set(self._handlers)

    @property
    def worker_url(self) -> str:
        return self.launcher.worker_url

    @worker_url.setter
    def worker_url(self, url: str) -> None:
        self.launcher.worker_url = url

    # --- the in-flight operations (``ops``), as the loop and the supervisor use them ------------
    def busy(self) -> set[str]:
        return self.ops.busy()

    def spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        self.ops.spawn(key, coro)

    async def wait_ops(self, keys: set[str] | None = None, timeout_s: float | None = None) -> None:
        """Wait for in-flight operations (all, or those of ``keys``) to end."""
        await self.ops.wait(keys, timeout_s)

    async def cancel_all(self) -> None:
        await self.ops.cancel_all()

    def mark_failed(self, worker: WorkerRecord, reason: str, backoff: BackoffPolicy, tail: str = "") -> None:
        """UNHEALTHY with the reason, jobs requeued: see ``Failures.mark_failed``."""
        self.failures.mark_failed(worker, reason, backoff, tail)

    async def log_tail(self, container_id: str | None) -> str:
        return await self.failures.log_tail(container_id)

    # --- dispatch ------------------------------------------------------------------------------
    def run(self, action: Action, endpoint: Endpoint | None) -> None:
        """Carry out one planned action. Never raises: a failure is logged and the next tick retries."""
        try:
            self._run(action, endpoint)
        except Exception:
            log.exception("supervisor action failed", action=repr(action))

    def _run(self, action: Action, endpoint: Endpoint | None) -> None:
        handler = self._handlers.get(type(action))
        if handler is None:
            raise TypeError(f"no handler for the action {type(action).__name__}")
        handler(action, endpoint)

    def _worker(self, worker_id: str) -> WorkerRecord | None:
        return self.core.workers.get(worker_id)

    # --- one handler per action type --------------------------------------------------------------
    def _do_remove_container(self, action: RemoveContainer, endpoint: Endpoint | None) -> None:
        self.spawn(
            f"container:{action.container_id}", self._remove_container(action.container_id, action.reason)
        )

    def _do_set_rollout(self, action: SetRollout, endpoint: Endpoint | None) -> None:
        self._set_rollout(action)

    def _do_start(self, action: Start | CreateStandby, endpoint: Endpoint | None) -> None:
        assert endpoint is not None
        self.launcher.start(action, endpoint)

    def _do_throttle(self, action: Throttle, endpoint: Endpoint | None) -> None:
        assert endpoint is not None
        self.launcher.throttle(action, endpoint)

    def _do_placed(self, action: Placed, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is None or worker.state != WorkerState.THROTTLED:
            return
        # the start-up clock counts from the placement, not from the container's creation
        now = self.core.clock.now()
        self.core.workers.apply(worker, WorkerEvent.STARTED, action.reason, started_at=now, ready_at=None)
        log.info("queued worker placed", endpoint=worker.endpoint_id, worker=worker.id, reason=action.reason)

    def _do_fail(self, action: Fail, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is not None:
            self.spawn(worker.id, self._fail(worker, action, endpoint))

    def _do_restart(self, action: Restart, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is not None:
            assert endpoint is not None
            self.launcher.restart(worker, action, endpoint)

    def _do_unthrottle(self, action: Unthrottle, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is not None:
            assert endpoint is not None
            self.launcher.unthrottle(worker, action, endpoint)

    def _do_remove(self, action: Remove, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is not None:
            self.mark_stopping(worker)
            self.spawn(worker.id, self.remove(worker, action.reason))

    def _do_drain(self, action: Drain, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is None:
            return
        self.mark_stopping(worker, f"draining: {action.reason}")
        log.info(
            "worker draining",
            endpoint=worker.endpoint_id,
            worker=worker.id,
            reason=action.reason,
            jobs=list(worker.job_ids),
        )

    def _do_mark_outdated(self, action: MarkOutdated, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is None:
            return
        self.core.workers.apply(worker, WorkerEvent.OUTDATED, action.reason)
        if action.replacing:
            self.mark_stopping(worker, f"rolling update: {action.reason}")
        self.core.hub.wake_all_takers(worker.endpoint_id)

    def _do_pause(self, action: Pause, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is None:
            return
        worker.paused = True  # takes no job from now on
        worker.state_since = self.core.clock.now()
        self.core.workers.save(worker)
        self.spawn(worker.id, self._pause(worker, action.reason))

    def _do_resume(self, action: Resume, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is not None:
            self.spawn(worker.id, self._resume(worker, action.reason))

    def _do_adopt(self, action: Adopt, endpoint: Endpoint | None) -> None:
        worker = self._worker(action.worker_id)
        if worker is None:
            return
        # a fresh liveness grace: it could not reach us while the control plane was down
        worker.last_seen_at = self.core.clock.now()
        self.core.workers.save(worker)
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

    # --- removing ------------------------------------------------------------------------------
    async def remove(self, worker: WorkerRecord, reason: str) -> None:
        """Stop and remove the container, then requeue what the worker still holds and forget it.

        The container gets ``stop_grace_s`` between SIGTERM and SIGKILL when the worker holds a job,
        ``idle_stop_grace_s`` (default 0: at once) when it holds none.

        When the runtime refuses, the record stays (stopping) and the next tick tries again.
        """
        container_id = worker.container_id
        if container_id:
            # a worker holding no job is stopped at once (RunPod's SDK ignores SIGTERM); one holding a job
            # gets stop_grace_s to finish it
            grace_s = self.settings.stop_grace_s if worker.job_ids else self.settings.idle_stop_grace_s
            try:
                await self.runtime.stop(container_id, timeout_s=grace_s)
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

"""Fault injection for users' own tests (``POST /v1/workers/{id}/faults``): what each fault does.

=================  ====================================================================================
``kill``           SIGKILL the worker's container now (mid-job if it holds one): it becomes UNHEALTHY
                   (exit 137), its jobs go back to the queue, and it restarts with back-off
``oom``            the same, reported as an out-of-memory kill (exit 137), as when a handler outgrows
                   ``memoryInMb``
``hang_startup``   armed: the worker's next container start never makes contact (it is told an address
                   where nothing listens), so it stays INITIALIZING until ``startup_timeout_s`` and then
                   fails with the start-up timeout; combine with ``kill`` to see it at once
``throttle``       the worker is taken off the host: its container is removed, its jobs requeued, and
                   it waits THROTTLED for ``durationS`` (``nextRetryAt`` says until when), then starts
=================  ====================================================================================

The reason of a failure caused by a fault says so (``injected fault: kill``). Faults live in memory:
a restart of the control plane forgets armed ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import structlog

from emulator.clock import Clock
from emulator.errors import Conflict
from emulator.models import WorkerState
from emulator.runtime.base import Runtime
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.supervisor")

FaultKind = Literal["kill", "hang_startup", "oom", "throttle"]
_LIVE = (WorkerState.INITIALIZING, WorkerState.IDLE, WorkerState.RUNNING, WorkerState.OUTDATED)


class Faults:
    """Armed faults and the notes that make a fault-caused failure say so."""

    def __init__(self) -> None:
        self._hang: set[str] = set()
        self._notes: dict[str, str] = {}

    def arm_hang(self, worker_id: str) -> None:
        self._hang.add(worker_id)

    def take_hang(self, worker_id: str) -> bool:
        """Whether this start must hang (consumes the armed fault and leaves a note for the failure)."""
        if worker_id not in self._hang:
            return False
        self._hang.discard(worker_id)
        self._notes[worker_id] = "hang_startup"
        return True

    def note(self, worker_id: str, kind: str) -> None:
        self._notes[worker_id] = kind

    def explain(self, worker_id: str, reason: str) -> str:
        """The failure's reason, saying which injected fault caused it (if one did)."""
        kind = self._notes.pop(worker_id, None)
        if kind is None:
            return reason
        if kind == "oom":
            return "container out of memory (exit 137; injected fault: oom)"
        return f"{reason} (injected fault: {kind})"

    def forget(self, worker_id: str) -> None:
        self._hang.discard(worker_id)
        self._notes.pop(worker_id, None)


async def inject(
    worker: WorkerRecord,
    kind: FaultKind,
    duration_s: float,
    *,
    faults: Faults,
    runtime: Runtime,
    clock: Clock,
    evict: Callable[[WorkerRecord, float], Awaitable[None]],
    wake: Callable[[], None],
) -> dict[str, Any]:
    """Apply ``kind`` to ``worker``; the answer of the API call (``workerId``, ``kind``, ``status``...).

    ``evict(worker, duration_s)`` carries out ``throttle``; ``wake()`` wakes the reconcile loop so a
    killed container is noticed at once. Raises ``Conflict`` for a worker the fault cannot apply to.
    """
    body: dict[str, Any] = {"workerId": worker.id, "kind": kind}
    if worker.kind != "container" or worker.standby:
        what = "an external worker" if worker.kind != "container" else "a standby container"
        raise Conflict(f"worker {worker.id!r} is {what}: faults apply to serving container workers")
    if kind == "hang_startup":
        faults.arm_hang(worker.id)
        log.warning("fault armed", worker=worker.id, kind=kind)
        return body | {"status": "armed", "detail": "the worker's next container start will hang"}
    if kind == "throttle":
        if worker.stopping:
            raise Conflict(f"worker {worker.id!r} is being removed")
        until = clock.now() + duration_s
        await evict(worker, duration_s)
        return body | {"status": "applied", "durationS": duration_s, "until": until}
    container = worker.container_id
    if worker.state not in _LIVE or not container or worker.paused:
        state = "paused" if worker.paused else worker.state.value
        raise Conflict(f"worker {worker.id!r} has no running container to kill (it is {state})")
    faults.note(worker.id, kind)
    log.warning("fault injected", worker=worker.id, kind=kind, jobs=list(worker.job_ids))
    await runtime.kill(container, "SIGKILL")
    wake()  # the loop notices the dead container at once
    return body | {"status": "applied", "jobIds": list(worker.job_ids)}

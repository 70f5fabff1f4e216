"""PURE: RunPod's worker states and the transition table.

``transition(state, event)`` answers the next state, or None when the event does not apply in
that state (the caller ignores it). The table is the whole truth: tests walk every pair.
"""

from __future__ import annotations

from enum import StrEnum

from emulator.models import WorkerState

S = WorkerState


class WorkerEvent(StrEnum):
    STARTED = "STARTED"  # a container was created and started for the worker
    CONTACT = "CONTACT"  # first job-take, job-stop poll or ping since the last start
    JOB_ASSIGNED = "JOB_ASSIGNED"  # the worker took one or more jobs
    JOBS_DRAINED = "JOBS_DRAINED"  # the worker holds no job any more
    OUTDATED = "OUTDATED"  # the endpoint's version moved past the worker's
    FAILED = "FAILED"  # crashed, start-up timed out, reported itself unhealthy, or stopped answering
    THROTTLED = "THROTTLED"  # should run but the host lacks capacity
    RESTART = "RESTART"  # capacity freed or the backoff delay passed: start again


TABLE: dict[tuple[WorkerState, WorkerEvent], WorkerState] = {
    # a fresh container: waiting for its first contact
    (S.INITIALIZING, WorkerEvent.STARTED): S.INITIALIZING,
    (S.INITIALIZING, WorkerEvent.CONTACT): S.IDLE,
    (S.INITIALIZING, WorkerEvent.JOB_ASSIGNED): S.RUNNING,
    (S.INITIALIZING, WorkerEvent.OUTDATED): S.OUTDATED,
    (S.INITIALIZING, WorkerEvent.FAILED): S.UNHEALTHY,
    (S.INITIALIZING, WorkerEvent.THROTTLED): S.THROTTLED,
    # ready and waiting
    (S.IDLE, WorkerEvent.JOB_ASSIGNED): S.RUNNING,
    (S.IDLE, WorkerEvent.OUTDATED): S.OUTDATED,
    (S.IDLE, WorkerEvent.FAILED): S.UNHEALTHY,
    # holding jobs
    (S.RUNNING, WorkerEvent.JOB_ASSIGNED): S.RUNNING,
    (S.RUNNING, WorkerEvent.JOBS_DRAINED): S.IDLE,
    (S.RUNNING, WorkerEvent.OUTDATED): S.OUTDATED,
    (S.RUNNING, WorkerEvent.FAILED): S.UNHEALTHY,
    # waiting for capacity (no container yet)
    (S.THROTTLED, WorkerEvent.RESTART): S.INITIALIZING,
    (S.THROTTLED, WorkerEvent.STARTED): S.INITIALIZING,
    (S.THROTTLED, WorkerEvent.OUTDATED): S.OUTDATED,
    (S.THROTTLED, WorkerEvent.THROTTLED): S.THROTTLED,
    # old version: finishes what it holds, takes nothing new, then goes
    (S.OUTDATED, WorkerEvent.CONTACT): S.OUTDATED,
    (S.OUTDATED, WorkerEvent.JOBS_DRAINED): S.OUTDATED,
    (S.OUTDATED, WorkerEvent.FAILED): S.UNHEALTHY,
    # crashed: restarted with backoff
    (S.UNHEALTHY, WorkerEvent.RESTART): S.INITIALIZING,
    (S.UNHEALTHY, WorkerEvent.STARTED): S.INITIALIZING,
    (S.UNHEALTHY, WorkerEvent.FAILED): S.UNHEALTHY,
    (S.UNHEALTHY, WorkerEvent.OUTDATED): S.OUTDATED,
}


def transition(state: WorkerState, event: WorkerEvent) -> WorkerState | None:
    """The state after ``event``, or None when the event does not apply in ``state``."""
    return TABLE.get((state, event))


def takes_jobs(state: WorkerState) -> bool:
    """Only a worker that has made contact and is current may be handed a job."""
    return state in (S.IDLE, S.RUNNING)


def has_container(state: WorkerState) -> bool:
    return state not in (S.THROTTLED,)

"""Every worker the control plane knows: tokens, states, the jobs each holds.

The worker routes report what workers do (contact, take, finish, ping); the supervisor reports
what containers do (started, crashed) and decides starts and stops. State changes go through the
pure transition table in ``emulator.workers.states`` and are logged with a reason.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from emulator.clock import Clock
from emulator.models import WorkerState
from emulator.store.db import transaction
from emulator.workers.records import WorkerKind, WorkerRecord
from emulator.workers.states import WorkerEvent, takes_jobs, transition

log = structlog.get_logger("emulator.workers")

_ENDING_NOTE = " while its handler runs: the worker is stopped unless it lets go"

Listener = Callable[[WorkerRecord, WorkerState | None, str], None]


class WorkerRegistry:
    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        self._workers: dict[str, WorkerRecord] = {}
        self._by_token: dict[str, str] = {}
        self._listeners: list[Listener] = []
        for (body,) in conn.execute("SELECT body FROM workers").fetchall():
            record = WorkerRecord.from_json(json.loads(body))
            self._workers[record.id] = record
            self._by_token[record.token] = record.id

    # --- listeners (dashboard, metrics, supervisor wake-ups) -----------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, record: WorkerRecord, old: WorkerState | None, reason: str) -> None:
        for listener in self._listeners:
            try:
                listener(record, old, reason)
            except Exception:  # a listener never breaks the registry
                log.exception("worker listener failed", worker=record.id)

    # --- lookups ---------------------------------------------------------------------------------
    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._workers.get(worker_id)

    def by_token(self, token: str) -> WorkerRecord | None:
        worker_id = self._by_token.get(token)
        return None if worker_id is None else self._workers.get(worker_id)

    def for_endpoint(self, endpoint_id: str) -> list[WorkerRecord]:
        return [w for w in self._workers.values() if w.endpoint_id == endpoint_id]

    def all(self) -> list[WorkerRecord]:
        return list(self._workers.values())

    def may_take(self, worker: WorkerRecord) -> bool:
        return (
            takes_jobs(worker.state)
            and not worker.stopping
            and not worker.paused
            and not worker.refresh_requested
            and not worker.ending  # still runs an ended job's handler: it is stopped soon
        )

    # --- lifecycle -------------------------------------------------------------------------------
    def create(
        self,
        endpoint_id: str,
        version: int,
        kind: WorkerKind = "container",
        state: WorkerState = WorkerState.INITIALIZING,
        worker_id: str | None = None,
        reason: str = "created",
        standby: bool = False,
    ) -> WorkerRecord:
        now = self.clock.now()
        record = WorkerRecord(
            id=worker_id or f"{endpoint_id[:20]}-{uuid.uuid4().hex[:10]}",
            endpoint_id=endpoint_id,
            token=secrets.token_urlsafe(24),
            version=version,
            kind=kind,
            state=state,
            created_at=now,
            state_since=now,
            standby=standby,
        )
        self._workers[record.id] = record
        self._by_token[record.token] = record.id
        self.save(record)
        log.info(
            "worker created",
            endpoint=endpoint_id,
            worker=record.id,
            job=None,
            from_state=None,
            to_state=record.status,
            kind=kind,
            reason=reason,
        )
        self._notify(record, None, reason)
        return record

    def remove(self, worker_id: str, reason: str) -> None:
        record = self._workers.pop(worker_id, None)
        if record is None:
            return
        self._by_token.pop(record.token, None)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        log.info(
            "worker removed",
            endpoint=record.endpoint_id,
            worker=worker_id,
            job=",".join(record.job_ids) or None,
            from_state=record.state.value,
            to_state="REMOVED",
            reason=reason,
        )
        self._notify(record, record.state, f"removed: {reason}")

    def save(self, record: WorkerRecord) -> None:
        self.conn.execute(
            """INSERT INTO workers (id, endpoint_id, token, body) VALUES (?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET body = excluded.body""",
            (record.id, record.endpoint_id, record.token, json.dumps(record.to_json())),
        )

    def apply(
        self, worker: WorkerRecord, event: WorkerEvent, reason: str, *, job: str | None = None, **changes: Any
    ) -> bool:
        """Apply ``event``; returns whether the state changed. ``changes`` are set either way.

        ``job`` names the job that caused the change when the worker no longer holds it (for the log)."""
        for key, value in changes.items():
            setattr(worker, key, value)
        new = transition(worker.state, event)
        old = worker.state
        if new is None or new == old:
            if changes:
                self.save(worker)
            return False
        worker.state = new
        worker.state_since = self.clock.now()
        if new != WorkerState.UNHEALTHY and reason and event != WorkerEvent.OUTDATED:
            worker.reason = None if new in (WorkerState.IDLE, WorkerState.RUNNING) else reason
        if new == WorkerState.UNHEALTHY or new == WorkerState.THROTTLED or new == WorkerState.OUTDATED:
            worker.reason = reason
        self.save(worker)
        log.info(
            "worker state",
            endpoint=worker.endpoint_id,
            worker=worker.id,
            job=job or ",".join(worker.job_ids) or None,
            from_state=old.value,
            to_state=new.value,
            trigger=event.value,
            reason=reason,
        )
        self._notify(worker, old, reason)
        return True

    # --- what the worker routes report -------------------------------------------------------------
    def touch(self, worker: WorkerRecord) -> None:
        """Any request from the worker: liveness, and first contact makes it ready."""
        now = self.clock.now()
        worker.last_seen_at = now
        if worker.ready_at is None and worker.state in (WorkerState.INITIALIZING, WorkerState.OUTDATED):
            worker.ready_at = now
            if worker.started_at is not None:
                worker.timings["readyS"] = round(now - worker.started_at, 4)
            self.apply(worker, WorkerEvent.CONTACT, "first contact")

    def jobs_assigned(self, worker: WorkerRecord, job_ids: list[str]) -> None:
        for job_id in job_ids:
            if job_id not in worker.job_ids:
                worker.job_ids.append(job_id)
        self.apply(worker, WorkerEvent.JOB_ASSIGNED, f"took {', '.join(job_ids)}")

    def job_ending(self, worker: WorkerRecord, job_id: str, reason: str) -> None:
        """The job ended (``reason``: "execution timeout", "cancelled", "ttl expired") while the worker
        still runs it: it stays RUNNING and holds the job until its pings stop naming it, and is
        stopped and replaced past ``ended_job_grace_s`` (RunPod: "the job fails and the worker stops")."""
        worker.ending.setdefault(job_id, self.clock.now())
        worker.ending_reason = worker.ending_reason or reason
        worker.reason = f"{reason} ({job_id}){_ENDING_NOTE}"
        self.save(worker)
        log.info(
            "worker still runs an ended job",
            endpoint=worker.endpoint_id,
            worker=worker.id,
            job=job_id,
            reason=reason,
        )

    def job_released(self, worker: WorkerRecord, job_id: str) -> None:
        if job_id in worker.job_ids:
            worker.job_ids.remove(job_id)
        if worker.ending.pop(job_id, None) is not None and not worker.ending:
            worker.ending_reason = None
            if worker.reason and worker.reason.endswith(_ENDING_NOTE):
                worker.reason = None
        if not worker.job_ids:
            self.apply(worker, WorkerEvent.JOBS_DRAINED, f"finished {job_id}", job=job_id)
        else:
            self.save(worker)

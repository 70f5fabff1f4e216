"""The durable job queue: enqueue, claim with a lease, report, requeue, expire.

Every state change is one short transaction. A claim is one ``UPDATE ... RETURNING`` so two
workers can never take the same job.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from emulator.models import JobStatus
from emulator.store.db import transaction
from emulator.store.records import JobRecord, dumps, loads

_ACTIVE = ("IN_QUEUE", "IN_PROGRESS")


@dataclass(frozen=True)
class NewJob:
    id: str
    endpoint_id: str
    input: Any
    webhook: str | None
    s3_config: Any
    low_priority: bool
    execution_timeout_ms: int
    ttl_ms: int
    is_sync: bool
    has_input: bool = True


@dataclass(frozen=True)
class QueueStats:
    in_queue: int
    in_progress: int
    in_queue_scaling: int  # queued jobs that may trigger scale-up (not lowPriority)
    oldest_scaling_wait_s: float  # how long the oldest such job has waited


@dataclass(frozen=True)
class Requeued:
    job_id: str
    endpoint_id: str
    failed: bool  # True when the retry limit was reached and the job FAILED instead


class JobStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # --- reads -------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord.from_row(row)

    def for_worker(self, worker_id: str) -> list[JobRecord]:
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE worker_id = ? AND status = 'IN_PROGRESS' ORDER BY seq", (worker_id,)
        ).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def running_at(self, worker_id: str, at: float, grace_s: float = 0.0) -> JobRecord | None:
        """The job ``worker_id`` was running at unix time ``at`` (taken by then, finished no earlier than
        ``grace_s`` before it); the latest taken when several were. For tagging a worker's log lines."""
        row = self.conn.execute(
            "SELECT * FROM jobs WHERE worker_id = ? AND started_at IS NOT NULL AND started_at <= ? "
            "AND (completed_at IS NULL OR completed_at >= ?) ORDER BY started_at DESC LIMIT 1",
            (worker_id, at, at - grace_s),
        ).fetchone()
        return None if row is None else JobRecord.from_row(row)

    def recent(self, endpoint_id: str, limit: int = 50) -> list[JobRecord]:
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE endpoint_id = ? ORDER BY seq DESC LIMIT ?", (endpoint_id, limit)
        ).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def stats(self, endpoint_id: str, now: float) -> QueueStats:
        row = self.conn.execute(
            """SELECT
                 SUM(status = 'IN_QUEUE'),
                 SUM(status = 'IN_PROGRESS'),
                 SUM(status = 'IN_QUEUE' AND low_priority = 0),
                 MIN(CASE WHEN status = 'IN_QUEUE' AND low_priority = 0 THEN queued_at END)
               FROM jobs WHERE endpoint_id = ? AND status IN ('IN_QUEUE', 'IN_PROGRESS')""",
            (endpoint_id,),
        ).fetchone()
        oldest = row[3]
        return QueueStats(
            in_queue=int(row[0] or 0),
            in_progress=int(row[1] or 0),
            in_queue_scaling=int(row[2] or 0),
            oldest_scaling_wait_s=max(0.0, now - oldest) if oldest is not None else 0.0,
        )

    def counter(self, endpoint_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT name, value FROM endpoint_counters WHERE endpoint_id = ?", (endpoint_id,)
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def queued_count(self, endpoint_id: str) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE endpoint_id = ? AND status = 'IN_QUEUE'", (endpoint_id,)
        ).fetchone()
        return int(row[0])

    def queued_ids(self, endpoint_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM jobs WHERE endpoint_id = ? AND status = 'IN_QUEUE' ORDER BY seq", (endpoint_id,)
        ).fetchall()
        return [r[0] for r in rows]

    # --- writes ------------------------------------------------------------------------------
    def enqueue(self, job: NewJob, now: float) -> JobRecord:
        with transaction(self.conn, new_work=True):
            row = self.conn.execute(
                """INSERT INTO jobs (id, endpoint_id, status, input, webhook, s3_config, low_priority,
                     execution_timeout_ms, ttl_ms, is_sync, created_at, queued_at, webhook_state, has_input)
                   VALUES (?, ?, 'IN_QUEUE', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *""",
                (
                    job.id,
                    job.endpoint_id,
                    dumps(job.input),
                    job.webhook,
                    None if job.s3_config is None else dumps(job.s3_config),
                    int(job.low_priority),
                    job.execution_timeout_ms,
                    job.ttl_ms,
                    int(job.is_sync),
                    now,
                    now,
                    "pending" if job.webhook else None,
                    int(job.has_input),
                ),
            ).fetchone()
        return JobRecord.from_row(row)

    def claim(self, endpoint_id: str, worker_id: str, n: int, now: float, lease_s: float) -> list[JobRecord]:
        """Hand up to ``n`` queued jobs (oldest first) to ``worker_id``; atomically.

        The first hand-over starts the execution-timeout clock (``first_started_at``); a requeue does
        not restart it."""
        with transaction(self.conn):
            rows = self.conn.execute(
                """UPDATE jobs SET status = 'IN_PROGRESS', worker_id = ?, started_at = ?, lease_expires_at = ?,
                     first_started_at = COALESCE(first_started_at, ?), named_at = NULL, dropped_at = NULL
                   WHERE id IN (SELECT id FROM jobs WHERE endpoint_id = ? AND status = 'IN_QUEUE'
                                ORDER BY seq LIMIT ?)
                   RETURNING *""",
                (worker_id, now, now + lease_s, now, endpoint_id, n),
            ).fetchall()
        return sorted((JobRecord.from_row(r) for r in rows), key=lambda j: j.seq)

    def renew_leases(self, worker_id: str, now: float, lease_s: float) -> None:
        self.conn.execute(
            "UPDATE jobs SET lease_expires_at = ? WHERE worker_id = ? AND status = 'IN_PROGRESS'",
            (now + lease_s, worker_id),
        )

    def renew_named(self, worker_id: str, job_ids: list[str], now: float, lease_s: float) -> None:
        """Renew the leases of the jobs a ping names, and note that a ping named them (``named_at``):
        from then on the worker is known to have had the job. Jobs it does not name keep ageing."""
        self.conn.executemany(
            """UPDATE jobs SET lease_expires_at = ?, named_at = ?, dropped_at = NULL
               WHERE id = ? AND worker_id = ? AND status = 'IN_PROGRESS'""",
            [(now + lease_s, now, job_id, worker_id) for job_id in job_ids],
        )

    def mark_dropped(
        self, worker_id: str, job_ids: list[str], now: float, named_only: bool = True
    ) -> list[str]:
        """Of ``job_ids`` (held by ``worker_id``), those the live worker dropped: a ping named them
        before and no longer does, or (``named_only`` False) their lease ran out while the worker
        kept in touch. RunPod's SDK drops a result it cannot post. They stay IN_PROGRESS, without a
        lease (never requeued), until their execution timeout. Returns their ids."""
        dropped: list[str] = []
        named = "AND named_at IS NOT NULL" if named_only else ""
        with transaction(self.conn):
            for job_id in job_ids:
                row = self.conn.execute(
                    f"""UPDATE jobs SET dropped_at = ?, lease_expires_at = NULL
                       WHERE id = ? AND worker_id = ? AND status = 'IN_PROGRESS' {named}
                         AND dropped_at IS NULL RETURNING id""",
                    (now, job_id, worker_id),
                ).fetchone()
                if row is not None:
                    dropped.append(job_id)
        return dropped

    def set_result_refused(self, job_id: str, reason: str) -> None:
        """Record why a worker's post for the job was refused (shown in its /v1 detail)."""
        self.conn.execute("UPDATE jobs SET result_refused = ? WHERE id = ?", (reason, job_id))

    def set_breakdown(self, job_id: str, breakdown: dict[str, Any]) -> None:
        self.conn.execute("UPDATE jobs SET breakdown = ? WHERE id = ?", (dumps(breakdown), job_id))

    def set_openai(self, job_id: str, figures: dict[str, Any]) -> None:
        """Merge ``figures`` into the job's ``openai`` object (route, stream, TTFT; see service/openai.py)."""
        with transaction(self.conn):
            row = self.conn.execute("SELECT openai FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                merged = (loads(row[0]) or {}) | figures
                self.conn.execute("UPDATE jobs SET openai = ? WHERE id = ?", (dumps(merged), job_id))

    def set_progress(self, job_id: str, progress: Any) -> bool:
        """Record an IN_PROGRESS payload; ignored (False) once the job is no longer in progress."""
        cur = self.conn.execute(
            "UPDATE jobs SET progress = ? WHERE id = ? AND status = 'IN_PROGRESS'", (dumps(progress), job_id)
        )
        return cur.rowcount == 1

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        now: float,
        retention_s: float,
        output: Any = None,
        error: str | None = None,
        stop_pending: bool = False,
        from_statuses: tuple[str, ...] = _ACTIVE,
    ) -> JobRecord | None:
        """Move an active job to a terminal status; None when it was not in ``from_statuses``."""
        marks = ",".join("?" * len(from_statuses))
        with transaction(self.conn):
            row = self.conn.execute(
                f"""UPDATE jobs SET status = ?, completed_at = ?, output = ?, error = ?, expires_at = ?,
                      stop_pending = ?, lease_expires_at = NULL,
                      started_at = COALESCE(started_at, first_started_at,
                                            CASE WHEN ? IN ('COMPLETED', 'FAILED') THEN ? END)
                    WHERE id = ? AND status IN ({marks}) RETURNING *""",
                (
                    status.value,
                    now,
                    None if output is None else dumps(output),
                    error,
                    now + retention_s,
                    int(stop_pending),
                    status.value,
                    now,
                    job_id,
                    *from_statuses,
                ),
            ).fetchone()
            if row is not None:
                self._bump(row["endpoint_id"], status.value.lower())
        return None if row is None else JobRecord.from_row(row)

    def retry(self, job_id: str, now: float) -> JobRecord | None:
        """FAILED or TIMED_OUT back to IN_QUEUE with the same id and input; output cleared."""
        with transaction(self.conn):
            row = self.conn.execute(
                """UPDATE jobs SET status = 'IN_QUEUE', queued_at = ?, started_at = NULL, completed_at = NULL,
                     output = NULL, error = NULL, progress = NULL, expires_at = NULL, worker_id = NULL,
                     lease_expires_at = NULL, stop_pending = 0, breakdown = NULL, retries = retries + 1,
                     first_started_at = NULL, named_at = NULL, dropped_at = NULL, result_refused = NULL,
                     webhook_state = CASE WHEN webhook IS NULL THEN NULL ELSE 'pending' END
                   WHERE id = ? AND status IN ('FAILED', 'TIMED_OUT') RETURNING *""",
                (now, job_id),
            ).fetchone()
            if row is not None:
                self._bump(row["endpoint_id"], "retried")
                self.conn.execute("DELETE FROM job_stream WHERE job_id = ?", (job_id,))
                self.conn.execute("DELETE FROM webhook_attempts WHERE job_id = ?", (job_id,))
        return None if row is None else JobRecord.from_row(row)

    def requeue_worker(self, worker_id: str, now: float, max_retries: int, reason: str) -> list[Requeued]:
        """The worker is gone: its in-progress jobs go back to the queue (retries + 1) or FAIL.

        Jobs it had dropped while alive (``dropped_at``) stay: they end at their execution timeout."""
        return self._requeue(
            "worker_id = ? AND status = 'IN_PROGRESS' AND dropped_at IS NULL",
            (worker_id,),
            now,
            max_retries,
            reason,
        )

    def expired_leases(self, now: float) -> list[JobRecord]:
        """In-progress jobs whose lease ran out: no ping named them (or, for a worker that does not
        ping, it made no request) for the lease time. A job a live worker dropped has no lease."""
        rows = self.conn.execute(
            """SELECT * FROM jobs WHERE status = 'IN_PROGRESS' AND lease_expires_at IS NOT NULL
               AND lease_expires_at < ?""",
            (now,),
        ).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def requeue_jobs(self, job_ids: list[str], now: float, max_retries: int, reason: str) -> list[Requeued]:
        """These in-progress jobs go back to the queue (retries + 1) or FAIL (their worker is lost)."""
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        return self._requeue(
            f"status = 'IN_PROGRESS' AND id IN ({marks})", tuple(job_ids), now, max_retries, reason
        )

    def _requeue(
        self, where: str, args: tuple[Any, ...], now: float, max_retries: int, reason: str
    ) -> list[Requeued]:
        out: list[Requeued] = []
        with transaction(self.conn):
            rows = self.conn.execute(
                f"SELECT id, endpoint_id, retries, worker_id FROM jobs WHERE {where}", args
            )
            for job_id, endpoint_id, retries, worker_id in rows.fetchall():
                if retries >= max_retries:
                    self.conn.execute(
                        """UPDATE jobs SET status = 'FAILED', completed_at = ?, lease_expires_at = NULL,
                             error = ?, expires_at = ? WHERE id = ?""",
                        (now, f"job failed after {retries + 1} attempts: {reason}", now + 1800, job_id),
                    )
                    self._bump(endpoint_id, "failed")
                    out.append(Requeued(job_id, endpoint_id, failed=True))
                else:
                    self.conn.execute(
                        """UPDATE jobs SET status = 'IN_QUEUE', worker_id = NULL, started_at = NULL,
                             lease_expires_at = NULL, progress = NULL, retries = retries + 1, queued_at = ?,
                             named_at = NULL, dropped_at = NULL,
                             past_workers = past_workers || ? || ','
                           WHERE id = ?""",
                        (now, worker_id or "", job_id),
                    )
                    self._bump(endpoint_id, "retried")
                    out.append(Requeued(job_id, endpoint_id, failed=False))
        return out

    def overdue(self, now: float) -> list[JobRecord]:
        """Jobs past their execution timeout, counted from their first start: in progress, or requeued
        (back IN_QUEUE after a lost worker) since a requeue does not reset the clock."""
        rows = self.conn.execute(
            """SELECT * FROM jobs WHERE status IN ('IN_PROGRESS', 'IN_QUEUE')
               AND COALESCE(first_started_at, started_at) IS NOT NULL
               AND COALESCE(first_started_at, started_at) + execution_timeout_ms / 1000.0 < ?""",
            (now,),
        ).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def delete_expired(self, now: float) -> list[JobRecord]:
        """Delete jobs past their retention or TTL; returns what was deleted."""
        with transaction(self.conn):
            rows = self.conn.execute(
                """DELETE FROM jobs WHERE (expires_at IS NOT NULL AND expires_at < ?)
                   OR (created_at + ttl_ms / 1000.0 < ?) RETURNING *""",
                (now, now),
            ).fetchall()
            records = [JobRecord.from_row(r) for r in rows]
            for rec in records:
                self.conn.execute("DELETE FROM job_stream WHERE job_id = ?", (rec.id,))
                self.conn.execute("DELETE FROM webhook_attempts WHERE job_id = ?", (rec.id,))
        return records

    def purge_queue(self, endpoint_id: str) -> list[str]:
        """Delete the endpoint's queued jobs; their ids."""
        with transaction(self.conn):
            cur = self.conn.execute(
                "DELETE FROM jobs WHERE endpoint_id = ? AND status = 'IN_QUEUE' RETURNING id", (endpoint_id,)
            )
            ids = [r[0] for r in cur.fetchall()]
            for job_id in ids:
                self.conn.execute("DELETE FROM job_stream WHERE job_id = ?", (job_id,))
        return ids

    def delete_endpoint_jobs(self, endpoint_id: str) -> list[str]:
        """Delete every job of the endpoint; their ids."""
        with transaction(self.conn):
            self.conn.execute(
                "DELETE FROM job_stream WHERE job_id IN (SELECT id FROM jobs WHERE endpoint_id = ?)",
                (endpoint_id,),
            )
            rows = self.conn.execute(
                "DELETE FROM jobs WHERE endpoint_id = ? RETURNING id", (endpoint_id,)
            ).fetchall()
            self.conn.execute("DELETE FROM endpoint_counters WHERE endpoint_id = ?", (endpoint_id,))
        return [r[0] for r in rows]

    # --- stop signals --------------------------------------------------------------------------
    def pending_stops(self, worker_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM jobs WHERE worker_id = ? AND stop_pending = 1", (worker_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def clear_stops(self, job_ids: list[str]) -> None:
        self.conn.executemany("UPDATE jobs SET stop_pending = 0 WHERE id = ?", [(j,) for j in job_ids])

    def _bump(self, endpoint_id: str, name: str) -> None:
        self.conn.execute(
            """INSERT INTO endpoint_counters (endpoint_id, name, value) VALUES (?, ?, 1)
               ON CONFLICT(endpoint_id, name) DO UPDATE SET value = value + 1""",
            (endpoint_id, name),
        )

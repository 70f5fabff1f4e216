"""Streamed chunks (job-stream) and webhook delivery attempts, per job."""

from __future__ import annotations

import sqlite3
from typing import Any

from emulator.store.db import transaction
from emulator.store.records import dumps, loads


class StreamStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def append(self, job_id: str, chunk: Any) -> int:
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT COALESCE(MAX(n), 0) + 1 FROM job_stream WHERE job_id = ?", (job_id,)
            ).fetchone()
            n = int(row[0])
            self.conn.execute(
                "INSERT INTO job_stream (job_id, n, chunk) VALUES (?, ?, ?)", (job_id, n, dumps(chunk))
            )
        return n

    def take_undelivered(self, job_id: str) -> list[Any]:
        """The chunks not yet returned by /stream, in order; marked delivered."""
        with transaction(self.conn):
            rows = self.conn.execute(
                "UPDATE job_stream SET delivered = 1 WHERE job_id = ? AND delivered = 0 RETURNING n, chunk",
                (job_id,),
            ).fetchall()
        return [loads(chunk) for _, chunk in sorted(rows, key=lambda r: r[0])]

    def total_bytes(self, job_id: str) -> int:
        """The size of the job's stored chunks, in bytes of their JSON text."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(LENGTH(CAST(chunk AS BLOB))), 0) FROM job_stream WHERE job_id = ?", (job_id,)
        ).fetchone()
        return int(row[0])

    def all_chunks(self, job_id: str) -> list[Any]:
        rows = self.conn.execute(
            "SELECT chunk FROM job_stream WHERE job_id = ? ORDER BY n", (job_id,)
        ).fetchall()
        return [loads(r[0]) for r in rows]


class WebhookStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def record_attempt(
        self, job_id: str, attempt: int, at: float, url: str, status_code: int | None, error: str | None
    ) -> None:
        self.conn.execute(
            """INSERT OR REPLACE INTO webhook_attempts (job_id, attempt, at, url, status_code, error)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (job_id, attempt, at, url, status_code, error),
        )

    def set_state(self, job_id: str, state: str) -> None:
        self.conn.execute("UPDATE jobs SET webhook_state = ? WHERE id = ?", (state, job_id))

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT attempt, at, url, status_code, error FROM webhook_attempts WHERE job_id = ? ORDER BY attempt",
            (job_id,),
        ).fetchall()
        return [{"attempt": r[0], "at": r[1], "url": r[2], "statusCode": r[3], "error": r[4]} for r in rows]

    def pending_job_ids(self) -> list[str]:
        rows = self.conn.execute(
            """SELECT id FROM jobs WHERE webhook_state = 'pending'
               AND status IN ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT')"""
        ).fetchall()
        return [r[0] for r in rows]

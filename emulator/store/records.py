"""Rows as typed records (RunPod's JSON shapes of them are drawn in ``emulator.wire``)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from emulator.models import JobStatus


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass
class JobRecord:
    id: str
    endpoint_id: str
    status: JobStatus
    input: Any
    webhook: str | None
    s3_config: Any
    low_priority: bool
    execution_timeout_ms: int
    ttl_ms: int
    is_sync: bool
    created_at: float
    queued_at: float
    started_at: float | None
    completed_at: float | None
    worker_id: str | None
    past_workers: list[str]
    lease_expires_at: float | None
    retries: int
    output: Any
    error: str | None
    progress: Any
    expires_at: float | None
    stop_pending: bool
    breakdown: dict[str, Any] = field(default_factory=dict)
    webhook_state: str | None = None
    seq: int = 0
    openai: dict[str, Any] | None = None  # OpenAI passthrough calls: route, stream, TTFT, chunks/s
    has_input: bool = True  # False: the request had no `input` (the worker gets none, as on RunPod)
    named_at: float | None = None  # the last ping of its worker that named it (None: never named)
    dropped_at: float | None = None  # its worker's pings stopped naming it (the worker dropped it)
    first_started_at: float | None = None  # the first hand-over: the execution timeout counts from it
    result_refused: str | None = None  # why a worker's post for it was refused (payload limits)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        return cls(
            id=row["id"],
            endpoint_id=row["endpoint_id"],
            status=JobStatus(row["status"]),
            input=loads(row["input"]),
            webhook=row["webhook"],
            s3_config=loads(row["s3_config"]),
            low_priority=bool(row["low_priority"]),
            execution_timeout_ms=row["execution_timeout_ms"],
            ttl_ms=row["ttl_ms"],
            is_sync=bool(row["is_sync"]),
            created_at=row["created_at"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            worker_id=row["worker_id"],
            past_workers=[w for w in (row["past_workers"] or "").split(",") if w],
            lease_expires_at=row["lease_expires_at"],
            retries=row["retries"],
            output=loads(row["output"]),
            error=row["error"],
            progress=loads(row["progress"]),
            expires_at=row["expires_at"],
            stop_pending=bool(row["stop_pending"]),
            breakdown=loads(row["breakdown"]) or {},
            webhook_state=row["webhook_state"],
            seq=row["seq"],
            openai=loads(row["openai"]),
            has_input=bool(row["has_input"]),
            named_at=row["named_at"],
            dropped_at=row["dropped_at"],
            first_started_at=row["first_started_at"],
            result_refused=row["result_refused"],
        )

    @property
    def ttl_deadline(self) -> float:
        return self.created_at + self.ttl_ms / 1000.0

    def delay_ms(self, now: float) -> int:
        end = self.started_at if self.started_at is not None else (self.completed_at or now)
        return max(0, int(round((end - self.created_at) * 1000)))

    def execution_ms(self, now: float) -> int:
        if self.started_at is None:
            return 0
        end = self.completed_at if self.completed_at is not None else now
        return max(0, int(round((end - self.started_at) * 1000)))

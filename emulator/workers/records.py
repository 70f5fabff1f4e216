"""A worker as the control plane and the supervisor both see it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from emulator.models import WorkerState

WorkerKind = Literal["container", "external"]
# What a standby container (extraWorkers: created, never started) is shown as, everywhere a worker's
# status is shown: it is not a worker starting up (INITIALIZING), and RunPod does not count it.
STANDBY = "STANDBY"


@dataclass
class WorkerRecord:
    id: str
    endpoint_id: str
    token: str
    version: int
    kind: WorkerKind = "container"
    state: WorkerState = WorkerState.INITIALIZING
    container_id: str | None = None
    gpu_ids: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    created_at: float = 0.0
    started_at: float | None = None  # the current container's start
    ready_at: float | None = None  # first contact since the last start
    last_seen_at: float | None = None
    last_ping_at: float | None = None  # once a worker pings, only the jobs its pings name keep their lease
    state_since: float = 0.0
    restarts: int = 0
    reason: str | None = None
    next_retry_at: float | None = None
    first_failure_at: float | None = None  # start of the current crash loop (for give-up)
    stopping: bool = False  # being drained or removed: takes no new job
    paused: bool = False  # FlashBoot: container paused while idle
    standby: bool = False  # an extra worker kept warm, not counted as a serving worker
    refresh_requested: bool = False  # the worker asked to be recycled (stopPod)
    timings: dict[str, float] = field(default_factory=dict)  # cold-start breakdown of the current start
    pull: dict[str, Any] | None = None  # while its image is pulled: supervisor.pulls' progress
    health: str | None = None  # load-balancing workers: the last health check's answer, in words
    # jobs ended under the worker (timeout, cancel, TTL) that its pings still name: job id -> when it
    # ended. It stays RUNNING with them; past ended_job_grace_s its container is stopped and replaced.
    ending: dict[str, float] = field(default_factory=dict)
    ending_reason: str | None = None  # why the first of them ended ("execution timeout", ...)

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy was most of the cost of saving a worker,
        # which happens on every job start and end (about 4x slower; see bench/). The fields are
        # flat: lists and dicts of plain values, copied one level.
        data: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            data[name] = (
                list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            )
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerRecord:
        data = dict(data)
        data["state"] = WorkerState(data.get("state", "INITIALIZING"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def status(self) -> str:
        """The status shown to users: RunPod's worker state, or STANDBY for a standby container."""
        return STANDBY if self.standby else self.state.value


_FIELDS = tuple(f.name for f in fields(WorkerRecord))

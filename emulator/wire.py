"""PURE. RunPod's JSON shapes, built from records: the one place where the wire format is drawn.

Each function takes records (``JobRecord``, ``WorkerRecord``) and plain numbers and returns a
``TypedDict``; routes, the webhook sender and the dashboard call these and nothing else draws these
shapes. ``api/schema.py`` documents the same TypedDicts (pydantic's ``TypeAdapter(...).json_schema()``),
so the OpenAPI document and the answers cannot drift apart.

Sources: RunPod's "Send requests" and "Job states" pages (``/run``, ``/runsync``, ``/status``,
``/stream``, ``/health`` answers; ``delayTime``/``executionTime`` in milliseconds) and runpod-python
1.12.0's ``serverless/modules/rp_job.py`` (what job-take hands a worker: ``id``, ``input``,
``webhook``, ``s3Config``). Times are milliseconds (``...Time``, ``...Ms``) or UNIX seconds (``...At``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, cast

from typing_extensions import TypedDict  # pydantic documents only this TypedDict on Python < 3.12

from emulator.models import JobStatus, WorkerState
from emulator.store.records import JobRecord
from emulator.workers.records import WorkerRecord


class JobAccepted(TypedDict):
    """/run, /cancel, /retry: the job's id and status."""

    id: str
    status: str


class PendingBody(TypedDict):
    """An unfinished /runsync: id and status, and ``delayTime`` (ms) once a worker took the job."""

    id: str
    status: str
    delayTime: NotRequired[int]


class StatusBody(TypedDict):
    """/status, /status-sync and a finished /runsync.

    ``output`` is the result (COMPLETED), the last progress update (IN_PROGRESS) or what a failed
    handler returned; ``error`` is a failure's message; ``coldStart`` is the emulator's breakdown of
    the job's start (queue wait, container create/start, ready, pull, resume; milliseconds).
    """

    id: str
    status: str
    delayTime: int
    executionTime: int
    retries: int
    workerId: NotRequired[str]
    output: NotRequired[Any]
    error: NotRequired[str]
    coldStart: NotRequired[dict[str, Any]]


class StreamChunk(TypedDict):
    output: Any


class StreamBody(TypedDict):
    """/stream: the chunks not yet delivered, and the job's status."""

    id: str
    status: str
    stream: list[StreamChunk]
    error: NotRequired[str]


class WebhookBody(StatusBody):
    """What a job's webhook is POSTed when it ends: the status body (without ``coldStart``), plus the
    job's ``input`` and ``webhook``."""

    input: Any
    webhook: str | None


class JobForWorker(TypedDict):
    """What job-take hands a worker (runpod-python ``rp_job.get_job``)."""

    id: str
    input: NotRequired[Any]
    webhook: NotRequired[str]
    s3Config: NotRequired[Any]


class HealthJobs(TypedDict):
    completed: int
    failed: int
    inProgress: int
    inQueue: int
    retried: int


class HealthWorkers(TypedDict):
    idle: int
    initializing: int
    ready: int
    running: int
    throttled: int
    unhealthy: int


class HealthBody(TypedDict):
    """/health: job counters (``failed`` counts TIMED_OUT too, as RunPod does) and serving workers."""

    jobs: HealthJobs
    workers: HealthWorkers


class WorkerPublic(TypedDict):
    """One entry of GET /v1/endpoints/{id}/workers (times in UNIX seconds)."""

    id: str
    status: str
    version: int
    isStale: bool
    containerId: str | None
    gpuIds: list[str]
    jobIds: list[str]
    restarts: int
    reason: str | None
    nextRetryAt: float | None
    startedAt: float | None
    readyAt: float | None
    lastSeenAt: float | None
    uptimeSeconds: float | None
    kind: str
    paused: bool
    standby: bool
    stopping: bool
    pull: WorkerPull | None
    health: str | None  # load-balancing workers: the last health check's answer, in words
    endedJobIds: list[str]  # jobs ended (timeout, cancel, TTL) whose handler it still runs


class WorkerPull(TypedDict):
    """A worker's image pull (``supervisor.pulls``): ``status`` is the engine's, then ``complete``/``failed``."""

    image: str
    status: str
    layersDone: int
    layersTotal: int
    bytesDone: int
    bytesTotal: int
    digest: str | None


class OpenAICall(TypedDict):
    """A job made by ``/v2/{id}/openai/*`` (an emulator addition): its route, whether it was streamed
    and, streamed, ``chunks``, ``ttftMs`` (request to first chunk written), ``chunksPerS`` (after the
    first; None under two chunks) and ``streamMs`` (request to last chunk); see service/openai.py."""

    route: str
    stream: bool
    chunks: NotRequired[int]
    ttftMs: NotRequired[float | None]
    chunksPerS: NotRequired[float | None]
    streamMs: NotRequired[float | None]


class JobDetail(StatusBody):
    """GET /v1/endpoints/{id}/jobs/{job}: the status body and everything the emulator knows of the job."""

    input: Any
    webhook: str | None
    webhookState: str | None
    webhookAttempts: list[dict[str, Any]]
    createdAt: float
    startedAt: float | None
    completedAt: float | None
    lowPriority: bool
    executionTimeoutMs: int
    ttlMs: int
    openai: NotRequired[OpenAICall]
    hasInput: bool  # False: the request had no `input` (the worker got none)
    firstStartedAt: float | None  # the first hand-over: the execution timeout counts from it
    namedAt: float | None  # the last ping of its worker that named it
    droppedAt: float | None  # when its live worker stopped reporting it (it is not run again)
    resultRefused: str | None  # why a worker's post for it was refused (payload limits)


class RecentJob(StatusBody):
    """One row of GET /v1/endpoints/{id}/jobs (and the dashboard's recent jobs): the status body, when
    the job was created, why a worker's post for it was refused (payload limits; null when none was)
    and, for an OpenAI-compatible call, its ``openai`` figures."""

    createdAt: float
    resultRefused: str | None
    openai: NotRequired[OpenAICall]


# --- jobs ---------------------------------------------------------------------------------------------
def accepted(job: JobRecord) -> JobAccepted:
    return {"id": job.id, "status": job.status.value}


def status_body(job: JobRecord, now: float) -> StatusBody:
    """The /status shape: id, status, delayTime, executionTime, retries, and output|error, workerId."""
    body: StatusBody = {
        "id": job.id,
        "status": job.status.value,
        "delayTime": job.delay_ms(now),
        "executionTime": job.execution_ms(now),
        "retries": job.retries,
    }
    if job.worker_id:
        body["workerId"] = job.worker_id
    if job.status == JobStatus.COMPLETED:
        body["output"] = job.output
        if job.error:
            body["error"] = job.error
    elif job.status in (JobStatus.FAILED, JobStatus.TIMED_OUT):
        if job.error is not None:
            body["error"] = job.error
        if job.output is not None:
            body["output"] = job.output
    elif job.status == JobStatus.IN_PROGRESS and job.progress is not None:
        body["output"] = job.progress
    if job.breakdown:
        body["coldStart"] = job.breakdown
    return body


def pending_body(job: JobRecord, now: float) -> PendingBody:
    """A /runsync whose wait ended before the job did: RunPod answers id and status only."""
    body: PendingBody = {"id": job.id, "status": job.status.value}
    if job.started_at is not None:
        body["delayTime"] = job.delay_ms(now)
    return body


def stream_body(job: JobRecord, chunks: Iterable[Any]) -> StreamBody:
    body: StreamBody = {"id": job.id, "status": job.status.value, "stream": [{"output": c} for c in chunks]}
    if job.status in (JobStatus.FAILED, JobStatus.TIMED_OUT) and job.error:
        body["error"] = job.error
    return body


def webhook_body(job: JobRecord, now: float) -> WebhookBody:
    status = status_body(job, now)
    status.pop("coldStart", None)
    return {**status, "input": job.input, "webhook": job.webhook}


def job_for_worker(job: JobRecord) -> JobForWorker:
    """A job queued without ``input`` reaches the worker without it, as on RunPod (its SDK then fails
    the job: "Job has missing field(s)")."""
    handed: JobForWorker = {"id": job.id}
    if job.has_input:
        handed["input"] = job.input
    if job.webhook:
        handed["webhook"] = job.webhook
    if job.s3_config is not None:
        handed["s3Config"] = job.s3_config
    return handed


def recent_job(job: JobRecord, now: float) -> RecentJob:
    # cast: mypy wants a key that only the target declares (``openai``) in the ``**`` item
    row = cast(
        RecentJob, {**status_body(job, now), "createdAt": job.created_at, "resultRefused": job.result_refused}
    )
    if job.openai:
        row["openai"] = cast(OpenAICall, job.openai)
    return row


def job_detail(job: JobRecord, now: float, webhook_attempts: list[dict[str, Any]]) -> JobDetail:
    detail = cast(
        JobDetail,
        {
            **status_body(job, now),
            "input": job.input,
            "webhook": job.webhook,
            "webhookState": job.webhook_state,
            "webhookAttempts": webhook_attempts,
            "createdAt": job.created_at,
            "startedAt": job.started_at,
            "completedAt": job.completed_at,
            "lowPriority": job.low_priority,
            "executionTimeoutMs": job.execution_timeout_ms,
            "ttlMs": job.ttl_ms,
            "hasInput": job.has_input,
            "firstStartedAt": job.first_started_at,
            "namedAt": job.named_at,
            "droppedAt": job.dropped_at,
            "resultRefused": job.result_refused,
        },
    )
    if job.openai:
        detail["openai"] = cast(OpenAICall, job.openai)
    return detail


# --- health and workers ---------------------------------------------------------------------------------
def health_body(
    in_queue: int, in_progress: int, counters: Mapping[str, int], workers: Iterable[WorkerRecord]
) -> HealthBody:
    """/health from the queue's counts, the store's durable counters and the endpoint's workers
    (standby containers are extra capacity, not workers: they are not counted)."""
    counts = {state: 0 for state in WorkerState}
    for worker in workers:
        if not worker.standby:
            counts[worker.state] += 1
    return {
        "jobs": {
            "completed": counters.get("completed", 0),
            "failed": counters.get("failed", 0) + counters.get("timed_out", 0),
            "inProgress": in_progress,
            "inQueue": in_queue,
            "retried": counters.get("retried", 0),
        },
        "workers": {
            "idle": counts[WorkerState.IDLE],
            "initializing": counts[WorkerState.INITIALIZING],
            "ready": counts[WorkerState.IDLE] + counts[WorkerState.RUNNING],
            "running": counts[WorkerState.RUNNING] + counts[WorkerState.OUTDATED],
            "throttled": counts[WorkerState.THROTTLED],
            "unhealthy": counts[WorkerState.UNHEALTHY],
        },
    }


def worker_public(w: WorkerRecord, endpoint_version: int, now: float) -> WorkerPublic:
    return {
        "id": w.id,
        "status": w.status,  # STANDBY for a standby container (extraWorkers), never INITIALIZING
        "version": w.version,
        "isStale": w.version < endpoint_version,
        "containerId": w.container_id,
        "gpuIds": list(w.gpu_ids),
        "jobIds": list(w.job_ids),
        "restarts": w.restarts,
        "reason": w.reason,
        "nextRetryAt": w.next_retry_at,
        "startedAt": w.started_at,
        "readyAt": w.ready_at,
        "lastSeenAt": w.last_seen_at,
        "uptimeSeconds": None if w.started_at is None else max(0.0, now - w.started_at),
        "kind": w.kind,
        "paused": w.paused,
        "standby": w.standby,
        "stopping": w.stopping,
        "pull": None if w.pull is None else cast(WorkerPull, dict(w.pull)),
        "health": w.health,
        "endedJobIds": list(w.ending),
    }


DOCUMENTED: tuple[type, ...] = (
    JobAccepted,
    PendingBody,
    StatusBody,
    StreamBody,
    WebhookBody,
    JobForWorker,
    HealthBody,
    WorkerPublic,
    JobDetail,
    RecentJob,
)
"""The shapes ``api/schema.py`` puts in the OpenAPI document's ``components/schemas``."""

"""Live state for the dashboard: the transition timeline, one snapshot, and a server-sent event stream.

* ``EventLog`` keeps a bounded ring of worker state changes per endpoint, fed by the worker
  registry's listener; every change also nudges ``hub.changed()`` so that waiters wake.
* ``GET /v1/dashboard`` answers one snapshot: endpoints, workers, queue, recent jobs.
* ``GET /v1/endpoints/{id}/events`` answers the endpoint's recent transitions.
* ``GET /v1/events/stream`` is an SSE stream: ``transition`` events as they happen (with ids, so a
  reconnecting EventSource resumes from ``Last-Event-ID``) and a fresh ``snapshot`` after each
  change, at most one per ``SNAPSHOT_MIN_INTERVAL_S``. It waits on ``hub.wait_for_change``; when
  nothing changes it only sends a keep-alive comment every ``KEEPALIVE_S``.

EventSource cannot send headers, so the stream route alone also accepts the API key as ``?key=``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from emulator import wire
from emulator.api import schema
from emulator.api.deps import AppContext, EndpointId, bearer, check_id, context, require_api_key
from emulator.api.management import workers_body
from emulator.errors import InvalidInput, Unauthorized
from emulator.models import Endpoint, WorkerState
from emulator.service.core import Core
from emulator.workers.records import WorkerRecord

RING_PER_ENDPOINT = 500
RING_ENDPOINTS = 256
RING_STREAM = 2000
REPLAY_PER_ENDPOINT = 200  # what a fresh stream gets of each endpoint's history
KEEPALIVE_S = 15.0
SNAPSHOT_MIN_INTERVAL_S = 0.1
RECENT_JOBS = 15
ERROR_CHARS = 300


@dataclass(frozen=True)
class Transition:
    seq: int
    at: float
    endpoint: str
    worker: str
    from_state: str | None
    to_state: str  # a WorkerState, or REMOVED
    reason: str
    job_ids: tuple[str, ...]
    version: int

    def public(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "endpoint": self.endpoint,
            "worker": self.worker,
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
            "jobIds": list(self.job_ids),
            "version": self.version,
        }


class EventLog:
    """Worker state changes, per endpoint, bounded; in memory only (a restart starts it afresh)."""

    def __init__(self, core: Core, per_endpoint: int = RING_PER_ENDPOINT) -> None:
        self.core = core
        self.per_endpoint = per_endpoint
        self._rings: OrderedDict[str, deque[Transition]] = OrderedDict()
        self._recent: deque[Transition] = deque(maxlen=RING_STREAM)
        self._seq = 0
        self._wake_pending = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        core.workers.subscribe(self._on_worker)

    @property
    def last_seq(self) -> int:
        return self._seq

    def record(self, worker: WorkerRecord, old: WorkerState | None, reason: str) -> Transition:
        removed = reason.startswith("removed")
        self._seq += 1
        item = Transition(
            seq=self._seq,
            at=self.core.clock.now(),
            endpoint=worker.endpoint_id,
            worker=worker.id,
            from_state=None if old is None else old.value,
            to_state="REMOVED" if removed else worker.status,
            reason=reason,
            job_ids=tuple(worker.job_ids),
            version=worker.version,
        )
        ring = self._rings.get(worker.endpoint_id)
        if ring is None:
            ring = self._rings[worker.endpoint_id] = deque(maxlen=self.per_endpoint)
            while len(self._rings) > RING_ENDPOINTS:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(worker.endpoint_id)
        ring.append(item)
        self._recent.append(item)
        return item

    def for_endpoint(
        self, endpoint_id: str, limit: int = RING_PER_ENDPOINT, after: int = 0
    ) -> list[Transition]:
        ring = self._rings.get(endpoint_id)
        if not ring:
            return []
        items = [t for t in ring if t.seq > after]
        return items[-limit:] if limit > 0 else []

    def since(self, seq: int) -> list[Transition]:
        """Every transition after ``seq`` still in the stream ring, oldest first."""
        if seq >= self._seq:
            return []
        return [t for t in self._recent if t.seq > seq]

    def replay(self, per_endpoint: int = REPLAY_PER_ENDPOINT) -> list[Transition]:
        """The recent history of every endpoint, oldest first (what a fresh stream starts with)."""
        items: list[Transition] = []
        for ring in self._rings.values():
            items.extend(list(ring)[-per_endpoint:])
        return sorted(items, key=lambda t: t.seq)

    # --- the registry listener ---------------------------------------------------------------------
    def _on_worker(self, worker: WorkerRecord, old: WorkerState | None, reason: str) -> None:
        self.record(worker, old, reason)
        self._schedule_wake()

    def _schedule_wake(self) -> None:
        """Wake the hub's change waiters once, soon, whichever thread the change came from."""
        if self._wake_pending:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._wake_pending = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(self._wake)
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wake_pending = False
        self.core.hub.changed()


# --- the snapshot -----------------------------------------------------------------------------------
def _job_row(body: wire.RecentJob) -> dict[str, Any]:
    """A status body without input or output (they may be large); errors shortened."""
    row = {k: v for k, v in body.items() if k not in ("output", "input")}
    error = row.get("error")
    if isinstance(error, str) and len(error) > ERROR_CHARS:
        row["error"] = error[:ERROR_CHARS] + "…"
    return row


def endpoint_snapshot(ctx: AppContext, endpoint: Endpoint, jobs_limit: int = RECENT_JOBS) -> dict[str, Any]:
    core = ctx.core
    now = core.clock.now()
    stats = core.jobs.stats(endpoint.id, now)
    requests: list[dict[str, Any]] = []
    lb = ctx.load_balancer
    if lb is not None and endpoint.type == "LB":  # load-balancing: requests waiting and in flight, its rows
        in_queue, in_progress, requests = lb.view(endpoint.id, jobs_limit)
        oldest_s = 0.0
    else:
        in_queue, in_progress, oldest_s = stats.in_queue, stats.in_progress, stats.oldest_scaling_wait_s
    counters = core.jobs.counter(endpoint.id)
    jobs = [_job_row(wire.recent_job(j, now)) for j in core.jobs.recent(endpoint.id, jobs_limit)]
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "imageName": endpoint.imageName,
        "version": endpoint.version,
        "workersMin": endpoint.workersMin,
        "workersMax": endpoint.workersMax,
        "extraWorkers": endpoint.extraWorkers,
        "idleTimeout": endpoint.idleTimeout,
        "scalerType": endpoint.scalerType,
        "scalerValue": endpoint.scalerValue,
        "gpuCount": endpoint.gpuCount,
        "flashboot": endpoint.flashboot,
        "executionTimeoutMs": endpoint.executionTimeoutMs,
        "rollout": endpoint.rollout,
        "createdAt": endpoint.createdAt,
        "workers": workers_body(ctx, endpoint),
        "queue": {
            "inQueue": in_queue,
            "inProgress": in_progress,
            "oldestWaitS": round(oldest_s, 3),
            "takers": core.hub.takers(endpoint.id),
        },
        # counters count since the endpoint was created (kept across restarts); "jobs" are the newest
        # jobs whose results are still kept (runRetentionS after /run, syncRetentionS after /runsync)
        "countersSince": endpoint.createdAt,
        "recentJobs": {
            "limit": jobs_limit,
            "runRetentionS": core.settings.run_retention_s,
            "syncRetentionS": core.settings.sync_retention_s,
        },
        "counters": {
            "completed": counters.get("completed", 0),
            "failed": counters.get("failed", 0),
            "timedOut": counters.get("timed_out", 0),
            "cancelled": counters.get("cancelled", 0),
            "retried": counters.get("retried", 0),
        },
        "jobs": jobs,
        "type": endpoint.type,
        "requests": requests,
    }


def snapshot(ctx: AppContext) -> dict[str, Any]:
    settings = ctx.core.settings
    log = ctx.events
    return {
        "now": ctx.core.clock.now(),
        "runtime": settings.runtime,
        "authRequired": bool(settings.api_key),
        "seq": log.last_seq if log is not None else 0,
        "endpoints": [endpoint_snapshot(ctx, e) for e in ctx.core.endpoints.list()],
    }


def event_log(ctx: AppContext) -> EventLog:
    if ctx.events is None:
        ctx.events = EventLog(ctx.core)
    return ctx.events


# --- routes -------------------------------------------------------------------------------------------
router = APIRouter(prefix="/v1", tags=["dashboard"], responses=schema.errors(400, 401, 404, 422, 503))


@router.get(
    "/dashboard", dependencies=[Depends(require_api_key)], summary="Everything the dashboard shows, at once"
)
async def get_dashboard(request: Request) -> dict[str, Any]:
    return snapshot(context(request))


@router.get(
    "/endpoints/{endpoint_id}/events",
    dependencies=[Depends(require_api_key)],
    summary="The endpoint's recent worker state changes (in memory, bounded)",
)
async def endpoint_events(
    endpoint_id: EndpointId,
    request: Request,
    limit: int = schema.query(200, "Transitions", minimum=1, maximum=RING_PER_ENDPOINT),
    after: int = 0,
) -> dict[str, Any]:
    ctx = context(request)
    check_id(endpoint_id, "endpoint")
    ctx.core.endpoints.require(endpoint_id)
    if not 1 <= limit <= RING_PER_ENDPOINT:
        raise InvalidInput(f"limit must be between 1 and {RING_PER_ENDPOINT}", field="limit")
    items = event_log(ctx).for_endpoint(endpoint_id, limit, after)
    return {"events": [t.public() for t in items], "seq": event_log(ctx).last_seq}


def require_key_or_query(request: Request) -> None:
    """The API key from ``Authorization`` or, for EventSource, from ``?key=``."""
    key = context(request).core.settings.api_key
    if not key:
        return
    given = bearer(request) or request.query_params.get("key")
    if given is None or not hmac.compare_digest(given.encode(), key.encode()):
        raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>' or ?key=<key>")


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


async def _stream(ctx: AppContext, resume_after: int | None) -> AsyncIterator[bytes]:
    log = event_log(ctx)
    hub = ctx.core.hub
    stop = ctx.stop
    yield b"retry: 2000\n\n"
    backlog = log.replay() if resume_after is None or resume_after > log.last_seq else log.since(resume_after)
    cursor = log.last_seq  # the backlog covers everything up to here (read in the same step)
    last_sent = b""
    pending: list[Transition] = backlog
    waiter: asyncio.Task[bool] | None = None
    stopping = asyncio.create_task(stop.wait()) if stop is not None else None
    try:
        while stop is None or not stop.is_set():
            # park on the hub before reading, so that no change made while we send is missed
            waiter = asyncio.create_task(hub.wait_for_change(KEEPALIVE_S))
            await asyncio.sleep(0)
            for item in pending:
                yield _sse("transition", item.public(), item.seq)
            body = snapshot(ctx)
            now = body.pop("now")
            encoded = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
            if encoded != last_sent:
                last_sent = encoded
                yield _sse("snapshot", body | {"now": now})
            await asyncio.wait(
                [t for t in (waiter, stopping) if t is not None], return_when=asyncio.FIRST_COMPLETED
            )
            if stopping is not None and stopping.done():
                break
            changed = waiter.result()
            waiter = None
            if not changed:
                yield b": keep-alive\n\n"
            else:
                # let a burst of changes (take, transition, job update) land in one snapshot
                await asyncio.sleep(SNAPSHOT_MIN_INTERVAL_S)
            pending = log.since(cursor)
            if pending:
                cursor = pending[-1].seq
    finally:
        for task in (waiter, stopping):
            if task is not None:
                task.cancel()


@router.get(
    "/events/stream",
    dependencies=[Depends(require_key_or_query)],
    summary="Server-sent events: worker transitions and dashboard snapshots as they change",
    response_class=StreamingResponse,
    responses={200: {"description": "An endless text/event-stream", "content": {"text/event-stream": {}}}},
)
async def event_stream(request: Request) -> StreamingResponse:
    ctx = context(request)
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    resume_after: int | None = None
    if raw:
        try:
            resume_after = int(raw)
        except ValueError as exc:
            raise InvalidInput("Last-Event-ID must be a transition number", field="Last-Event-ID") from exc
    return StreamingResponse(
        _stream(ctx, resume_after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )

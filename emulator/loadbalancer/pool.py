"""The routing pool of load-balancing endpoints: which workers take requests, how many each holds,
the requests waiting for a worker, and the last requests served (the dashboard's rows).

In memory, owned by one control plane. The health poller marks workers routable or not; the proxy
acquires a worker for each request (``acquire``) and releases it when the answer is sent. A request
in flight also puts ``IN_FLIGHT`` in the worker record's ``job_ids``, so the worker reports RUNNING
while it serves and the supervisor's drains (rolling updates, ``workersMax`` lowered, deletion) wait
for its requests exactly as for jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from emulator.clock import Clock
from emulator.loadbalancer import rules
from emulator.models import Endpoint, WorkerState
from emulator.service.workers import WorkerRegistry
from emulator.store.jobs import QueueStats
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.loadbalancer")

RECHECK_S = 0.5  # a waiting request looks again at least this often (a worker failed, a start was throttled)
# A worker serving requests holds this marker in its record's job_ids (shown as its jobIds), from its first
# request in flight until none has been in flight for LINGER_S: RUNNING in between, and drains wait for it.
# (Not one id per request: a state change per request cost about 1.2 ms of the proxy's time, see bench/.)
IN_FLIGHT = "http-requests"
LINGER_S = 0.2


class NoWorker(Exception):
    """No worker became available in time (RunPod: 400 ``no workers available``)."""


class AffinityGone(Exception):
    """Strict affinity names a worker the endpoint no longer has (RunPod: 404 ``affinity_worker_gone``)."""


class AffinityTimeout(Exception):
    """Strict affinity's worker did not become free in time (RunPod: 400, timed out waiting for worker)."""


@dataclass
class Slot:
    """What the pool knows of one worker beyond its record."""

    address: str | None = None  # the container's IP on the workers' network
    container_id: str | None = None
    routable: bool = False  # last health check answered 200 and the record takes work
    in_flight: int = 0
    last_pick: int = 0
    bad_since: float | None = None
    health: str | None = None  # the last health answer, in words
    linger: asyncio.TimerHandle | None = None  # the pending RUNNING -> IDLE once no request is in flight


@dataclass
class Lease:
    """One request's hold on a worker (``release`` it once)."""

    worker_id: str
    request_id: str
    address: str
    waited_s: float
    cold_start: dict[str, float] = field(default_factory=dict)


class Pool:
    def __init__(
        self,
        workers: WorkerRegistry,
        clock: Clock,
        lookup: Callable[[str], Endpoint | None],
        kept_requests: int = 500,
    ) -> None:
        self.workers = workers
        self.clock = clock
        self.lookup = lookup
        self.slots: dict[str, Slot] = {}
        self._waiting: dict[str, dict[str, float]] = {}  # endpoint -> request id -> since (monotonic)
        self._picks = itertools.count(1)
        self._changed = asyncio.Event()
        self.requests: deque[dict[str, Any]] = deque(maxlen=max(1, kept_requests))
        self.on_wait: Callable[[str], None] = lambda endpoint_id: None  # wake the supervisor
        self.on_resume: Callable[[str], None] = lambda worker_id: (
            None
        )  # strict-resume: resume a paused worker
        workers.subscribe(self._worker_changed)

    # --- what the health poller and the registry report ---------------------------------------------
    def slot(self, worker_id: str) -> Slot:
        return self.slots.setdefault(worker_id, Slot())

    def set_routable(self, worker_id: str, routable: bool) -> None:
        slot = self.slot(worker_id)
        if slot.routable != routable:
            slot.routable = routable
            self.notify()

    def _worker_changed(self, worker: WorkerRecord, old: WorkerState | None, reason: str) -> None:
        if self.workers.get(worker.id) is None:
            self.slots.pop(worker.id, None)
        elif not self.workers.may_take(worker):
            slot = self.slots.get(worker.id)
            if slot is not None:
                slot.routable = False
        self.notify()

    def notify(self) -> None:
        """Waiting requests look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the scaler's view ------------------------------------------------------------------------------
    def stats(self, endpoint_id: str, now_monotonic: float | None = None) -> QueueStats:
        waiting = self._waiting.get(endpoint_id, {})
        now = self.clock.monotonic() if now_monotonic is None else now_monotonic
        oldest = max((now - since for since in waiting.values()), default=0.0)
        in_flight = sum(
            self.slots[w.id].in_flight for w in self.workers.for_endpoint(endpoint_id) if w.id in self.slots
        )
        return rules.stats(len(waiting), in_flight, oldest)

    # --- what the proxy asks ----------------------------------------------------------------------------
    def candidates(self, endpoint: Endpoint) -> tuple[list[rules.Candidate], bool]:
        """The endpoint's workers for ``rules.choose``, and whether another worker is coming (one is
        starting, or the endpoint is below ``workersMax`` so the scaler may add one)."""
        out: list[rules.Candidate] = []
        starting = serving = 0
        for w in self.workers.for_endpoint(endpoint.id):
            if w.standby or w.kind != "container":
                continue
            slot = self.slots.get(w.id) or Slot()
            takes = self.workers.may_take(w) and w.version >= endpoint.version
            alive = not w.stopping and w.state != WorkerState.OUTDATED
            if alive:
                serving += 1
                if w.state in (WorkerState.INITIALIZING, WorkerState.THROTTLED) or (
                    w.state == WorkerState.UNHEALTHY and w.next_retry_at is not None
                ):
                    starting += 1
            out.append(
                rules.Candidate(
                    w.id,
                    routable=takes and slot.routable and slot.address is not None,
                    in_flight=slot.in_flight,
                    last_pick=slot.last_pick,
                    alive=alive,
                    paused=w.paused,
                )
            )
        return out, starting > 0 or serving < endpoint.workersMax

    async def acquire(self, endpoint: Endpoint, wanted: rules.Affinity, wait_s: float) -> Lease:
        """A worker for one request, waiting up to ``wait_s`` for one (the supervisor is told, so a
        scaled-to-zero endpoint starts one). Raises NoWorker, AffinityGone or AffinityTimeout."""
        request_id = f"req-{uuid.uuid4().hex[:12]}"
        began = self.clock.monotonic()
        deadline = began + wait_s
        registered = False
        resumed = False
        try:
            while True:
                endpoint = self._fresh(endpoint)
                candidates, coming = self.candidates(endpoint)
                cap = rules.per_worker(endpoint.scalerValue)
                remaining = deadline - self.clock.monotonic()
                # out of time: a busy worker rather than none (there is no queue to hold the request)
                choice = rules.choose(candidates, wanted, cap, coming and remaining > 0)
                if choice.action == "gone":
                    raise AffinityGone(choice.worker_id)
                if choice.action == "route":
                    return self._take(choice.worker_id, request_id, self.clock.monotonic() - began)
                if choice.resume and not resumed:
                    resumed = True
                    self.on_resume(choice.worker_id)
                if not registered:
                    registered = True
                    self._waiting.setdefault(endpoint.id, {})[request_id] = began
                    self.on_wait(endpoint.id)
                if remaining <= 0:
                    if wanted.mode in ("strict", "strict-resume"):
                        raise AffinityTimeout(wanted.worker_id)
                    raise NoWorker(endpoint.id)
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=min(remaining, RECHECK_S))
        finally:
            if registered:
                waiting = self._waiting.get(endpoint.id, {})
                waiting.pop(request_id, None)
                if not waiting:
                    self._waiting.pop(endpoint.id, None)

    def _fresh(self, endpoint: Endpoint) -> Endpoint:
        """The endpoint as stored now (a PATCH while a request waits changes its version or scaler);
        NoWorker when it was deleted meanwhile."""
        fresh = self.lookup(endpoint.id)
        if fresh is None:
            raise NoWorker(endpoint.id)
        return fresh

    def _take(self, worker_id: str, request_id: str, waited_s: float) -> Lease:
        slot = self.slots[worker_id]
        slot.in_flight += 1
        slot.last_pick = next(self._picks)
        if slot.linger is not None:
            slot.linger.cancel()
            slot.linger = None
        worker = self.workers.get(worker_id)
        cold: dict[str, float] = {}
        if worker is not None:
            if waited_s > 0.001:
                cold = dict(worker.timings)
            if IN_FLIGHT not in worker.job_ids:
                self.workers.jobs_assigned(worker, [IN_FLIGHT])
        assert slot.address is not None
        return Lease(worker_id, request_id, slot.address, waited_s, cold)

    def release(self, lease: Lease) -> None:
        slot = self.slots.get(lease.worker_id)
        if slot is not None:
            slot.in_flight = max(0, slot.in_flight - 1)
            if slot.in_flight == 0 and slot.linger is None:
                loop = asyncio.get_running_loop()
                slot.linger = loop.call_later(LINGER_S, self._drained, lease.worker_id)
        self.notify()

    def _drained(self, worker_id: str) -> None:
        """No request came back within LINGER_S: the worker holds none (RUNNING -> IDLE)."""
        slot = self.slots.get(worker_id)
        if slot is not None:
            slot.linger = None
            if slot.in_flight > 0:
                return
        worker = self.workers.get(worker_id)
        if worker is not None and IN_FLIGHT in worker.job_ids:
            self.workers.job_released(worker, IN_FLIGHT)

    def record(self, row: dict[str, Any]) -> None:
        """One served request, for the dashboard (method, path, status, worker, ms)."""
        self.requests.append(row)

    def recent(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` rows of ``endpoint_id``, newest first; rows from before its creation (an
        endpoint of the same id, deleted) are left out."""
        endpoint = self.lookup(endpoint_id)
        since = endpoint.createdAt if endpoint is not None else 0.0
        rows = [r for r in self.requests if r["endpointId"] == endpoint_id and r["at"] >= since]
        return list(reversed(rows[-limit:]))

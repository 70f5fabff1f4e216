"""Prometheus metrics, one ``CollectorRegistry`` per control plane (several may share a process).

Two kinds of numbers:

* observed as they happen (counters and histograms kept here): job delay and execution times,
  container starts, worker restarts, worker state transitions;
* computed at scrape time from the store and the worker registry (``_StateCollector``): jobs by
  final status (the store's durable counters), queue depth, workers by state. Nothing is updated
  on every change for those, and a scrape always agrees with ``/health`` and the workers list.

Callers that only hold the ``Core`` (the supervisor, the job service) use the module functions,
which do nothing when no metrics are attached (unit tests that build a bare ``Core``)::

    from emulator.service import metrics
    metrics.container_started(core, endpoint_id, seconds=1.8)
    metrics.worker_restarted(core, endpoint_id)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from emulator.models import WorkerState
from emulator.workers.records import STANDBY

if TYPE_CHECKING:
    from emulator.service.core import Core
    from emulator.store.records import JobRecord
    from emulator.workers.records import WorkerRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# from a few ms (a warm worker) to the default execution timeout (10 minutes)
TIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
START_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
# streamed OpenAI calls: time to first chunk (from the request) and chunks per second
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
FINAL_STATUSES = ("completed", "failed", "timed_out", "cancelled")


class Metrics:
    """The metrics of one control plane."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.job_delay = Histogram(
            "emulator_job_delay_seconds",
            "Time from submission to a worker taking the job (RunPod's delayTime)",
            ["endpoint"],
            buckets=TIME_BUCKETS_S,
            registry=r,
        )
        self.job_execution = Histogram(
            "emulator_job_execution_seconds",
            "Time a worker spent on the job (RunPod's executionTime)",
            ["endpoint", "status"],
            buckets=TIME_BUCKETS_S,
            registry=r,
        )
        self.cold_start = Histogram(
            "emulator_job_cold_start_seconds",
            "Queue wait of jobs that were the first of a freshly started worker (coldStart=true)",
            ["endpoint"],
            buckets=TIME_BUCKETS_S,
            registry=r,
        )
        self.container_starts = Counter(
            "emulator_container_starts",
            "Worker containers created and started",
            ["endpoint"],
            registry=r,
        )
        self.container_start_failures = Counter(
            "emulator_container_start_failures",
            "Worker containers that could not be created or started",
            ["endpoint"],
            registry=r,
        )
        self.container_start_time = Histogram(
            "emulator_container_start_seconds",
            "Time to create and start a worker container",
            ["endpoint"],
            buckets=START_BUCKETS_S,
            registry=r,
        )
        self.worker_restarts = Counter(
            "emulator_worker_restarts",
            "Workers restarted after a crash, a timeout or an unhealthy report",
            ["endpoint"],
            registry=r,
        )
        self.transitions = Counter(
            "emulator_worker_transitions",
            "Worker state changes",
            ["endpoint", "from_state", "to_state"],
            registry=r,
        )
        self.openai_ttft = Histogram(
            "emulator_openai_ttft_seconds",
            "Streamed /openai/* calls: time from the request to the first chunk written to the client",
            ["endpoint"],
            buckets=TTFT_BUCKETS_S,
            registry=r,
        )
        self.openai_rate = Histogram(
            "emulator_openai_stream_chunks_per_second",
            "Streamed /openai/* calls: chunks per second after the first (calls with two chunks or more)",
            ["endpoint"],
            buckets=RATE_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(core))
        core.workers.subscribe(self._on_worker)

    # --- the API for the rest of the control plane -------------------------------------------------
    def job_finished(self, job: JobRecord) -> None:
        """A job reached a final status (called by the job service)."""
        end = job.completed_at or 0.0
        status = job.status.value
        if job.started_at is not None:
            self.job_delay.labels(job.endpoint_id).observe(job.delay_ms(end) / 1000.0)
            self.job_execution.labels(job.endpoint_id, status).observe(job.execution_ms(end) / 1000.0)
        if job.breakdown.get("coldStart"):
            wait_ms = job.breakdown.get("queueWaitMs")
            if isinstance(wait_ms, int | float):
                self.cold_start.labels(job.endpoint_id).observe(wait_ms / 1000.0)

    def openai_stream(self, endpoint_id: str, ttft_ms: float | None, chunks_per_s: float | None) -> None:
        """A streamed OpenAI call ended: its time to first chunk (ms) and chunk rate, when known."""
        if ttft_ms is not None:
            self.openai_ttft.labels(endpoint_id).observe(ttft_ms / 1000.0)
        if chunks_per_s is not None:
            self.openai_rate.labels(endpoint_id).observe(chunks_per_s)

    def container_started(self, endpoint_id: str, seconds: float | None = None) -> None:
        """A worker container was created and started; ``seconds`` is how long that took."""
        self.container_starts.labels(endpoint_id).inc()
        if seconds is not None and seconds >= 0:
            self.container_start_time.labels(endpoint_id).observe(seconds)

    def container_start_failed(self, endpoint_id: str) -> None:
        self.container_start_failures.labels(endpoint_id).inc()

    def worker_restarted(self, endpoint_id: str) -> None:
        self.worker_restarts.labels(endpoint_id).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def _on_worker(self, record: WorkerRecord, old: WorkerState | None, reason: str) -> None:
        to_state = "REMOVED" if reason.startswith("removed") else record.status
        from_state = "NONE" if old is None else old.value
        if from_state != to_state:
            self.transitions.labels(record.endpoint_id, from_state, to_state).inc()


class _StateCollector(Collector):
    """Numbers read from the store and the registry when Prometheus scrapes."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def describe(self) -> list[Metric]:
        return []  # computed on collect; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        core = self.core
        now = core.clock.now()
        jobs = CounterMetricFamily(
            "emulator_jobs", "Jobs that reached a final status", labels=["endpoint", "status"]
        )
        retried = CounterMetricFamily(
            "emulator_jobs_retried", "Jobs put back in the queue (retry or lost worker)", labels=["endpoint"]
        )
        queued = GaugeMetricFamily("emulator_queue_depth", "Jobs waiting in the queue", labels=["endpoint"])
        running = GaugeMetricFamily("emulator_jobs_in_progress", "Jobs held by a worker", labels=["endpoint"])
        oldest = GaugeMetricFamily(
            "emulator_queue_oldest_wait_seconds",
            "How long the oldest queued (not low-priority) job has waited",
            labels=["endpoint"],
        )
        workers = GaugeMetricFamily("emulator_workers", "Workers by state", labels=["endpoint", "state"])
        waiting = GaugeMetricFamily(
            "emulator_job_take_waiters", "Workers parked in a job-take long poll", labels=["endpoint"]
        )
        version = GaugeMetricFamily(
            "emulator_endpoint_version", "The endpoint's current version", labels=["endpoint"]
        )
        endpoints = core.endpoints.list()
        known = {e.id for e in endpoints}
        counts: dict[str, dict[str, int]] = {
            e.id: {s.value: 0 for s in WorkerState} | {STANDBY: 0} for e in endpoints
        }
        for worker in core.workers.all():
            if worker.endpoint_id in known:
                counts[worker.endpoint_id][worker.status] += 1
        for endpoint in endpoints:
            eid = endpoint.id
            counters = core.jobs.counter(eid)
            for status in FINAL_STATUSES:
                jobs.add_metric([eid, status.upper()], counters.get(status, 0))
            retried.add_metric([eid], counters.get("retried", 0))
            stats = core.jobs.stats(eid, now)
            queued.add_metric([eid], stats.in_queue)
            running.add_metric([eid], stats.in_progress)
            oldest.add_metric([eid], stats.oldest_scaling_wait_s)
            for state, n in counts[eid].items():
                workers.add_metric([eid, state], n)
            waiting.add_metric([eid], core.hub.takers(eid))
            version.add_metric([eid], endpoint.version)
        yield from (jobs, retried, queued, running, oldest, workers, waiting, version)


# --- module functions: what holders of the Core call ------------------------------------------------
def attach(core: Core) -> Metrics:
    """The control plane's metrics, created on first use and kept with the ``Core``."""
    existing = of(core)
    if existing is not None:
        return existing
    created = Metrics(core)
    core.metrics = created
    return created


def of(core: Core) -> Metrics | None:
    return core.metrics


def job_finished(core: Core, job: JobRecord) -> None:
    m = of(core)
    if m is not None:
        m.job_finished(job)


def container_started(core: Core, endpoint_id: str, seconds: float | None = None) -> None:
    m = of(core)
    if m is not None:
        m.container_started(endpoint_id, seconds)


def container_start_failed(core: Core, endpoint_id: str) -> None:
    m = of(core)
    if m is not None:
        m.container_start_failed(endpoint_id)


def worker_restarted(core: Core, endpoint_id: str) -> None:
    m = of(core)
    if m is not None:
        m.worker_restarted(endpoint_id)


def openai_stream(core: Core, endpoint_id: str, ttft_ms: float | None, chunks_per_s: float | None) -> None:
    m = of(core)
    if m is not None:
        m.openai_stream(endpoint_id, ttft_ms, chunks_per_s)

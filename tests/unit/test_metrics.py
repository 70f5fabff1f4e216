"""Prometheus metrics: one registry per control plane, scrape-time gauges, the supervisor's hooks."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from emulator.clock import FakeClock
from emulator.config import Settings
from emulator.models import Endpoint, JobRequest, JobStatus
from emulator.service import metrics
from emulator.service.core import Core, build_core, job_service

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(m: metrics.Metrics) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def make_core(tmp_path: Path, clock: FakeClock) -> Core:
    core = build_core(Settings(data_dir=tmp_path, runtime="none"), clock)
    core.endpoints.create(Endpoint(id="ep", name="ep", imageName="img:latest", createdAt=clock.now()))
    return core


def test_job_worker_and_container_numbers(tmp_path: Path) -> None:
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    try:
        m = metrics.attach(core)
        assert metrics.attach(core) is m and metrics.of(core) is m
        jobs = job_service(core)
        endpoint = core.endpoints.require("ep")
        first = jobs.submit(endpoint, JobRequest(input=1), sync=False)
        jobs.submit(endpoint, JobRequest(input=2), sync=False)

        worker = core.workers.create("ep", 1)
        metrics.container_started(core, "ep", seconds=1.5)
        metrics.container_started(core, "ep", seconds=1.5)
        metrics.worker_restarted(core, "ep")
        metrics.container_start_failed(core, "ep")
        core.workers.touch(worker)  # first contact: IDLE
        clock.advance(0.5)
        (claimed,) = core.jobs.claim("ep", worker.id, 1, clock.now(), 30)
        assert claimed.id == first.id
        core.workers.jobs_assigned(worker, [claimed.id])
        core.jobs.set_breakdown(claimed.id, {"queueWaitMs": 500, "coldStart": True, "readyMs": 300})
        clock.advance(2.5)
        assert jobs.finish(claimed, JobStatus.COMPLETED, output="ok") is not None

        s = scrape(m)
        assert value(s, "emulator_jobs_total", endpoint="ep", status="COMPLETED") == 1
        assert value(s, "emulator_jobs_total", endpoint="ep", status="FAILED") == 0
        assert value(s, "emulator_queue_depth", endpoint="ep") == 1
        assert value(s, "emulator_jobs_in_progress", endpoint="ep") == 0
        assert value(s, "emulator_queue_oldest_wait_seconds", endpoint="ep") == 3.0
        assert value(s, "emulator_workers", endpoint="ep", state="IDLE") == 1
        assert value(s, "emulator_workers", endpoint="ep", state="RUNNING") == 0
        assert value(s, "emulator_endpoint_version", endpoint="ep") == 1

        assert value(s, "emulator_job_execution_seconds_count", endpoint="ep", status="COMPLETED") == 1
        assert value(s, "emulator_job_execution_seconds_sum", endpoint="ep", status="COMPLETED") == 2.5
        assert (
            value(s, "emulator_job_execution_seconds_bucket", endpoint="ep", status="COMPLETED", le="2.5")
            == 1
        )
        assert (
            value(s, "emulator_job_execution_seconds_bucket", endpoint="ep", status="COMPLETED", le="1.0")
            == 0
        )
        assert value(s, "emulator_job_delay_seconds_sum", endpoint="ep") == 0.5
        assert value(s, "emulator_job_cold_start_seconds_count", endpoint="ep") == 1
        assert value(s, "emulator_job_cold_start_seconds_sum", endpoint="ep") == 0.5

        assert value(s, "emulator_container_starts_total", endpoint="ep") == 2
        assert value(s, "emulator_container_start_seconds_sum", endpoint="ep") == 3.0
        assert value(s, "emulator_container_start_failures_total", endpoint="ep") == 1
        assert value(s, "emulator_worker_restarts_total", endpoint="ep") == 1
        for old, new in (
            ("NONE", "INITIALIZING"),
            ("INITIALIZING", "IDLE"),
            ("IDLE", "RUNNING"),
            ("RUNNING", "IDLE"),
        ):
            assert (
                value(s, "emulator_worker_transitions_total", endpoint="ep", from_state=old, to_state=new)
                == 1
            )

        core.workers.remove(worker.id, "test")
        s = scrape(m)
        assert value(s, "emulator_workers", endpoint="ep", state="IDLE") == 0
        assert (
            value(
                s, "emulator_worker_transitions_total", endpoint="ep", from_state="IDLE", to_state="REMOVED"
            )
            == 1
        )
    finally:
        core.close()


def test_each_control_plane_has_its_own_registry(tmp_path: Path) -> None:
    a = make_core(tmp_path / "a", FakeClock())
    b = make_core(tmp_path / "b", FakeClock())
    try:
        ma, mb = metrics.attach(a), metrics.attach(b)
        assert ma.registry is not mb.registry
        metrics.container_started(a, "ep")
        assert value(scrape(ma), "emulator_container_starts_total", endpoint="ep") == 1
        assert ("emulator_container_starts_total", (("endpoint", "ep"),)) not in scrape(mb)
    finally:
        a.close()
        b.close()


def test_hooks_do_nothing_without_metrics(tmp_path: Path) -> None:
    core = make_core(tmp_path, FakeClock())
    try:
        assert metrics.of(core) is None
        metrics.container_started(core, "ep", seconds=1.0)
        metrics.container_start_failed(core, "ep")
        metrics.worker_restarted(core, "ep")
        jobs = job_service(core)
        job = jobs.submit(core.endpoints.require("ep"), JobRequest(input=1), sync=False)
        assert jobs.finish(job, JobStatus.CANCELLED) is not None  # job_finished is a no-op too
        assert metrics.of(core) is None
    finally:
        core.close()


def test_deleted_endpoints_leave_the_gauges(tmp_path: Path) -> None:
    core = make_core(tmp_path, FakeClock())
    try:
        m = metrics.attach(core)
        assert ("emulator_queue_depth", (("endpoint", "ep"),)) in scrape(m)
        core.endpoints.delete("ep")
        assert ("emulator_queue_depth", (("endpoint", "ep"),)) not in scrape(m)
    finally:
        core.close()

"""The job store on a real SQLite file: atomic claims, requeue limits, expiry, durability."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from emulator.models import JobStatus
from emulator.store.db import connect
from emulator.store.jobs import JobStore, NewJob
from emulator.store.streams import StreamStore


def new_job(i: int, endpoint: str = "e", **kw: object) -> NewJob:
    base: dict[str, Any] = dict(
        id=f"job-{i}",
        endpoint_id=endpoint,
        input={"i": i},
        webhook=None,
        s3_config=None,
        low_priority=False,
        execution_timeout_ms=600_000,
        ttl_ms=86_400_000,
        is_sync=False,
    )
    base.update(kw)
    return NewJob(**base)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(connect(tmp_path / "db.sqlite"))


def test_claims_are_fifo_and_never_double(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    JobStore(connect(path))
    setup = JobStore(connect(path))
    for i in range(200):
        setup.enqueue(new_job(i), now=1000.0 + i)
    taken: list[list[str]] = [[] for _ in range(4)]

    def worker(n: int) -> None:
        store = JobStore(connect(path))  # a connection per thread: SQLite's locking decides
        while True:
            jobs = store.claim("e", f"w{n}", 3, now=2000.0, lease_s=10)
            if not jobs:
                return
            taken[n].extend(j.id for j in jobs)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [j for part in taken for j in part]
    assert sorted(everything) == sorted(f"job-{i}" for i in range(200))
    assert len(set(everything)) == 200
    for part in taken:  # each worker saw its jobs in queue order
        assert part == sorted(part, key=lambda j: int(j.split("-")[1]))


def test_requeue_counts_retries_then_fails(store: JobStore) -> None:
    store.enqueue(new_job(1), now=0)
    for attempt in range(3):
        (claimed,) = store.claim("e", f"w{attempt}", 1, now=10, lease_s=5)
        (outcome,) = store.requeue_worker(f"w{attempt}", now=11, max_retries=3, reason="gone")
        assert not outcome.failed
        again = store.get("job-1")
        assert again is not None and again.retries == attempt + 1
    store.claim("e", "w3", 1, now=20, lease_s=5)
    (outcome,) = store.requeue_worker("w3", now=21, max_retries=3, reason="gone")
    assert outcome.failed
    job = store.get("job-1")
    assert job is not None and job.status == JobStatus.FAILED and "4 attempts" in (job.error or "")


def test_expired_leases_requeue(store: JobStore) -> None:
    store.enqueue(new_job(1), now=0)
    store.claim("e", "w", 1, now=1, lease_s=5)
    assert store.expired_leases(now=5.5) == []
    assert [j.id for j in store.expired_leases(now=6.5)] == ["job-1"]
    (outcome,) = store.requeue_jobs(["job-1"], now=6.5, max_retries=3, reason="lost")
    assert outcome.job_id == "job-1"
    assert store.get("job-1").status == JobStatus.IN_QUEUE  # type: ignore[union-attr]


def test_a_dropped_job_has_no_lease_and_is_not_requeued_with_its_worker(store: JobStore) -> None:
    """#13 item 1: a job a live worker named and then dropped stays IN_PROGRESS until its timeout."""
    store.enqueue(new_job(1), now=0)
    store.claim("e", "w", 1, now=1, lease_s=5)
    assert store.mark_dropped("w", ["job-1"], now=2) == []  # never named: not dropped by a ping
    store.renew_named("w", ["job-1"], now=2, lease_s=5)
    assert store.mark_dropped("w", ["job-1"], now=3) == ["job-1"]
    job = store.get("job-1")
    assert job is not None and job.status == JobStatus.IN_PROGRESS
    assert (job.named_at, job.dropped_at, job.lease_expires_at) == (2, 3, None)
    assert store.expired_leases(now=100) == []
    assert store.requeue_worker("w", now=4, max_retries=3, reason="gone") == []


def test_the_execution_timeout_counts_from_the_first_start(store: JobStore) -> None:
    store.enqueue(new_job(1), now=0)  # execution_timeout_ms 600000
    store.claim("e", "w1", 1, now=10, lease_s=5)
    store.requeue_worker("w1", now=20, max_retries=3, reason="gone")
    assert [j.id for j in store.overdue(now=609)] == []
    assert [j.id for j in store.overdue(now=611)] == ["job-1"]  # queued again, still past it
    store.claim("e", "w2", 1, now=611, lease_s=5)
    job = store.get("job-1")
    assert job is not None and (job.first_started_at, job.started_at) == (10, 611)
    store.finish("job-1", JobStatus.FAILED, now=612, retention_s=60)
    again = store.retry("job-1", now=613)  # a retry asked for by the user is a new attempt
    assert again is not None and again.first_started_at is None


def test_finish_only_from_active_states(store: JobStore) -> None:
    store.enqueue(new_job(1), now=0)
    store.claim("e", "w", 1, now=1, lease_s=5)
    done = store.finish("job-1", JobStatus.COMPLETED, now=2, retention_s=60, output={"x": 1})
    assert done is not None and done.output == {"x": 1}
    assert store.finish("job-1", JobStatus.FAILED, now=3, retention_s=60, error="late") is None
    assert store.get("job-1").status == JobStatus.COMPLETED  # type: ignore[union-attr]
    assert store.counter("e") == {"completed": 1}


def test_retention_and_ttl_delete(store: JobStore) -> None:
    store.enqueue(new_job(1), now=0)
    store.enqueue(new_job(2, ttl_ms=10_000), now=0)
    store.claim("e", "w", 1, now=1, lease_s=5)
    store.finish("job-1", JobStatus.COMPLETED, now=2, retention_s=60)
    assert [j.id for j in store.delete_expired(now=9)] == []
    assert [j.id for j in store.delete_expired(now=11)] == ["job-2"]
    assert [j.id for j in store.delete_expired(now=63)] == ["job-1"]


def test_stream_chunks_delivered_once_in_order(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db.sqlite")
    streams = StreamStore(conn)
    for i in range(5):
        streams.append("j", i)
    assert streams.take_undelivered("j") == [0, 1, 2, 3, 4]
    assert streams.take_undelivered("j") == []
    streams.append("j", "x")
    assert streams.take_undelivered("j") == ["x"]
    assert streams.all_chunks("j") == [0, 1, 2, 3, 4, "x"]


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = JobStore(connect(path))
    store.enqueue(new_job(1), now=0)
    store.claim("e", "w", 1, now=1, lease_s=5)
    store.conn.close()
    again = JobStore(connect(path))
    job = again.get("job-1")
    assert job is not None and job.status == JobStatus.IN_PROGRESS and job.worker_id == "w"


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    from emulator.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the job store"):
        connect(blocker / "db.sqlite")


def test_running_at_reads_an_index_not_a_sort_of_the_workers_jobs(store: JobStore) -> None:
    """One query per worker log line: it must not sort all of the worker's past jobs (#19)."""
    for i in range(20):
        store.enqueue(new_job(i), now=1000.0 + i)
    for i in range(20):
        [job] = store.claim("e", "w1", 1, now=2000.0 + i, lease_s=10)
        store.finish(job.id, JobStatus.COMPLETED, now=2000.5 + i, retention_s=3600, output=i)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)  # the query running_at really sends, values inlined
    found = store.running_at("w1", 2010.2)
    store.conn.set_trace_callback(None)
    assert found is not None and found.id == "job-10"
    [query] = statements
    plan = " ".join(str(row[3]) for row in store.conn.execute("EXPLAIN QUERY PLAN " + query))
    assert "jobs_worker_started" in plan and "TEMP B-TREE" not in plan, plan

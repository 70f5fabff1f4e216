"""Issue #13 items 1 to 3 over real HTTP, with a worker speaking RunPod's worker protocol by hand.

1. A job a live worker dropped (its pings named it, then stopped naming it) is never run again: it
   stays IN_PROGRESS and ends TIMED_OUT at its execution timeout; a requeue never resets that clock.
2. A job ended under a worker whose pings still name it (timeout, cancel) keeps the worker RUNNING,
   taking nothing new, until it lets go (the stop and replacement with real Docker: tests/integration).
3. Worker posts are held to RunPod's payload limits of the job's route: 400 naming the limit, and the
   refusal recorded on the job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker, wait_for

MB = 1024 * 1024
TIMEOUT_MS = 5000  # RunPod's smallest executionTimeout


@pytest.fixture
def short_plane(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    """Leases of 1 s (worker_lost_after_s) and a fast janitor, so requeues would show at once."""
    settings = default_settings_for_tests(
        tmp_path / "data",
        worker_lost_after_s=1.0,
        janitor_interval_s=0.1,
        job_take_hold_s=1.0,
        job_stop_hold_s=1.0,
    )
    cp = BackgroundControlPlane(settings)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def client(short_plane: BackgroundControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=short_plane.client_url, timeout=60) as c:
        r = c.post("/v1/endpoints", json={"name": "ep", "id": "ep", "imageName": "x", "workersMax": 1})
        assert r.status_code == 201, r.text
        yield c


@pytest.fixture
def new_worker(short_plane: BackgroundControlPlane) -> Iterator[Any]:
    """Registers protocol workers on the endpoint; their HTTP clients are closed after the test."""
    made: list[ProtocolWorker] = []

    def make() -> ProtocolWorker:
        made.append(ProtocolWorker(short_plane.client_url, "ep"))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def _run(client: httpx.Client, **policy: Any) -> str:
    r = client.post("/v2/ep/run", json={"input": {"n": 1}, "policy": policy})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return client.get(f"/v2/ep/status/{job_id}").json()  # type: ignore[no-any-return]


def _worker(client: httpx.Client, worker_id: str) -> dict[str, Any]:
    workers = client.get("/v1/endpoints/ep/workers").json()["workers"]
    return next(w for w in workers if w["id"] == worker_id)


def _pinging_until(
    worker: ProtocolWorker, names: list[str], done: Any, what: str, timeout_s: float = 20
) -> Any:
    """Ping (naming ``names``) every 0.2 s until ``done()`` is truthy: the worker is alive meanwhile."""

    def probe() -> Any:
        assert worker.ping(names).status_code == 200
        return done()

    return wait_for(probe, timeout_s=timeout_s, interval_s=0.2, what=what)


# --- item 1 ------------------------------------------------------------------------------------------------


def test_a_job_a_live_worker_dropped_is_not_run_again_and_times_out(
    client: httpx.Client, new_worker: Any
) -> None:
    job_id = _run(client, executionTimeout=TIMEOUT_MS)
    worker = new_worker()
    assert worker.take_job()["id"] == job_id
    assert worker.ping([job_id]).status_code == 200  # the worker had the job
    # then drops it (RunPod's SDK drops a result it cannot serialise or post) and stays alive
    started = time.monotonic()
    _pinging_until(worker, [], lambda: time.monotonic() - started > 2.5, "two leases to pass")
    body = _status(client, job_id)
    assert (body["status"], body["retries"]) == ("IN_PROGRESS", 0)  # not requeued, not run again
    assert _worker(client, worker.id)["status"] == "IDLE"  # it runs nothing
    final = _pinging_until(
        worker,
        [],
        lambda: (b := _status(client, job_id))["status"] != "IN_PROGRESS" and b,
        "the execution timeout",
    )
    assert final["status"] == "TIMED_OUT" and final["retries"] == 0 and final["workerId"] == worker.id
    assert "stopped reporting the job" in final["error"]
    assert f"{TIMEOUT_MS} ms" in final["error"]


def test_the_execution_timeout_counts_from_the_first_start_across_requeues(
    client: httpx.Client, new_worker: Any
) -> None:
    job_id = _run(client, executionTimeout=TIMEOUT_MS)
    lost = new_worker()
    assert lost.take_job()["id"] == job_id  # then silent: the lease runs out, the job is requeued
    requeued = wait_for(lambda: (b := _status(client, job_id))["retries"] == 1 and b, what="the requeue")
    assert requeued["status"] in ("IN_QUEUE", "TIMED_OUT")
    final = wait_for(
        lambda: (b := _status(client, job_id))["status"] == "TIMED_OUT" and b,
        timeout_s=20,
        what="TIMED_OUT counted from the first start, while queued again",
    )
    assert "first start" in final["error"]
    # nobody gets it any more
    assert new_worker().take().status_code == 204


# --- item 2 ------------------------------------------------------------------------------------------------


def test_a_worker_still_running_a_timed_out_job_stays_running_until_it_lets_go(
    client: httpx.Client, new_worker: Any
) -> None:
    job_id = _run(client, executionTimeout=TIMEOUT_MS)
    worker = new_worker()
    assert worker.take_job()["id"] == job_id
    final = _pinging_until(  # its handler still runs: every ping names the job
        worker,
        [job_id],
        lambda: (b := _status(client, job_id))["status"] != "IN_PROGRESS" and b,
        "the timeout",
    )
    assert final["status"] == "TIMED_OUT"
    shown = _worker(client, worker.id)
    assert shown["status"] == "RUNNING" and shown["jobIds"] == [job_id] and shown["endedJobIds"] == [job_id]
    assert "execution timeout" in shown["reason"]
    health = client.get("/v2/ep/health").json()["workers"]
    assert (health["running"], health["idle"]) == (1, 0)
    assert worker.stops().json() == {"jobsToStop": [job_id]}
    second = _run(client)
    assert worker.take().status_code == 204  # it runs a handler: no new job for it
    assert worker.ping([]).status_code == 200  # it let go
    shown = _worker(client, worker.id)
    assert shown["status"] == "IDLE" and shown["jobIds"] == [] and shown["endedJobIds"] == []
    assert shown["reason"] is None
    assert worker.take_job()["id"] == second


def test_a_cancelled_job_keeps_its_worker_running_until_its_late_result(
    client: httpx.Client, new_worker: Any
) -> None:
    job_id = _run(client)
    worker = new_worker()
    assert worker.take_job()["id"] == job_id
    assert worker.ping([job_id]).status_code == 200
    assert client.post(f"/v2/ep/cancel/{job_id}").json()["status"] == "CANCELLED"
    assert _worker(client, worker.id)["status"] == "RUNNING"
    assert worker.done(job_id, {"output": "late"}).status_code == 409  # the handler finished after all
    assert _worker(client, worker.id)["status"] == "IDLE"


# --- item 3 ------------------------------------------------------------------------------------------------


def _big(n: int) -> dict[str, str]:
    return {"output": "x" * n}


def test_results_over_the_run_limit_are_refused_and_recorded(client: httpx.Client, new_worker: Any) -> None:
    job_id = _run(client)
    worker = new_worker()
    assert worker.take_job()["id"] == job_id
    for body in (_big(10 * MB), {"status": "IN_PROGRESS", "output": "x" * (10 * MB)}):
        r = worker.done(job_id, body)
        assert r.status_code == 400, r.text
        assert "10 MB" in r.json()["error"] and "/run" in r.json()["error"]
    assert _status(client, job_id)["status"] == "IN_PROGRESS"  # the client never sees the output
    detail = client.get(f"/v1/endpoints/ep/jobs/{job_id}").json()
    assert "10 MB" in detail["resultRefused"]
    listed = client.get("/v1/endpoints/ep/jobs").json()["jobs"][0]
    assert listed["id"] == job_id and "10 MB" in listed["resultRefused"]
    assert worker.done(job_id, {"output": "a link to storage"}).status_code == 200
    assert _status(client, job_id)["output"] == "a link to storage"


def test_runsync_results_are_held_to_20_mb(client: httpx.Client, new_worker: Any) -> None:
    ids = [client.post("/v2/ep/runsync?wait=1000", json={"input": i}).json()["id"] for i in range(2)]
    worker = new_worker()
    taken = worker.take_batch(2).json()
    assert [j["id"] for j in taken] == ids
    assert worker.done(ids[0], _big(12 * MB)).status_code == 200  # over /run's limit, under /runsync's
    r = worker.done(ids[1], _big(21 * MB))
    assert r.status_code == 400 and "20 MB" in r.json()["error"] and "/runsync" in r.json()["error"]
    assert "20 MB" in client.get(f"/v1/endpoints/ep/jobs/{ids[1]}").json()["resultRefused"]


def test_stream_chunks_are_held_to_1_mb_each_and_to_the_route_limit_in_total(
    client: httpx.Client, new_worker: Any
) -> None:
    job_id = _run(client)
    worker = new_worker()
    assert worker.take_job()["id"] == job_id
    r = worker.stream(job_id, "x" * MB)
    assert r.status_code == 400 and "1 MB" in r.json()["error"] and "per chunk" in r.json()["error"]
    for _ in range(10):
        assert worker.stream(job_id, "x" * 1_000_000).status_code == 200
    r = worker.stream(job_id, "x" * 1_000_000)  # 11 MB in all: more than an aggregated /run result may be
    assert r.status_code == 400 and "10 MB" in r.json()["error"]
    assert "the stream" in client.get(f"/v1/endpoints/ep/jobs/{job_id}").json()["resultRefused"]

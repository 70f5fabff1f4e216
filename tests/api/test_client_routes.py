"""RunPod's client API over real HTTP, with a worker driven by hand through the worker protocol."""

from __future__ import annotations

import threading
import time

import httpx

from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker, wait_for


def test_run_status_and_result_shape(api: httpx.Client, plane: BackgroundControlPlane, endpoint: str) -> None:
    r = api.post(f"/v2/{endpoint}/run", json={"input": {"n": 1}})
    assert r.status_code == 200
    job_id = r.json()["id"]
    assert r.json() == {"id": job_id, "status": "IN_QUEUE"}
    assert not job_id.startswith("sync-")
    assert api.get(f"/v2/{endpoint}/status/{job_id}").json()["status"] == "IN_QUEUE"

    worker = ProtocolWorker(plane.client_url, endpoint)
    job = worker.take_job()
    assert job["id"] == job_id and job["input"] == {"n": 1}
    assert api.post(f"/v2/{endpoint}/status/{job_id}").json()["status"] == "IN_PROGRESS"
    assert worker.done(job_id, {"output": {"ok": True}}).status_code == 200

    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["status"] == "COMPLETED"
    assert body["output"] == {"ok": True}
    assert body["workerId"] == worker.id
    assert body["retries"] == 0
    assert isinstance(body["delayTime"], int) and isinstance(body["executionTime"], int)


def test_runsync_completes_within_wait(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)

    def serve_one() -> None:
        job = worker.take_job()
        worker.done(job["id"], {"output": job["input"]["x"] * 2})

    t = threading.Thread(target=serve_one)
    t.start()
    r = api.post(f"/v2/{endpoint}/runsync", json={"input": {"x": 21}})
    t.join(10)
    body = r.json()
    assert body["status"] == "COMPLETED" and body["output"] == 42
    assert body["id"].startswith("sync-")


def test_runsync_incomplete_shape_after_wait(api: httpx.Client, endpoint: str) -> None:
    started = time.monotonic()
    r = api.post(f"/v2/{endpoint}/runsync?wait=1000", json={"input": {}})
    assert time.monotonic() - started < 10
    assert r.status_code == 200
    assert r.json()["status"] == "IN_QUEUE" and r.json()["id"].startswith("sync-")
    assert set(r.json()) <= {"id", "status", "delayTime"}


def test_status_sync_waits_for_the_end(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": 1}).json()["id"]
    worker = ProtocolWorker(plane.client_url, endpoint)
    worker.take_job()
    threading.Timer(0.5, lambda: worker.done(job_id, {"output": "late"})).start()
    body = api.get(f"/v2/{endpoint}/status-sync/{job_id}?wait=5000").json()
    assert body["status"] == "COMPLETED" and body["output"] == "late"


def test_stream_returns_undelivered_chunks_and_always_carries_stream(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": {}}).json()["id"]
    first = api.get(f"/v2/{endpoint}/stream/{job_id}").json()
    assert first["stream"] == [] and first["status"] == "IN_QUEUE"
    worker = ProtocolWorker(plane.client_url, endpoint)
    worker.take_job()
    for i in range(3):
        assert worker.stream(job_id, {"i": i}).status_code == 200
    got = api.post(f"/v2/{endpoint}/stream/{job_id}").json()
    assert got["stream"] == [{"output": {"i": 0}}, {"output": {"i": 1}}, {"output": {"i": 2}}]
    assert api.get(f"/v2/{endpoint}/stream/{job_id}").json()["stream"] == []
    # a long poll answers when the next chunk lands
    threading.Timer(0.3, lambda: worker.stream(job_id, "late")).start()
    started = time.monotonic()
    got = api.get(f"/v2/{endpoint}/stream/{job_id}?wait=5000").json()
    assert got["stream"] == [{"output": "late"}] and time.monotonic() - started < 4
    worker.done(job_id, {"output": []}, is_stream=True)
    final = api.get(f"/v2/{endpoint}/stream/{job_id}").json()
    assert final["status"] == "COMPLETED" and final["stream"] == []


def test_cancel_signals_the_worker(api: httpx.Client, plane: BackgroundControlPlane, endpoint: str) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": {}}).json()["id"]
    worker = ProtocolWorker(plane.client_url, endpoint)
    worker.take_job()
    threading.Timer(0.3, lambda: api.post(f"/v2/{endpoint}/cancel/{job_id}")).start()
    r = worker.stops()
    assert r.status_code == 200 and r.json() == {"jobsToStop": [job_id]}
    assert api.get(f"/v2/{endpoint}/status/{job_id}").json()["status"] == "CANCELLED"
    # a late result does not overwrite the cancellation
    assert worker.done(job_id, {"output": "too late"}).status_code == 409
    assert api.get(f"/v2/{endpoint}/status/{job_id}").json()["status"] == "CANCELLED"
    # cancelling a queued job
    queued = api.post(f"/v2/{endpoint}/run", json={"input": {}}).json()["id"]
    assert api.post(f"/v2/{endpoint}/cancel/{queued}").json() == {"id": queued, "status": "CANCELLED"}


def test_retry_only_failed_or_timed_out(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": {"try": 1}}).json()["id"]
    assert api.post(f"/v2/{endpoint}/retry/{job_id}").status_code == 409
    worker = ProtocolWorker(plane.client_url, endpoint)
    worker.take_job()
    worker.done(job_id, {"error": "boom"})
    failed = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert failed["status"] == "FAILED" and failed["error"] == "boom"
    r = api.post(f"/v2/{endpoint}/retry/{job_id}")
    assert r.json() == {"id": job_id, "status": "IN_QUEUE"}
    again = worker.take_job()
    assert again["id"] == job_id and again["input"] == {"try": 1}
    worker.done(job_id, {"output": "second time"})
    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["status"] == "COMPLETED" and body["output"] == "second time" and "error" not in body
    assert api.get(f"/v2/{endpoint}/health").json()["jobs"]["retried"] == 1


def test_purge_queue_and_health(api: httpx.Client, plane: BackgroundControlPlane, endpoint: str) -> None:
    ids = [api.post(f"/v2/{endpoint}/run", json={"input": i}).json()["id"] for i in range(4)]
    worker = ProtocolWorker(plane.client_url, endpoint)
    taken = worker.take_job()
    assert taken["id"] == ids[0]
    health = api.get(f"/v2/{endpoint}/health").json()
    assert health["jobs"]["inQueue"] == 3 and health["jobs"]["inProgress"] == 1
    assert health["workers"]["running"] == 1
    assert set(health["workers"]) >= {"idle", "initializing", "ready", "running", "throttled", "unhealthy"}
    assert api.post(f"/v2/{endpoint}/purge-queue").json() == {"removed": 3, "status": "completed"}
    assert api.get(f"/v2/{endpoint}/status/{ids[1]}").status_code == 404
    assert api.get(f"/v2/{endpoint}/status/{ids[0]}").json()["status"] == "IN_PROGRESS"


def test_execution_timeout_times_out_and_stops_the_worker(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": {}, "policy": {"executionTimeout": 5000}}).json()[
        "id"
    ]
    worker = ProtocolWorker(plane.client_url, endpoint)
    worker.take_job()
    stop = wait_for(
        lambda: (r := worker.stops()).status_code == 200 and r.json(), timeout_s=15, what="a stop signal"
    )
    assert stop == {"jobsToStop": [job_id]}
    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["status"] == "TIMED_OUT" and "execution timeout" in body["error"]


def test_ttl_expiry_gives_404(api: httpx.Client, endpoint: str) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": {}, "policy": {"ttl": 10000}}).json()["id"]
    assert api.get(f"/v2/{endpoint}/status/{job_id}").status_code == 200
    wait_for(
        lambda: api.get(f"/v2/{endpoint}/status/{job_id}").status_code == 404, timeout_s=20, what="TTL expiry"
    )


def test_progress_is_shown_and_ignored_after_the_end(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": {}}).json()["id"]
    worker = ProtocolWorker(plane.client_url, endpoint)
    worker.take_job()
    worker.done(job_id, {"status": "IN_PROGRESS", "output": "50%"})
    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["status"] == "IN_PROGRESS" and body["output"] == "50%"
    worker.done(job_id, {"output": "final"})
    late = worker.done(job_id, {"status": "IN_PROGRESS", "output": "90%"})
    assert late.status_code == 200
    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["status"] == "COMPLETED" and body["output"] == "final"

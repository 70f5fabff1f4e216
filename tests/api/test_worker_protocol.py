"""RunPod's worker protocol: long polls without polling intervals, batches, tokens, pings."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker


def test_job_take_answers_the_moment_a_job_is_queued(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    result: dict[str, Any] = {}

    def take() -> None:
        r = worker.take()
        result["at"] = time.monotonic()
        result["r"] = r

    t = threading.Thread(target=take)
    t.start()
    time.sleep(0.3)
    queued_at = time.monotonic()
    api.post(f"/v2/{endpoint}/run", json={"input": "now"})
    t.join(5)
    assert result["r"].status_code == 200
    # the hold is 2 s in these tests: an answer well before it means no polling interval
    assert result["at"] - queued_at < 1.0


def test_job_take_204_when_hold_expires(plane: BackgroundControlPlane, endpoint: str) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    started = time.monotonic()
    r = worker.take()
    assert r.status_code == 204 and 1.5 < time.monotonic() - started < 10


def test_batch_take(api: httpx.Client, plane: BackgroundControlPlane, endpoint: str) -> None:
    ids = [api.post(f"/v2/{endpoint}/run", json={"input": i}).json()["id"] for i in range(5)]
    worker = ProtocolWorker(plane.client_url, endpoint)
    r = worker.take_batch(3)
    assert r.status_code == 200 and [j["id"] for j in r.json()] == ids[:3]
    assert [j["input"] for j in r.json()] == [0, 1, 2]


def test_tokens_are_per_worker(api: httpx.Client, plane: BackgroundControlPlane, endpoint: str) -> None:
    a = ProtocolWorker(plane.client_url, endpoint)
    b = ProtocolWorker(plane.client_url, endpoint)
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": 1}).json()["id"]
    assert a.take_job()["id"] == job_id
    # b cannot report, stream or see a's job
    assert b.done(job_id, {"output": "stolen"}).status_code == 403
    assert b.stream(job_id, "x").status_code == 403
    # b's token cannot act as a
    r = b.http.get(a.url("RUNPOD_WEBHOOK_GET_JOB") + "&job_in_progress=0")
    assert r.status_code == 403
    # no token, a wrong token, and the user's own API key are refused
    assert httpx.get(a.url("RUNPOD_WEBHOOK_GET_JOB")).status_code == 401
    assert httpx.get(a.url("RUNPOD_WEBHOOK_PING"), headers={"Authorization": "nope"}).status_code == 401
    # worker routes are not served on the client listener
    assert api.get(f"/v2/{endpoint}/job-take/{a.id}", headers={"Authorization": a.token}).status_code in (
        404,
        405,
    )
    assert a.done(job_id, {"output": "mine"}).status_code == 200
    assert api.get(f"/v2/{endpoint}/status/{job_id}").json()["output"] == "mine"


def test_job_done_accepts_any_content_type_and_rejects_non_json(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": 1}).json()["id"]
    worker.take_job()
    r = worker.http.post(
        worker.url("RUNPOD_WEBHOOK_POST_OUTPUT", job_id),
        content=b"not json",
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = worker.http.post(
        worker.url("RUNPOD_WEBHOOK_POST_OUTPUT", job_id),
        content=b'{"output": 7}',
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 200
    assert api.get(f"/v2/{endpoint}/status/{job_id}").json()["output"] == 7


def test_stop_pod_marks_the_worker_for_recycling(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": 1}).json()["id"]
    worker.take_job()
    assert worker.done(job_id, {"output": 1, "stopPod": True}).status_code == 200
    api.post(f"/v2/{endpoint}/run", json={"input": 2})
    # a worker that asked to be recycled takes no new job
    assert worker.take().status_code == 204


def test_ping_unhealthy_requeues_the_workers_jobs(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": 1}).json()["id"]
    worker.take_job()
    assert worker.ping(status="unhealthy", check="memory", reason="not enough memory").status_code == 200
    (w,) = api.get(f"/v1/endpoints/{endpoint}/workers").json()["workers"]
    assert w["status"] == "UNHEALTHY" and "not enough memory" in w["reason"]
    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["status"] == "IN_QUEUE" and body["retries"] == 1
    other = ProtocolWorker(plane.client_url, endpoint)
    assert other.take_job()["id"] == job_id


def test_a_job_a_live_worker_never_named_is_not_requeued(tmp_path: Path) -> None:
    """RunPod's SDK pings on a timer: a job its handler finished or dropped within one interval is never
    named. While the worker keeps in touch the job is not run again (RunPod re-runs only when the worker
    is lost, #13 item 1): it stays IN_PROGRESS until its execution timeout. A silent worker's job is
    requeued (tests/api/test_job_faults.py)."""
    from emulator.config import default_settings_for_tests
    from emulator.testing import BackgroundControlPlane
    from tests.helpers import wait_for

    settings = default_settings_for_tests(
        tmp_path, worker_lost_after_s=1.0, job_take_hold_s=1.0, janitor_interval_s=0.1
    )
    with BackgroundControlPlane(settings) as cp, httpx.Client(base_url=cp.client_url) as api:
        api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"})
        worker = ProtocolWorker(cp.client_url, "e")
        job_id = api.post("/v2/e/run", json={"input": 1}).json()["id"]
        worker.take_job()  # its pings never name the job

        def released() -> bool:
            worker.ping()
            (w,) = api.get("/v1/endpoints/e/workers").json()["workers"]
            return bool(w["status"] == "IDLE")

        wait_for(released, timeout_s=10, interval_s=0.2, what="the lease to run out")
        body = api.get(f"/v2/e/status/{job_id}").json()
        assert (body["status"], body["retries"]) == ("IN_PROGRESS", 0)
        assert api.get(f"/v1/endpoints/e/jobs/{job_id}").json()["droppedAt"] is not None


def test_a_worker_that_hung_up_is_not_handed_the_job(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    """A worker's long poll whose connection closed (the worker exited) must not take the next job."""
    import socket
    from urllib.parse import urlsplit

    gone = ProtocolWorker(plane.client_url, endpoint)
    url = urlsplit(gone.url("RUNPOD_WEBHOOK_GET_JOB") + "&job_in_progress=0")
    raw = socket.create_connection((url.hostname, url.port))
    raw.sendall(
        f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: x\r\nAuthorization: {gone.token}\r\n\r\n".encode()
    )
    time.sleep(0.3)  # the poll is parked
    raw.close()  # the worker exits
    time.sleep(0.2)
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": 1}).json()["id"]
    alive = ProtocolWorker(plane.client_url, endpoint)
    assert alive.take_job()["id"] == job_id
    body = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert body["workerId"] == alive.id and body["retries"] == 0


def test_shutdown_does_not_wait_for_held_long_polls(tmp_path: Path) -> None:
    from emulator.config import default_settings_for_tests
    from emulator.testing import BackgroundControlPlane

    cp = BackgroundControlPlane(
        default_settings_for_tests(tmp_path, job_take_hold_s=60, job_stop_hold_s=60)
    ).start()
    httpx.post(f"{cp.client_url}/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"})
    worker = ProtocolWorker(cp.client_url, "e")
    answers: list[int] = []
    t = threading.Thread(target=lambda: answers.append(worker.take().status_code))
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    cp.stop()
    t.join(10)
    assert time.monotonic() - started < 5
    assert answers == [204]

"""The dashboard's data routes over real HTTP: timeline, snapshot, SSE stream, auth, static files."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.dashboard.conftest import API_KEY, AUTH, SSE
from tests.helpers import ProtocolWorker, wait_for

pytestmark = pytest.mark.timeout(60)


def _run_one_job(api: httpx.Client, worker: ProtocolWorker, endpoint: str) -> str:
    """First contact (IDLE), a job taken (RUNNING), the job done (IDLE again)."""
    with ThreadPoolExecutor(1) as pool:
        taking = pool.submit(worker.take)
        wait_for(
            lambda: api.get(f"/v1/endpoints/{endpoint}/workers").json()["summary"]["idle"] == 1, what="IDLE"
        )
        job_id = api.post(f"/v2/{endpoint}/run", json={"input": {"n": 1}}).json()["id"]
        taken = taking.result(timeout=10)
    assert taken.status_code == 200 and taken.json()["id"] == job_id
    assert worker.done(job_id, {"output": {"ok": True}}).status_code == 200
    return str(job_id)


def test_timeline_lists_each_transition_in_order(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    try:
        job_id = _run_one_job(api, worker, endpoint)
        api.delete(f"/v1/workers/{worker.id}")
    finally:
        worker.close()
    body = api.get(f"/v1/endpoints/{endpoint}/events").json()
    events = body["events"]
    assert [(e["from"], e["to"]) for e in events] == [
        (None, "INITIALIZING"),
        ("INITIALIZING", "IDLE"),
        ("IDLE", "RUNNING"),
        ("RUNNING", "IDLE"),
        ("IDLE", "REMOVED"),
    ]
    assert all(e["worker"] == worker.id and e["endpoint"] == endpoint for e in events)
    assert events[2]["jobIds"] == [job_id] and job_id in events[2]["reason"]
    assert events[3]["reason"] == f"finished {job_id}"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and body["seq"] == seqs[-1]
    assert all(a["at"] <= b["at"] for a, b in zip(events, events[1:], strict=False))

    # limit and after page through it
    assert [
        e["seq"] for e in api.get(f"/v1/endpoints/{endpoint}/events", params={"limit": 2}).json()["events"]
    ] == seqs[-2:]
    assert [
        e["seq"]
        for e in api.get(f"/v1/endpoints/{endpoint}/events", params={"after": seqs[2]}).json()["events"]
    ] == seqs[3:]
    assert api.get(f"/v1/endpoints/{endpoint}/events", params={"limit": 0}).status_code == 422
    assert api.get("/v1/endpoints/nope/events").status_code == 404


def test_snapshot_has_queue_jobs_and_cold_start_but_no_payloads(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str
) -> None:
    worker = ProtocolWorker(plane.client_url, endpoint)
    try:
        job_id = _run_one_job(api, worker, endpoint)
    finally:
        worker.close()
    api.post(f"/v2/{endpoint}/run", json={"input": {"secret": "x" * 1000}})
    snap = api.get("/v1/dashboard").json()
    assert snap["runtime"] == "none" and snap["authRequired"] is False and snap["seq"] >= 4
    (ep,) = snap["endpoints"]
    assert ep["id"] == endpoint and ep["version"] == 1
    queue = ep["queue"]
    assert (queue["inQueue"], queue["inProgress"], queue["takers"]) == (1, 0, 0) and queue["oldestWaitS"] >= 0
    assert ep["counters"]["completed"] == 1
    # what window each covers: counters since the endpoint was made, jobs while their results are kept
    assert ep["countersSince"] == ep["createdAt"]
    assert ep["recentJobs"] == {"limit": 15, "runRetentionS": 1800.0, "syncRetentionS": 60.0}
    assert ep["workers"]["summary"]["idle"] == 1 and ep["workers"]["workers"][0]["id"] == worker.id
    queued, done = ep["jobs"]
    assert queued["status"] == "IN_QUEUE" and "input" not in queued
    assert done["id"] == job_id and done["status"] == "COMPLETED" and "output" not in done
    assert done["workerId"] == worker.id and done["delayTime"] >= 0 and done["executionTime"] >= 0
    assert (
        done["coldStart"]["coldStart"] is True
        and "queueWaitMs" in done["coldStart"]
        and "readyMs" in done["coldStart"]
    )
    assert "env" not in ep  # an endpoint's env may hold secrets: the page never gets it


def test_stream_sends_history_then_transitions_and_snapshots(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str
) -> None:
    first = ProtocolWorker(plane.client_url, endpoint)
    with api.stream("GET", "/v1/events/stream", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        sse = SSE(response)
        replayed = sse.next()
        assert replayed["event"] == "transition" and replayed["data"]["worker"] == first.id
        assert replayed["id"] == str(replayed["data"]["seq"])
        snap = sse.next()
        assert (
            snap["event"] == "snapshot"
            and snap["data"]["endpoints"][0]["workers"]["summary"]["initializing"] == 1
        )

        second = ProtocolWorker(plane.client_url, endpoint)
        ev = sse.until(lambda e: e["event"] == "transition")
        assert ev["data"]["worker"] == second.id and ev["data"]["to"] == "INITIALIZING"
        snap = sse.until(lambda e: e["event"] == "snapshot")
        assert snap["data"]["endpoints"][0]["workers"]["summary"]["total"] == 2

        # a job change alone (no worker transition) also brings a snapshot
        api.post(f"/v2/{endpoint}/run", json={"input": 1})
        snap = sse.until(lambda e: e["event"] == "snapshot")
        assert snap["data"]["endpoints"][0]["queue"]["inQueue"] == 1
    first.close()
    second.close()


def test_stream_resumes_after_last_event_id(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str
) -> None:
    workers = [ProtocolWorker(plane.client_url, endpoint) for _ in range(3)]
    seqs = [e["seq"] for e in api.get(f"/v1/endpoints/{endpoint}/events").json()["events"]]
    with api.stream(
        "GET", "/v1/events/stream", headers={"Last-Event-ID": str(seqs[0])}, timeout=10
    ) as response:
        sse = SSE(response)
        got = [sse.next(), sse.next(), sse.next()]
    assert [e["event"] for e in got] == ["transition", "transition", "snapshot"]
    assert [int(e["id"]) for e in got[:2]] == seqs[1:]
    for w in workers:
        w.close()


def test_stream_is_quiet_when_nothing_changes(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str
) -> None:
    """No polling: after the first snapshot, nothing is sent until something changes."""
    received: list[dict[str, object]] = []
    with api.stream("GET", "/v1/events/stream", timeout=10) as response:
        sse = SSE(response)
        assert sse.next()["event"] == "snapshot"

        def read() -> None:
            with contextlib.suppress(Exception):  # the stream closed under us
                received.append(sse.next())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1.5)
        assert received == []
        api.post(f"/v2/{endpoint}/run", json={"input": 1})
        reader.join(5)
    assert received and received[0]["event"] == "snapshot"


def test_stream_ends_promptly_when_the_control_plane_stops(tmp_path: Path) -> None:
    cp = BackgroundControlPlane(default_settings_for_tests(tmp_path / "data"))
    cp.start()
    ended = threading.Event()
    try:
        with (
            httpx.Client(base_url=cp.client_url, timeout=10) as client,
            client.stream("GET", "/v1/events/stream") as response,
        ):
            sse = SSE(response)
            assert sse.next()["event"] == "snapshot"

            def drain() -> None:
                try:
                    while True:
                        sse.next()
                except Exception:
                    ended.set()

            threading.Thread(target=drain, daemon=True).start()
            started = time.monotonic()
            cp.stop()
            assert ended.wait(5), "the stream did not end"
            assert time.monotonic() - started < 2.5, "an open dashboard must not hold up shutdown"
    finally:
        cp.stop()


def test_api_key_guards_the_data_routes(keyed_plane: BackgroundControlPlane) -> None:
    url = keyed_plane.client_url
    with httpx.Client(base_url=url, timeout=10) as anon:
        # the page and its files hold no data
        page = anon.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/app.js" in page.text
        assert anon.get("/static/app.js").status_code == 200
        # the data needs the key, in a header...
        for path in ("/v1/dashboard", "/v1/endpoints/x/events", "/metrics", "/v1/events/stream"):
            assert anon.get(path).status_code == 401, path
        assert anon.get("/v1/dashboard", headers=AUTH).status_code == 200
        assert anon.get("/metrics", headers={"Authorization": API_KEY}).status_code == 200
        # ...and ?key= is accepted on the event stream only (EventSource cannot send headers)
        assert anon.get("/v1/dashboard", params={"key": API_KEY}).status_code == 401
        assert anon.get("/metrics", params={"key": API_KEY}).status_code == 401
        with anon.stream("GET", "/v1/events/stream", params={"key": "wrong"}) as r:
            assert r.status_code == 401
        with anon.stream("GET", "/v1/events/stream", params={"key": API_KEY}) as r:
            assert r.status_code == 200
            assert SSE(r).next()["event"] == "snapshot"


def test_static_files(plane: BackgroundControlPlane, api: httpx.Client) -> None:
    types = {
        "app.js": "text/javascript",
        "app.css": "text/css",
        "favicon.svg": "image/svg+xml",
        "index.html": "text/html",
    }
    for name, kind in types.items():
        r = api.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
    for bad in ("nope.js", "..%2Fapp.py", ".hidden", "%2e%2e%2fmetrics.py"):
        assert api.get(f"/static/{bad}").status_code == 404, bad
    # the page loads nothing from the internet
    for name in ("index.html", "app.js", "app.css"):
        text = api.get(f"/static/{name}").text
        assert "http://" not in text.replace("http://HOST", "") and "https://" not in text, name

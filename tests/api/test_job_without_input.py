"""RunPod accepts /run and /runsync without `input`; the job reaches the worker without it (#13 item 4).

Two field reports show RunPod answering 200 IN_QUEUE to ``{"messages": [...]}`` and its SDK failing
the job on the worker ("Job has missing field(s)"). A body that is not a JSON object stays a 400.
Real HTTP: a client, and a worker speaking RunPod's worker protocol by hand.
"""

from __future__ import annotations

import httpx

from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker

MESSAGES = {"messages": [{"role": "user", "content": "hi"}]}


def test_run_without_input_is_queued_and_reaches_the_worker_without_input(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    r = api.post(f"/v2/{endpoint}/run", json=MESSAGES)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "IN_QUEUE"
    job_id = r.json()["id"]
    worker = ProtocolWorker(plane.client_url, endpoint)
    job = worker.take_job()
    assert job["id"] == job_id
    assert "input" not in job  # not `"input": null`: the field is missing, as the request had it
    # what RunPod's SDK then posts: the job fails with the SDK's error
    assert worker.done(job_id, {"error": "Job has missing field(s): input."}).status_code == 200
    worker.close()
    status = api.get(f"/v2/{endpoint}/status/{job_id}").json()
    assert status["status"] == "FAILED" and "missing field" in status["error"]


def test_runsync_without_input_is_accepted(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    r = api.post(f"/v2/{endpoint}/runsync?wait=1000", json=MESSAGES)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "IN_QUEUE" and r.json()["id"].startswith("sync-")
    worker = ProtocolWorker(plane.client_url, endpoint)
    job = worker.take_job()
    worker.close()
    assert job["id"] == r.json()["id"] and "input" not in job


def test_input_null_is_passed_on_as_null(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job_id = api.post(f"/v2/{endpoint}/run", json={"input": None}).json()["id"]
    worker = ProtocolWorker(plane.client_url, endpoint)
    job = worker.take_job()
    worker.close()
    assert job == {"id": job_id, "input": None}


def test_a_body_that_is_not_an_object_is_still_400(api: httpx.Client, endpoint: str) -> None:
    for route in ("run", "runsync?wait=1000"):
        for body in (b"[1, 2]", b'"text"', b"null", b"42"):
            r = api.post(
                f"/v2/{endpoint}/{route}", content=body, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400, (route, body, r.text)
            assert "JSON object" in r.json()["error"]
    assert api.get(f"/v2/{endpoint}/health").json()["jobs"]["inQueue"] == 0

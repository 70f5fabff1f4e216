"""The queue bound (429 when too many jobs wait) counts the jobs that really wait.

The queue depth is cached between recounts (at most every 0.5 s) and bumped by every submit; jobs
taken meanwhile do not lower it. Found by ``python -m bench``: sequential /runsync on an endpoint
whose bound is 50 (``workersMax: 0``, an external worker) got a 429 after 50 jobs in half a second
although no job was waiting. A refusal is now checked against a fresh count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker

LIMIT = 5


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = default_settings_for_tests(
        tmp_path / "data", max_queue_per_endpoint=LIMIT, job_take_hold_s=2.0
    )
    with BackgroundControlPlane(settings) as cp, httpx.Client(base_url=cp.client_url, timeout=30) as client:
        r = client.post("/v1/endpoints", json={"name": "q", "id": "q", "imageName": "x", "workersMax": 0})
        assert r.status_code == 201, r.text
        yield client


def test_no_429_when_the_jobs_counted_were_taken(api: httpx.Client) -> None:
    worker = ProtocolWorker(str(api.base_url), "q")
    for _ in range(3 * LIMIT):  # well within the 0.5 s a cached depth lives, on a fast machine
        job_id = api.post("/v2/q/run", json={"input": {}}).json()["id"]
        assert worker.take_job()["id"] == job_id
        assert worker.done(job_id, {"output": 1}).status_code == 200
    r = api.post("/v2/q/run", json={"input": {}})
    assert r.status_code == 200, r.text


def test_429_when_the_queue_is_really_full(api: httpx.Client) -> None:
    ids = [api.post("/v2/q/run", json={"input": {}}).json()["id"] for _ in range(LIMIT)]
    r = api.post("/v2/q/run", json={"input": {}})
    assert r.status_code == 429, r.text
    assert f"limit {LIMIT}" in r.text
    worker = ProtocolWorker(str(api.base_url), "q")
    assert worker.take_job()["id"] == ids[0]  # one fewer waiting: room for one more
    assert api.post("/v2/q/run", json={"input": {}}).status_code == 200
    assert api.post("/v2/q/run", json={"input": {}}).status_code == 429

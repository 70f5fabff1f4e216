"""A client waiting on a job (/runsync, /status-sync, /stream with ?wait) gets its answer as soon as
the job is gone (queue purged, endpoint deleted), not when its wait runs out (up to 300 s)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("how", ["purge-queue", "delete-endpoint"])
@pytest.mark.parametrize("route", ["runsync", "status-sync", "stream"])
def test_a_waiter_answers_when_its_job_is_removed(tmp_path: Path, how: str, route: str) -> None:
    with BackgroundControlPlane(default_settings_for_tests(tmp_path / "data")) as cp:
        api = httpx.Client(base_url=cp.client_url, timeout=60)
        assert api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"}).status_code == 201
        answers: list[tuple[int, float]] = []
        job_id = "" if route == "runsync" else api.post("/v2/e/run", json={"input": 1}).json()["id"]

        def wait() -> None:
            began = time.monotonic()
            if route == "runsync":
                r = httpx.post(f"{cp.client_url}/v2/e/runsync?wait=60000", json={"input": 1}, timeout=90)
            else:
                r = httpx.get(f"{cp.client_url}/v2/e/{route}/{job_id}?wait=60000", timeout=90)
            answers.append((r.status_code, time.monotonic() - began))

        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_for(lambda: api.get("/v2/e/health").json()["jobs"]["inQueue"] == 1, what="the job queued")
        time.sleep(0.3)  # the waiter is parked
        if how == "purge-queue":
            assert api.post("/v2/e/purge-queue").json()["removed"] == 1
        else:
            assert api.delete("/v1/endpoints/e").status_code == 204
        waiter.join(30)
        assert answers, "the waiter is still waiting"
        status, took = answers[0]
        assert status == 404 and took < 10, answers

"""RunPod's own Python client (runpod==1.12.0) pointed at the emulator with RUNPOD_ENDPOINT_BASE_URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
import runpod

from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker, wait_for


class EchoWorker(threading.Thread):
    """Serves jobs until stopped: echoes input, streams when asked, sleeps when asked."""

    def __init__(self, worker: ProtocolWorker) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                r = self.worker.take()
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                continue
            job = r.json()
            inp = job["input"]
            if isinstance(inp, dict) and inp.get("hold"):
                continue  # leave it in progress (for cancel)
            if isinstance(inp, dict) and inp.get("chunks"):
                for i in range(inp["chunks"]):
                    self.worker.stream(job["id"], f"part-{i}")
                self.worker.done(job["id"], {"output": []}, is_stream=True)
            else:
                self.worker.done(job["id"], {"output": {"echo": inp}})


@pytest.fixture
def rp_endpoint(
    plane: BackgroundControlPlane, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[runpod.Endpoint]:
    monkeypatch.setattr(runpod, "endpoint_url_base", f"{plane.client_url}/v2")
    monkeypatch.setattr(runpod, "api_key", "local-key")
    worker = EchoWorker(ProtocolWorker(plane.client_url, endpoint))
    worker.start()
    yield runpod.Endpoint(endpoint)
    worker.halt.set()


def test_run_status_output(rp_endpoint: runpod.Endpoint) -> None:
    job = rp_endpoint.run({"input": {"prompt": "hi"}})
    assert job.output(timeout=20) == {"echo": {"prompt": "hi"}}
    assert job.status() == "COMPLETED"


def test_run_sync(rp_endpoint: runpod.Endpoint) -> None:
    assert rp_endpoint.run_sync({"input": {"n": 3}}, timeout=30) == {"echo": {"n": 3}}


def test_stream(rp_endpoint: runpod.Endpoint) -> None:
    job = rp_endpoint.run({"input": {"chunks": 3}})
    assert list(job.stream()) == ["part-0", "part-1", "part-2"]


def test_cancel_health_purge(
    rp_endpoint: runpod.Endpoint, plane: BackgroundControlPlane, endpoint: str
) -> None:
    job = rp_endpoint.run({"input": {"hold": True}})
    wait_for(lambda: job.status() == "IN_PROGRESS", what="the job to start")
    assert job.cancel()["status"] == "CANCELLED"
    health = rp_endpoint.health()
    assert health["jobs"]["inProgress"] == 0 and "workers" in health
    assert rp_endpoint.purge_queue() == {"removed": 0, "status": "completed"}

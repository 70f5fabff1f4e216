"""The project's own use of its pytest plugin: ``serverless_endpoint(image=...)`` with real containers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from emulator.testing.lb import LBEndpointClient
from emulator.testing.pytest_plugin import EndpointClient

pytestmark = pytest.mark.docker


def test_echo_image_through_the_plugin(serverless_endpoint: Callable[..., EndpointClient]) -> None:
    ep = serverless_endpoint(image="serverless-emulator/sample-echo:latest", workersMax=1)
    body = ep.run_sync({"message": "from the plugin"})
    assert body["status"] == "COMPLETED", body
    assert body["output"] == {"message": "from the plugin"}
    assert body["coldStart"]["coldStart"] is True  # the first job paid for the container start
    again = ep.run_sync({"message": "warm"})
    assert again["output"] == {"message": "warm"} and again["coldStart"]["coldStart"] is False
    assert ep.health()["jobs"]["completed"] == 2


def test_stream_image_through_the_plugin(serverless_endpoint: Callable[..., EndpointClient]) -> None:
    ep = serverless_endpoint(image="serverless-emulator/sample-stream:latest", workersMax=1)
    job_id = ep.run({"count": 3})
    chunks = list(ep.stream(job_id, timeout_s=120))
    assert [c["index"] for c in chunks] == [0, 1, 2]
    assert ep.wait(job_id)["status"] == "COMPLETED"


def test_runpod_sdk_image_through_the_plugin(serverless_endpoint: Callable[..., EndpointClient]) -> None:
    ep = serverless_endpoint(image="serverless-emulator/sample-runpod-sdk:latest", workersMax=1)
    body = ep.run_sync({"name": "plugin"}, timeout_s=180)
    assert body["status"] == "COMPLETED", body
    assert body["output"]["runpod_version"] == "1.12.0"


def test_load_balancing_image_through_the_plugin(
    serverless_endpoint: Callable[..., LBEndpointClient],
) -> None:
    """``type="LB"`` gives an HTTP client on the endpoint's URL; the first request pays the cold start."""
    ep = serverless_endpoint(
        image="serverless-emulator/sample-load-balancer:latest",
        type="LB",
        workersMax=1,
        env={"WARMUP_S": "0.5"},
    )
    assert isinstance(ep, LBEndpointClient) and ep.base_url.endswith(f"/lb/{ep.endpoint_id}")
    r = ep.post("/generate", json={"prompt": "from the plugin"})
    assert r.status_code == 200, r.text
    worker = r.headers["x-runpod-worker-id"]
    assert r.json()["generated_text"] == "Response to: from the plugin"
    (ready,) = ep.wait_ready(timeout_s=60)
    assert ready["id"] == worker and ready["readyAt"] - ready["startedAt"] >= 0.5  # /ping said 204 first
    # RunPod's host form (curl and browsers resolve *.localhost; Python's resolver may not: Host header)
    host = ep.host_url.removeprefix("http://")
    with httpx.Client(timeout=60) as other:
        assert other.get(f"{ep.emulator_url}/stats", headers={"Host": host}).json()["worker"] == worker
    for _ in range(100):  # a row is written just after the answer's last byte: it may lag a moment
        rows = ep.requests()
        if len(rows) == 2:
            break
        time.sleep(0.05)
    assert [(r["method"], r["path"], r["status"], r["workerId"]) for r in rows] == [
        ("GET", "/stats", 200, worker),
        ("POST", "/generate", 200, worker),
    ]
    assert rows[1]["coldStart"]["readyS"] >= 0.5

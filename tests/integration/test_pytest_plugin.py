"""The project's own use of its pytest plugin: ``serverless_endpoint(image=...)`` with real containers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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

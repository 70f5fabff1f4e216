"""The flow of worker-vllm's own end-to-end script (runpod-workers/worker-vllm
``scripts/serverless_e2e_test.py``), written here with the standard library only, against the emulator
with a real Docker worker: create a template (``POST /v1/templates``), create an endpoint from it with
``templateId``, ``gpuTypeIds`` and ``gpuCount`` (``POST /v1/endpoints``), ``/run`` a job, poll
``/status`` until it ends, then delete the endpoint and the template. GPUs are emulated (no GPU here);
the echo sample stands in for the vLLM image."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from emulator.testing import BackgroundControlPlane
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import Instance, docker_settings, sample

docker_session = docker_fixtures.docker_session
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
TERMINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


def api_request(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer test-key")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {url} -> HTTP {e.code}: {e.read().decode(errors='replace')}") from e


def test_worker_vllm_e2e_flow_with_the_standard_library(instance: Instance) -> None:
    settings = docker_settings(instance, api_key="test-key", gpu_mode="emulate", emulated_gpus=1)
    with BackgroundControlPlane(settings) as plane:
        rest, jobs = f"{plane.client_url}/v1", f"{plane.client_url}/v2"
        template_id = endpoint_id = None
        try:
            template_id = api_request(
                "POST",
                f"{rest}/templates",
                {
                    "name": "worker-vllm-e2e",
                    "imageName": sample("echo"),
                    "isServerless": True,
                    "env": {"MODEL_NAME": "Qwen/Qwen3-8B", "RUNPOD_INIT_TIMEOUT": "1600"},
                    "containerDiskInGb": 50,
                },
            )["id"]
            endpoint_id = api_request(
                "POST",
                f"{rest}/endpoints",
                {
                    "name": "worker-vllm-e2e",
                    "templateId": template_id,
                    "gpuTypeIds": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 NVL", "NVIDIA H100 PCIe"],
                    "gpuCount": 1,
                    "workersMin": 0,
                    "workersMax": 1,
                    "idleTimeout": 60,
                    "scalerType": "QUEUE_DELAY",
                    "scalerValue": 4,
                    "allowedCudaVersions": ["12.8"],
                    "minCudaVersion": "12.8",
                },
            )["id"]
            submit = api_request("POST", f"{jobs}/{endpoint_id}/run", {"input": {"prompt": "hello"}})
            deadline = time.monotonic() + 120
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                status = api_request("GET", f"{jobs}/{endpoint_id}/status/{submit['id']}")
                if status.get("status") in TERMINAL:
                    break
                time.sleep(0.25)
            assert status.get("status") == "COMPLETED", status
            assert status["output"] == {"prompt": "hello"} and "error" not in status["output"]
            workers = api_request("GET", f"{rest}/endpoints/{endpoint_id}/workers")["workers"]
            assert [w["gpuIds"] for w in workers if not w["standby"]] == [["0"]]
        finally:
            if endpoint_id:
                api_request("DELETE", f"{rest}/endpoints/{endpoint_id}")
            if template_id:
                api_request("DELETE", f"{rest}/templates/{template_id}")
        with pytest.raises(AssertionError, match="HTTP 404"):
            api_request("GET", f"{rest}/endpoints/{endpoint_id}")
        with pytest.raises(AssertionError, match="HTTP 404"):
            api_request("GET", f"{rest}/templates/{template_id}")
